"""scripts/melodies.py end to end: a tiny untrained sequence VAE and a saved melody dataset -> MIDI files, piano
rolls, attribute measurements; and its one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from music21 import converter
from PIL import Image

import hf_vq
from hf_vq.data import load_code_dataset, melody_windows
from hf_vq.data.melodies import FEATURES
from hf_vq.music import NO_EVENT, NOTE_OFF, VOCAB_SIZE, note_spans, pitch_to_token
from hf_vq.utils.errors import UsageError

from ..conftest import load_script

# 2 bars of 4 steps (windows of 8 tokens) over the melody vocabulary.
TINY = dict(vocab_size=VOCAB_SIZE, decoder_type="flat", bar_length=4, num_bars=2, encoder_hidden_size=16,
            decoder_hidden_size=16, decoder_num_layers=1, latent_size=4, free_bits=0.0)  # fmt: skip
# piano_roll's defaults: pixels per pitch, rows between sequences
PIXELS_PER_PITCH, GAP = 3, 2


def tunes(n: int, seed: int, steps_per_bar: int = 4) -> dict[str, list]:
    """Rows of the folk-melodies columns: tunes of 12 to 20 steps, each step a note-on (of 60..72), a hold or a
    note-off, the first a note-on."""
    rng = np.random.default_rng(seed)
    rows = {name: [] for name in FEATURES}
    for i in range(n):
        length = int(rng.integers(12, 21))
        kinds = rng.choice(3, size=length, p=[0.5, 0.4, 0.1])  # a note-on, a hold, a note-off
        notes = [pitch_to_token(int(pitch)) for pitch in rng.integers(60, 73, size=length)]
        tokens = np.select([kinds == 0, kinds == 1], [notes, NO_EVENT], NOTE_OFF)
        tokens[0] = notes[0]
        rows["tune_id"].append(f"test/{seed}/{i}")
        rows["collection"].append("test")
        rows["title"].append(f"tune {i}")
        rows["meter"].append("2/4")
        rows["steps_per_bar"].append(steps_per_bar)
        rows["tokens"].append(tokens.astype(np.int8).tolist())
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny sequence VAE's folder, a saved melody DatasetDict with train and test)."""
    root = tmp_path_factory.mktemp("melodies")
    torch.manual_seed(0)
    hf_vq.SequenceVAEModel(hf_vq.SequenceVAEConfig(**TINY)).save_pretrained(root / "model")
    splits = {"train": Dataset.from_dict(tunes(12, seed=0), features=FEATURES),
              "test": Dataset.from_dict(tunes(4, seed=1), features=FEATURES)}  # fmt: skip
    DatasetDict(splits).save_to_disk(str(root / "melodies"))
    return root / "model", root / "melodies"


def arguments(model: Path, data: Path, output: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--dataset", str(data), "--output_dir", str(output), "--num_samples", "3",
            "--num_examples", "2", "--steps", "4", "--num_windows", "6", "--device", "cpu", *extra]  # fmt: skip


def midi_notes(path: Path) -> int:
    return len(converter.parse(str(path)).flatten().notes)


def check_roll(path: Path, sequences: int) -> None:
    """A piano roll of `sequences` rows of 8 steps: its width, and a height of whole pitch rows."""
    width, height = Image.open(path).size
    assert width == 512  # the script's ROLL_WIDTH: 8 steps of 64 pixels
    panels = height - (sequences - 1) * GAP  # sequences * pitch rows * PIXELS_PER_PITCH
    assert panels % (sequences * PIXELS_PER_PITCH) == 0 and panels // (sequences * PIXELS_PER_PITCH) >= 5


def test_melodies_script_writes_midi_piano_rolls_and_the_attribute_shifts(setup, tmp_path, capsys):
    model, data = setup
    output = tmp_path / "out"
    assert load_script("melodies").main(arguments(model, data, output)) == 0

    held_out = melody_windows(load_code_dataset(str(data), "test"), 2, 4, max_windows=6)
    tokens = json.loads((output / "tokens.json").read_text())
    assert tokens["originals"] == held_out[:2].tolist()
    assert tokens["interpolation_ends"] == held_out[:2].tolist()
    for name in ("samples", "originals", "reconstructions", "interpolation"):
        values = np.array(tokens[name])
        assert values.shape == ({"samples": 3, "interpolation": 4}.get(name, 2), 8), name
        assert values.min() >= 0 and values.max() < VOCAB_SIZE

    # MIDI: every file, read back with the notes of its tokens
    expected = [f"samples/sample_{i:02d}.mid" for i in range(3)]
    expected += [f"reconstructions/{kind}_{i:02d}.mid" for kind in ("original", "reconstruction") for i in range(2)]
    kinds = ("original", "reconstruction", "plus", "minus")
    for attribute in ("note_density", "mean_pitch"):
        expected += [f"attributes/{attribute}/{kind}_{i:02d}.mid" for kind in kinds for i in range(2)]
    expected.append("interpolation.mid")
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*.mid")) == sorted(expected)
    assert midi_notes(output / "reconstructions" / "original_00.mid") == len(note_spans(held_out[0]))
    assert midi_notes(output / "samples" / "sample_01.mid") == len(note_spans(tokens["samples"][1]))
    assert midi_notes(output / "interpolation.mid") == len(note_spans(np.array(tokens["interpolation"]).ravel()))

    check_roll(output / "samples.png", 3)
    check_roll(output / "reconstructions.png", 4)  # each original over its reconstruction
    check_roll(output / "interpolation.png", 6)  # A, 4 points, B
    check_roll(output / "attributes" / "note_density.png", 8)  # original, reconstruction, plus, minus

    report = json.loads((output / "attributes.json").read_text())
    assert report["split"] == "test" and report["attribute_split"] == "train"
    assert report["windows"] == 6 and report["attribute_windows"] >= 4
    assert set(report["attributes"]) == {"note_density", "mean_pitch"}
    for entry in report["attributes"].values():
        assert set(entry) == {"top_mean", "bottom_mean", "group_size", "vector_norm", "count", "original", "means",
                              "undefined"}  # fmt: skip
        assert list(entry["means"]) == ["-2", "-1", "0", "1", "2"] and entry["count"] == 6
        assert entry["top_mean"] > entry["bottom_mean"]
    density = report["attributes"]["note_density"]
    assert density["original"] == pytest.approx(np.mean([len(note_spans(w)) / 8 for w in held_out]))
    assert "note_density: held-out" in capsys.readouterr().out


def test_melodies_script_refuses_a_used_output_dir_and_overwrites_only_its_own_files(setup, tmp_path):
    model, data = setup
    output = tmp_path / "out"
    (output / "samples").mkdir(parents=True)
    (output / "samples" / "sample_09.mid").write_bytes(b"stale")
    (output / "notes.txt").write_text("mine")
    script = load_script("melodies")
    with pytest.raises(UsageError, match=f"--output_dir: {output} is not empty; .* pass --overwrite$"):
        script.main(arguments(model, data, output))
    assert sorted(p.name for p in output.rglob("*")) == ["notes.txt", "sample_09.mid", "samples"]
    script.main(arguments(model, data, output, "--overwrite"))
    assert (output / "notes.txt").read_text() == "mine"  # not the script's: kept
    assert not (output / "samples" / "sample_09.mid").exists()  # an earlier run's: gone
    assert (output / "samples" / "sample_02.mid").is_file()


def test_melodies_script_errors_are_one_line(setup, tmp_path):
    model, data = setup
    script = load_script("melodies")
    vae = tmp_path / "vae"
    config = hf_vq.VAEConfig(in_channels=1, out_channels=1, block_out_channels=[8], layers_per_block=1,
                             norm_num_groups=8, latent_channels=2, sample_size=8)  # fmt: skip
    hf_vq.VAEModel(config).save_pretrained(vae)
    # the GPT prior takes input_ids as the sequence VAE does, but is no autoencoder
    prior = tmp_path / "prior"
    prior_config = hf_vq.VQPriorConfig(codebook_size=8, token_grid_size=(2, 2), n_layer=1, n_head=1, n_embd=8)
    hf_vq.VQPriorForCausalLM(prior_config).save_pretrained(prior)
    cases = [
        (arguments(tmp_path / "missing", data, tmp_path / "a"), f"--model: no such file or directory: {tmp_path}"),
        (arguments(vae, data, tmp_path / "b"), f"--model: {vae} is a VAEModel, not a SequenceVAEModel"),
        (arguments(prior, data, tmp_path / "p"), f"--model: {prior} is a VQPriorForCausalLM, not a SequenceVAEModel"),
        (arguments(model, data, tmp_path / "c", "--split", "validation"), "has no split 'validation'"),
        (arguments(model, data, tmp_path / "d", "--index_b", "9"), "split 'test' of"),
        (arguments(model, data, tmp_path / "e", "--fraction", "0.7"), "--fraction must be in (0, 0.5]"),
    ]
    for argv, message in cases:
        with pytest.raises(UsageError) as error:
            script.main(argv)
        assert message in str(error.value) and "\n" not in str(error.value)
        assert not Path(argv[argv.index("--output_dir") + 1]).exists()  # nothing written


def test_melodies_script_cuts_every_tune_of_a_dataset_without_meters_with_match_meter_false(setup, tmp_path):
    """A melody dataset with only a token column (as on the Hub): refused with the way on, read with
    `--tokens_column notes --match_meter false`, the windows those of every tune."""
    model, data = setup
    tokens_only = tmp_path / "tokens-only"
    splits = DatasetDict.load_from_disk(str(data))
    DatasetDict({name: split.select_columns(["tokens"]).rename_column("tokens", "notes")
                 for name, split in splits.items()}).save_to_disk(str(tokens_only))  # fmt: skip
    script = load_script("melodies")
    with pytest.raises(UsageError) as error:
        script.main(arguments(model, tokens_only, tmp_path / "refused", "--tokens_column", "notes"))
    message = str(error.value)
    assert "column 'steps_per_bar' is not a column" in message and "pass --match_meter false" in message
    assert "\n" not in message and not (tmp_path / "refused").exists()

    output = tmp_path / "out"
    argv = arguments(model, tokens_only, output, "--tokens_column", "notes", "--match_meter", "false")
    assert script.main(argv) == 0
    held_out = melody_windows(load_code_dataset(str(data), "test"), 2, 4, max_windows=6, match_meter=False)
    assert json.loads((output / "tokens.json").read_text())["originals"] == held_out[:2].tolist()
    assert json.loads((output / "attributes.json").read_text())["match_meter"] is False


def test_melodies_script_match_meter_takes_training_spellings():
    script = load_script("melodies")
    required = ["--model", "m", "--output_dir", "o"]
    assert script.parse_args(required).match_meter is True
    assert script.parse_args([*required, "--match_meter"]).match_meter is True
    assert script.parse_args([*required, "--match_meter", "false"]).match_meter is False
    assert script.parse_args([*required, "--match_meter", "True"]).match_meter is True
    assert script.parse_args([*required, "--no_match_meter"]).match_meter is False
    assert script.parse_args(required).tokens_column == "tokens"
    with pytest.raises(SystemExit):
        script.parse_args([*required, "--match_meter", "sometimes"])
