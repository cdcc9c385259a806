"""builtin:folk-melodies on tiny ABC files (skips by reason, split, cache), a few real corpus files, and the windows
that SequenceStream and melody_windows cut from tunes."""

import json
import os
from importlib.metadata import version

import numpy as np
import pytest
import torch
from datasets import Dataset

import hf_vq.data.melodies as melodies
from hf_vq.data import (
    BUILTIN_DATASETS,
    SequenceStream,
    build_folk_melodies,
    folk_melodies_report,
    load_builtin,
    load_folk_melodies,
    melody_windows,
)
from hf_vq.data.melodies import FEATURES, tune_split, tune_windows
from hf_vq.music import MAX_PITCH, NO_EVENT, NOTE_OFF, VOCAB_SIZE, pitch_to_token
from hf_vq.utils.errors import UsageError

HEAD = "M:{meter}\nL:1/8\nK:C\n"
TUNE_A = "G2 | c2d2 e2f2 | g2f2 e2d2 | c8 |]"  # 4/4 with a quarter-note pickup
ESSEN = {
    1: ("Pickup", "4/4", TUNE_A),
    2: ("Triplets", "4/4", "(3cde c2 d2e2 | c8 |]"),
    3: ("Too low", "4/4", "C,,,,2 c2 d2 e2 | c8 |]"),  # C0 = MIDI 12
    4: ("Silence", "4/4", "z8 | z8 |]"),
    5: ("Two-four", "2/4", "GA | Bc dB | A4 |]"),
    6: ("Same as 1", "4/4", TUNE_A),
}
ONEILLS_1 = {1: ("One", "C|", "c2e2 g2e2 | d8 |]"), 2: ("Two", "6/8", "cde fga | g6 |]")}
ONEILLS_2 = {2: ("Two again", "6/8", "cde fgb | g6 |]"), 3: ("Three", "3/4", "e2 d2 c2 | c6 |]")}
KEPT = {"essen/tiny/1", "essen/tiny/5", "oneills/0001", "oneills/0002", "oneills/0003"}
SKIPPED = {"tuplet": 1, "pitch_range": 1, "empty": 1, "duplicate_content": 1, "duplicate_number": 1}


def write_abc(path, tunes: dict) -> str:
    text = "\n".join(
        f"X:{number}\nT:{title}\n{HEAD.format(meter=meter)}{body}\n" for number, (title, meter, body) in tunes.items()
    )
    path.write_text(text)
    return path


@pytest.fixture
def tiny_corpus(tmp_path, monkeypatch):
    """The corpus files replaced by three tiny ABC files: an Essen-like one and two overlapping O'Neill-like ones."""
    folder = tmp_path / "abc"
    folder.mkdir()
    files = [
        ("essen", write_abc(folder / "tiny.abc", ESSEN)),
        ("oneills", write_abc(folder / "0001-0002.abc", ONEILLS_1)),
        ("oneills", write_abc(folder / "0002-0003.abc", ONEILLS_2)),
    ]
    monkeypatch.setattr(melodies, "corpus_files", lambda collections, max_files=None: files)
    return files


def build(**kwargs):
    return build_folk_melodies(collections=("essen", "oneills"), num_proc=1, progress=False, **kwargs)


def test_tunes_that_cannot_be_encoded_are_skipped_and_counted(tiny_corpus):
    dataset, report = build()
    ids = set(dataset["train"]["tune_id"]) | set(dataset["test"]["tune_id"])
    assert ids == KEPT
    assert report["skipped"] == SKIPPED
    assert report["collections"]["essen"] == {
        "files": 1,
        "tunes": 6,
        "kept": 2,
        "skipped": {"duplicate_content": 1, "empty": 1, "pitch_range": 1, "tuplet": 1},
    }
    assert report["collections"]["oneills"]["skipped"] == {"duplicate_number": 1}
    assert folk_melodies_report(dataset) == report  # stored in info.description
    assert dataset["train"].features == FEATURES


def test_rows_record_meter_bar_length_and_pickup_padding(tiny_corpus):
    dataset, _ = build()
    rows = {row["tune_id"]: row for split in dataset.values() for row in split}
    pickup = rows["essen/tiny/1"]
    assert (pickup["title"], pickup["meter"], pickup["steps_per_bar"]) == ("Pickup", "4/4", 16)
    assert pickup["tokens"][:13] == [NO_EVENT] * 12 + [pitch_to_token(67)]  # G4 ends the padded first bar
    assert (rows["essen/tiny/5"]["meter"], rows["essen/tiny/5"]["steps_per_bar"]) == ("2/4", 8)
    assert (rows["oneills/0001"]["meter"], rows["oneills/0001"]["steps_per_bar"]) == ("2/2", 16)
    assert (rows["oneills/0002"]["title"], rows["oneills/0002"]["steps_per_bar"]) == ("Two", 12)  # first file's
    assert rows["oneills/0003"]["collection"] == "oneills"


def test_max_tunes_per_file_limits_the_build(tiny_corpus):
    dataset, report = build(max_tunes_per_file=1)
    rows = {row["tune_id"]: row for split in dataset.values() for row in split}
    assert set(rows) == {"essen/tiny/1", "oneills/0001", "oneills/0002"}
    assert rows["oneills/0002"]["title"] == "Two again"  # the first tune of the second file
    assert report["skipped"] == {} and report["limits"] == {"max_files": None, "max_tunes_per_file": 1}


def test_split_is_by_tune_deterministic_and_about_a_tenth():
    ids = [f"essen/file/{i}" for i in range(5000)]
    splits = [tune_split(tune_id) for tune_id in ids]
    assert splits == [tune_split(tune_id) for tune_id in ids]
    assert 0.08 < splits.count("test") / len(ids) < 0.12


def test_build_is_deterministic_and_no_tune_is_on_both_sides(tiny_corpus):
    first, _ = build()
    second, _ = build()
    for split in ("train", "test"):
        assert first[split]["tune_id"] == second[split]["tune_id"]
        assert first[split]["tokens"] == second[split]["tokens"]
    assert not set(first["train"]["tune_id"]) & set(first["test"]["tune_id"])
    for split in ("train", "test"):
        assert all(tune_split(tune_id) == split for tune_id in first[split]["tune_id"])


def test_the_saved_build_is_reused_without_parsing(tiny_corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "folk"
    built = load_folk_melodies(cache_dir=cache, collections=("essen", "oneills"), num_proc=1, progress=False)
    assert sorted(os.listdir(cache.parent)) == ["folk"]  # the temporary folder was renamed, nothing left over
    assert json.loads((cache / "build_info.json").read_text())["skipped"] == SKIPPED

    def refuse(path):
        raise AssertionError(f"parsed {path} although the build is saved")

    monkeypatch.setattr(melodies, "_parse_file", refuse)
    again = load_folk_melodies(cache_dir=cache, collections=("essen", "oneills"), num_proc=1, progress=False)
    assert again["train"]["tune_id"] == built["train"]["tune_id"] and again["test"].num_rows == built["test"].num_rows
    assert folk_melodies_report(again)["skipped"] == SKIPPED


def test_builtin_registry_builds_into_the_datasets_cache(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(melodies.datasets_config, "HF_DATASETS_CACHE", tmp_path / "hf")
    assert "folk-melodies" in BUILTIN_DATASETS
    default = melodies.folk_melodies_cache_path()
    name = f"folk-melodies-v{melodies.ENCODING_VERSION}-music21-{version('music21')}"
    assert default == tmp_path / "hf" / "hf_vq" / name
    assert melodies.folk_melodies_cache_path(max_files=2) != default  # a quick build never stands in for the corpus
    monkeypatch.setattr(melodies.os, "cpu_count", lambda: 1)
    train = load_builtin("builtin:folk-melodies", split="train")
    assert (default / "dataset_dict.json").is_file() and set(train["tune_id"]) <= KEPT


def test_the_cache_is_keyed_by_the_music21_version_the_build_records(tiny_corpus, tmp_path, monkeypatch):
    # another music21 may parse a tune differently: its build goes to another folder, never read for this one's
    monkeypatch.setattr(melodies.datasets_config, "HF_DATASETS_CACHE", tmp_path / "hf")
    installed = melodies.folk_melodies_cache_path()
    assert installed.name.endswith(f"-music21-{version('music21')}")
    monkeypatch.setattr(melodies, "version", lambda package: "99.1" if package == "music21" else version(package))
    other = melodies.folk_melodies_cache_path()
    assert other.name == f"folk-melodies-v{melodies.ENCODING_VERSION}-music21-99.1" and other != installed
    assert melodies.folk_melodies_cache_path(max_files=2).name.startswith(other.name + "-")
    _, report = build()
    assert report["music21_version"] == "99.1"


def test_workers_are_forked_on_linux_only_elsewhere_the_build_runs_in_process(tiny_corpus, monkeypatch):
    monkeypatch.setattr(melodies.sys, "platform", "linux")
    assert melodies._worker_context().get_start_method() == "fork"
    expected, _ = build()

    def no_pool(*args, **kwargs):
        raise AssertionError("started worker processes off Linux")

    monkeypatch.setattr(melodies, "ProcessPoolExecutor", no_pool)
    for platform in ("darwin", "win32"):
        monkeypatch.setattr(melodies.sys, "platform", platform)
        assert melodies._worker_context() is None
        dataset, _ = build_folk_melodies(collections=("essen", "oneills"), num_proc=4, progress=False)
        for split in ("train", "test"):
            assert dataset[split]["tokens"] == expected[split]["tokens"]


def test_real_corpus_files_encode():
    dataset, report = build_folk_melodies(collections=("ryans",), max_files=3, num_proc=1, progress=False)
    rows = [row for split in dataset.values() for row in split]
    assert report["collections"]["ryans"]["tunes"] == 3 and len(rows) == report["collections"]["ryans"]["kept"] >= 1
    for row in rows:
        assert row["tune_id"].startswith("ryans/") and row["title"]
        assert 0 <= min(row["tokens"]) and max(row["tokens"]) < VOCAB_SIZE


# ------------------------------------------------------------------------------------------------------ windows

C4, D4, E4 = (pitch_to_token(p) for p in (60, 62, 64))
BAR_A = [C4, NO_EVENT, D4, NO_EVENT] * 4
BAR_B = [E4] + [NO_EVENT] * 14 + [NOTE_OFF]
SILENT = [NO_EVENT] * 16


def tunes(*rows: tuple[list[int], int]) -> Dataset:
    """Tune rows of (tokens, steps_per_bar)."""
    n = len(rows)
    columns = {
        "tune_id": [f"t/{i}" for i in range(n)],
        "collection": ["t"] * n,
        "title": [""] * n,
        "meter": [""] * n,
        "steps_per_bar": [bar for _, bar in rows],
        "tokens": [tokens for tokens, _ in rows],
    }
    return Dataset.from_dict(columns, features=FEATURES)


def test_windows_hop_one_bar_and_drop_silent_and_repeated_windows():
    tokens = BAR_A + BAR_B + SILENT + SILENT + BAR_A + BAR_B + [C4] * 5  # 6 bars and a partial one
    windows, silent, duplicates = tune_windows(np.asarray(tokens), window=32, hop=16)
    # starts 0, 16, 32, 48, 64: 32-48 is silent, 64-96 repeats 0-32
    assert (silent, duplicates) == (1, 1)
    expected = [BAR_A + BAR_B, BAR_B + SILENT, SILENT + BAR_A]
    assert windows.tolist() == expected and windows.dtype == np.int8
    kept, _, repeats = tune_windows(np.asarray(tokens), window=32, hop=16, dedupe=False)
    assert len(kept) == 4 and repeats == 0
    assert tune_windows(np.asarray(BAR_A), window=32, hop=16)[0].shape == (0, 32)


def test_melody_windows_matches_meters_and_is_deterministic():
    data = tunes((BAR_A + BAR_B + BAR_A, 16), (BAR_B + BAR_B + BAR_A, 8), (BAR_A, 16))
    windows = melody_windows(data, num_bars=2)
    assert windows.dtype == torch.int64 and windows.tolist() == [BAR_A + BAR_B, BAR_B + BAR_A]
    assert torch.equal(windows, melody_windows(data, num_bars=2))
    every_meter = melody_windows(data, num_bars=2, match_meter=False)
    assert every_meter.shape == (4, 32)  # the 8-step tune cut in 16-step units too (BAR_B + BAR_A twice: once)
    assert melody_windows(data, num_bars=1, max_windows=2).tolist() == [BAR_A, BAR_A]  # first and last of 4
    _, stats = melodies.cut_melody_windows(data, num_bars=2)
    assert stats == {
        "tunes": 3,
        "tunes_other_meter": 1,
        "tunes_too_short": 1,
        "windows": 2,
        "silent": 0,
        "duplicate": 0,
    }


def test_sequence_stream_yields_every_window_once_per_epoch():
    data = tunes(*[((BAR_A + BAR_B) * 3 + [pitch_to_token(48 + i)] * 16, 16) for i in range(12)])
    expected = sorted(map(tuple, melody_windows(data, num_bars=2).tolist()))
    samples = list(SequenceStream(data, num_bars=2, shuffle_buffer=8, seed=3))
    assert all(s["input_ids"].shape == (32,) and s["input_ids"].dtype == torch.int64 for s in samples)
    assert sorted(tuple(s["input_ids"].tolist()) for s in samples) == expected
    from_iterable = SequenceStream(data.to_iterable_dataset(num_shards=3), num_bars=2, seed=3)
    assert sorted(tuple(s["input_ids"].tolist()) for s in from_iterable) == expected
    # two processes split the windows between them
    shards = [list(SequenceStream(data, num_bars=2, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(tuple(s["input_ids"].tolist()) for shard in shards for s in shard) == expected


def test_sequence_stream_resumes_exactly():
    data = tunes(*[((BAR_A + BAR_B) * 3 + [pitch_to_token(48 + i)] * 16, 16) for i in range(12)])
    first = SequenceStream(data, num_bars=2, transpose=3, shuffle_buffer=8, seed=1)
    iterator = iter(first)
    for _ in range(10):
        next(iterator)
    state = first.state_dict()
    rest = [s["input_ids"].tolist() for s in iterator]
    resumed = SequenceStream(data, num_bars=2, transpose=3, shuffle_buffer=8, seed=1)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert [s["input_ids"].tolist() for s in resumed] == rest


def test_transposition_stays_in_range():
    top = pitch_to_token(MAX_PITCH - 1)
    data = tunes(([top, NO_EVENT, C4, NOTE_OFF] * 8, 16), ([C4, NO_EVENT] * 16, 16))
    shifts = {0: set(), 1: set()}
    for seed in range(150):
        for sample in SequenceStream(data, num_bars=2, transpose=5, seed=seed):
            tokens = sample["input_ids"]
            notes = tokens[tokens >= 2]
            assert int(notes.max()) < VOCAB_SIZE and int(notes.min()) >= 2
            kind = 0 if len(set(notes.tolist())) == 2 else 1
            shifts[kind].add(int(notes.max()) - (top if kind == 0 else C4))
    assert shifts[0] == {-5, -4, -3, -2, -1, 0, 1}  # MAX_PITCH - 1 goes up by 1 at most
    assert shifts[1] == set(range(-5, 6))


def test_missing_columns_and_no_windows_are_usage_errors():
    data = tunes((BAR_A * 2, 16)).rename_column("tokens", "notes")
    with pytest.raises(UsageError, match="'tokens'"):
        SequenceStream(data)
    assert len(list(SequenceStream(data, tokens_column="notes"))) == 1
    # the ways on are what a user can pass: training's flag or recipe key, the model config's num_bars
    with pytest.raises(UsageError, match="column 'steps_per_bar' is not a column") as error:
        SequenceStream(data.remove_columns("steps_per_bar"), tokens_column="notes")
    message = str(error.value)
    assert "pass --match_meter false, or set `match_meter: false` in a recipe)" in message and "\n" not in message
    assert len(list(SequenceStream(data.remove_columns("steps_per_bar"), tokens_column="notes", match_meter=False)))
    fewer = "use fewer bars (`num_bars` in the model config)"
    with pytest.raises(UsageError, match="no window of 16 bars") as error:
        SequenceStream(data, num_bars=16, tokens_column="notes")
    message = str(error.value)
    assert message.endswith(
        f"{fewer}, or cut every tune of any meter (--match_meter false; a recipe's `match_meter: false`)"
    )
    assert "\n" not in message and "match_meter=False" not in message
    with pytest.raises(UsageError, match="no window of 16 bars") as error:
        SequenceStream(data, num_bars=16, tokens_column="notes", match_meter=False)
    assert str(error.value).endswith(fewer)  # every tune is already cut: fewer bars is the only way on
    with pytest.raises(UsageError, match="transpose"):
        SequenceStream(data, transpose=-1, tokens_column="notes")
