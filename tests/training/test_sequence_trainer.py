"""Training the sequence VAE end to end through the shared loop, on a handful of synthetic tunes saved to disk."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from datasets import Dataset, DatasetDict
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel

import hf_vq
from hf_vq.data.melodies import FEATURES
from hf_vq.training import main
from hf_vq.training.publishing import render_run_card

from ..conftest import ROOT, finished, launch

TINY = dict(decoder_type="hierarchical", num_bars=2, bar_length=16, encoder_hidden_size=16, decoder_hidden_size=16,
            conductor_hidden_size=16, latent_size=8, free_bits=1.0, max_beta=0.5, beta_rate=0.9)  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def tune(seed: int, bars: int = 6) -> list[int]:
    """A tune of `bars` 16-step bars: a note-on at every 4th step, a note-off now and then, holds between."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros(bars * 16, dtype=np.int64)
    tokens[::4] = rng.integers(40, 60, size=bars * 4)
    tokens[2::8] = 1  # note-offs
    return tokens.tolist()


@pytest.fixture(scope="module")
def melodies_dir(tmp_path_factory) -> Path:
    """A melody dataset as builtin:folk-melodies lays it out: 12 training tunes, 4 held out."""
    path = tmp_path_factory.mktemp("melodies") / "tunes"

    def rows(seeds):
        return Dataset.from_dict({
            "tune_id": [f"t/{s}" for s in seeds], "collection": ["t"] * len(seeds), "title": ["x"] * len(seeds),
            "meter": ["4/4"] * len(seeds), "steps_per_bar": [16] * len(seeds), "tokens": [tune(s) for s in seeds],
        }, features=FEATURES)  # fmt: skip

    DatasetDict({"train": rows(range(12)), "test": rows(range(100, 104))}).save_to_disk(path)
    return path


def write_recipe(path: Path, **overrides) -> Path:
    recipe = {
        "eval_split": "test", "max_train_steps": 4, "train_batch_size": 4, "checkpointing_steps": 2,
        "validation_steps": 2, "logging_steps": 1, "shuffle_buffer": 16, "report_to": "none",
        "learning_rate": 1e-3, "num_validation_images": 2, "transpose": 2, "model": TINY,
    } | overrides  # fmt: skip
    path.write_text(yaml.safe_dump(recipe))
    return path


def train(tmp_path: Path, data: Path, name: str, *extra: str, **overrides) -> tuple[Path, dict]:
    recipe = write_recipe(tmp_path / f"{name}.yaml", **overrides)
    output_dir = tmp_path / name
    argv = ["--config", str(recipe), "--dataset", str(data), "--output_dir", str(output_dir), *extra]
    return output_dir, main("sequence_vae", argv)


@pytest.mark.slow
def test_train_sequence_vae_end_to_end_with_held_out_metrics_and_a_card(melodies_dir, tmp_path):
    output_dir, metrics = train(tmp_path, melodies_dir, "run")
    model = AutoModel.from_pretrained(output_dir / "model")
    assert isinstance(model, hf_vq.SequenceVAEModel) and model.config.decoder_type == "hierarchical"
    assert metrics["step"] == 4
    # 4 held-out tunes of 6 bars: 5 two-bar windows each, all distinct
    assert metrics["eval_num_sequences"] == 20 and 0 <= metrics["eval_sampled_accuracy"] <= 1
    assert metrics["eval_negative_elbo"] == pytest.approx(metrics["eval_reconstruction_nll"] + metrics["eval_kl"])
    assert 0 <= metrics["eval_active_units"] <= metrics["eval_num_latent_dims"] == 8
    assert Image.open(output_dir / "samples" / "step-4.png").mode == "RGB"  # piano rolls
    arguments = json.loads((output_dir / "training_args.json").read_text())
    assert arguments["family"] == "sequence_vae" and arguments["sequence"]["transpose"] == 2
    card = str(render_run_card(output_dir, repo_id="org/music-vae"))
    assert "pipeline_tag: other" in card and "hierarchical decoder" in card and "sampled_accuracy" in card


@pytest.mark.slow
@pytest.mark.parametrize("decoder_type", ["flat", "hierarchical"])
def test_train_sequence_vae_resumes_exactly(melodies_dir, tmp_path, decoder_type):
    model = {**TINY, "decoder_type": decoder_type, "sampling_schedule": "inverse_sigmoid", "sampling_rate": 2.0}
    straight, _ = train(tmp_path, melodies_dir, "straight", model=model)
    train(tmp_path, melodies_dir, "resumed", max_train_steps=2, model=model)
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed, _ = train(tmp_path, melodies_dir, "resumed", "--resume_from_checkpoint", "latest", model=model)
    a, b = (load_file(run / "model" / "model.safetensors") for run in (straight, resumed))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tokens_column": "notes"}, "'notes' is not a column"),
        ({"transpose": -1}, "transpose"),
        ({"model": {**TINY, "num_bars": 16}}, "no window of 16 bars"),
        ({"model": {**TINY, "decoder_type": "conductor"}}, "decoder_type"),
    ],
)
def test_train_sequence_vae_names_what_is_wrong(melodies_dir, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(tmp_path, melodies_dir, "bad", **overrides)


@pytest.mark.slow
def test_two_processes_train_the_sequence_vae(melodies_dir, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", train_batch_size=2)
    args = [str(ROOT / "training" / "train_sequence_vae.py"), "--config", str(recipe), "--dataset", str(melodies_dir),
            "--output_dir", str(tmp_path / "two")]  # fmt: skip
    finished(launch(args, num_processes=2))
    arguments = json.loads((tmp_path / "two" / "training_args.json").read_text())
    assert arguments["num_processes"] == 2
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["step"] == 4
