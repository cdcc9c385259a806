"""ImageStream: odd and bad records, sharding, shuffling and exact resume, on local parquet / imagefolder data."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, IterableDataset
from PIL import Image as PILImage

import hf_vq.data.stream
from hf_vq.data import ImageStream, image_dataloader, load_image_dataset

from .conftest import encode, noise, write_parquet

RESOLUTION = 8
NUM_RECORDS = 40  # in 4 parquet files of 10


def odd_records() -> dict[int, bytes | None]:
    """id -> image bytes: every PIL mode that datasets meet, and the bad records."""
    palette_transparent = noise((18, 18), 4).quantize(16)
    palette_transparent.info["transparency"] = 0
    return {
        0: encode(noise((24, 20), 0)),
        1: encode(noise((20, 20), 1).convert("L")),
        2: encode(PILImage.new("RGBA", (16, 16), (0, 0, 0, 0))),  # fully transparent: white after conversion
        3: encode(noise((18, 18), 3).quantize(16)),  # palette
        4: encode(palette_transparent),
        5: encode(noise((16, 16), 5).convert("LA")),
        6: encode(PILImage.fromarray(np.full((16, 16), 65535, dtype=np.uint16))),  # I;16 white
        7: encode(noise((16, 16), 7).convert("CMYK"), "JPEG"),
        8: encode(noise((16, 16), 8).convert("1")),
        9: encode(noise((8, 10), 9)),  # small but not tiny: upscaled
        10: encode(noise((4, 4), 10)),  # tiny
        11: b"not an image",  # undecodable
        12: encode(noise((32, 32), 12))[:200],  # truncated: undecodable
        13: None,  # missing
    }


GOOD_IDS = set(range(NUM_RECORDS)) - {10, 11, 12, 13}
EXPECTED_SKIPS = {"undecodable": 2, "tiny": 1, "missing": 1}


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory) -> Path:
    records = odd_records() | {i: encode(noise((12, 12), i)) for i in range(14, NUM_RECORDS)}
    return write_parquet(tmp_path_factory.mktemp("mixed"), records, num_files=4)


def stream(source, **kwargs) -> ImageStream:
    if isinstance(source, Path):
        source = load_image_dataset(str(source))
    kwargs = {"resolution": RESOLUTION, "label_column": "id", **kwargs}
    return ImageStream(source, **kwargs)


def collect(s: ImageStream, batch_size: int = 4) -> tuple[list[int], torch.Tensor]:
    batches = list(image_dataloader(s, batch_size, drop_last=False))
    ids = [int(i) for batch in batches for i in batch["labels"]]
    return ids, torch.cat([batch["pixel_values"] for batch in batches])


def test_odd_modes_are_converted_and_bad_records_skipped_and_counted(parquet_dir, caplog):
    caplog.set_level(logging.INFO, logger="hf_vq.data")
    s = stream(parquet_dir, shuffle_buffer=16, random_flip=True)
    ids, pixels = collect(s)
    assert sorted(ids) == sorted(GOOD_IDS)  # every usable record exactly once
    assert pixels.shape == (len(GOOD_IDS), 3, RESOLUTION, RESOLUTION) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1
    assert s.skip_counts == EXPECTED_SKIPS
    assert (s.records_read, s.records_yielded) == (NUM_RECORDS, len(GOOD_IDS))
    by_id = dict(zip(ids, pixels, strict=True))
    assert torch.all(by_id[2] == 1)  # transparent RGBA composited over white
    assert torch.all(by_id[6] == 1)  # 16-bit white scaled, not clipped
    torch.testing.assert_close(by_id[1][0], by_id[1][2])  # grayscale copied to every channel
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # the first skip of each reason
    for reason, record_id in (("undecodable", None), ("tiny", 10), ("missing", 13)):
        (message,) = [m for m in warnings if f": {reason} (" in m]
        assert "'id': " in message and "rank 0/1" in message
        if record_id is not None:
            assert f"'id': {record_id}" in message
    assert "4x4 px, smaller than min_size=8" in " ".join(warnings)
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and "epoch 0" in r.getMessage()]
    assert summary == ["epoch 0 on rank 0/1: 36 images, 4 records skipped (undecodable: 2, tiny: 1, missing: 1)"]


def test_grayscale_output_and_periodic_skip_summary(parquet_dir, caplog, monkeypatch):
    monkeypatch.setattr(hf_vq.data.stream, "SKIP_LOG_EVERY", 2)
    caplog.set_level(logging.WARNING, logger="hf_vq.data")
    s = stream(parquet_dir, num_channels=1, shuffle_buffer=1)
    ids, pixels = collect(s)
    assert pixels.shape == (len(GOOD_IDS), 1, RESOLUTION, RESOLUTION)
    assert sorted(ids) == sorted(GOOD_IDS)
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(summaries) == 2 and summaries[-1].startswith("skipped 4 of ")


def test_imagefolder_with_corrupt_and_tiny_files(tmp_path):
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(3):
            noise((12, 10), i).save(tmp_path / label / f"{i}.png")
    PILImage.new("RGBA", (12, 12)).save(tmp_path / "cats" / "alpha.png")
    noise((3, 3), 0).save(tmp_path / "dogs" / "tiny.png")
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG but not really")
    s = ImageStream(load_image_dataset(str(tmp_path)), RESOLUTION, label_column="label", shuffle_buffer=4)
    ids, pixels = collect(s)
    assert sorted(ids) == [0, 0, 0, 0, 1, 1, 1] and pixels.shape == (7, 3, RESOLUTION, RESOLUTION)
    assert s.skip_counts == {"undecodable": 1, "tiny": 1, "missing": 0}


def test_a_stream_of_unknown_features_takes_bytes_paths_and_pil_images(tmp_path):
    noise((10, 10), 1).save(tmp_path / "on_disk.png")
    values = [encode(noise((10, 10), 0)), str(tmp_path / "on_disk.png"), noise((9, 9), 2).convert("L")]
    values += [str(tmp_path / "absent.png"), b"junk", None]

    def records():
        yield from ({"picture": value, "id": i} for i, value in enumerate(values))

    data = IterableDataset.from_generator(records)
    assert data.features is None  # known only while iterating: every value is checked as it comes
    s = ImageStream(data, RESOLUTION, image_column="picture", label_column="id", shuffle_buffer=4)
    ids, pixels = collect(s)
    assert sorted(ids) == [0, 1, 2] and pixels.shape == (3, 3, RESOLUTION, RESOLUTION)
    assert s.skip_counts == {"undecodable": 2, "tiny": 0, "missing": 1}


def test_an_all_corrupt_stream_fails_naming_the_column_and_first_bad_record(tmp_path):
    write_parquet(tmp_path, {i: b"garbage %d" % i for i in range(5)}, num_files=1)
    s = stream(tmp_path, shuffle_buffer=1)
    with pytest.raises(ValueError, match="no usable image in column 'image'") as info:
        collect(s)
    message = str(info.value)
    assert "first bad record: record 0 of epoch 0" in message and "'id': 0" in message and "'image'" in message
    assert "undecodable (UnidentifiedImageError" in message and "undecodable: 5" in message


def test_bad_records_before_the_first_good_one_fail_fast(tmp_path):
    records = {i: b"garbage" for i in range(3)} | {3: encode(noise((10, 10), 0))}
    write_parquet(tmp_path, records, num_files=1)
    with pytest.raises(ValueError, match="in the first 3 records"):
        collect(stream(tmp_path, shuffle_buffer=1, max_bad_records=3))
    s = stream(tmp_path, shuffle_buffer=1, max_bad_records=4)
    assert collect(s)[0] == [3] and s.skip_counts["undecodable"] == 3


def test_missing_columns_and_bad_arguments_fail_at_construction(parquet_dir):
    data = load_image_dataset(str(parquet_dir))
    with pytest.raises(ValueError, match="'img' is not a column.*'image', 'id'"):
        ImageStream(data, RESOLUTION, image_column="img")
    with pytest.raises(ValueError, match="label_column"):
        ImageStream(data, RESOLUTION, label_column="class")
    with pytest.raises(ValueError, match="rank"):
        ImageStream(data, RESOLUTION, rank=2, world_size=2)
    with pytest.raises(ValueError, match="random_crop"):
        ImageStream(data, RESOLUTION, crop_size=16)
    with pytest.raises(ValueError, match="not an image"):
        ImageStream(Dataset.from_dict({"image": [[1.5, 2.5]]}), RESOLUTION)


def test_an_empty_shard_fails_clearly():
    data = Dataset.from_dict({"image": [noise((10, 10), 0)], "id": [0]})
    with pytest.raises(ValueError, match="rank 1 of 2 has no records"):
        collect(stream(data, rank=1, world_size=2))


@pytest.fixture(scope="module")
def numbered() -> Dataset:
    """100 distinct 10x10 images whose id is their label."""
    return Dataset.from_dict({"image": [noise((10, 10), i) for i in range(100)], "id": list(range(100))})


def test_shuffle_is_seeded_complete_and_differs_per_epoch(numbered):
    s = stream(numbered, shuffle_buffer=16)
    first = collect(s)[0]
    assert sorted(first) == list(range(100)) and first != list(range(100))
    assert s.epoch == 1  # a finished epoch moves the stream to the next one
    second = collect(s)[0]
    assert sorted(second) == list(range(100)) and second != first
    assert collect(stream(numbered, shuffle_buffer=16))[0] == first  # same seed, same order
    assert collect(stream(numbered, shuffle_buffer=16, seed=1))[0] != first
    again = stream(numbered, shuffle_buffer=16)
    again.set_epoch(1)
    assert collect(again)[0] == second


def test_repeat_streams_epoch_after_epoch(numbered):
    s = stream(numbered, shuffle_buffer=16, repeat=True)
    batches = iter(image_dataloader(s, 10))
    ids = [int(i) for _ in range(25) for i in next(batches)["labels"]]
    assert [sorted(ids[k : k + 100]) for k in (0, 100)] == [list(range(100))] * 2
    assert ids[:100] != ids[100:200] and s.epoch == 2


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("kind", ["memory", "parquet"])
def test_shards_cover_every_record_exactly_once(numbered, parquet_dir, kind, world_size):
    # 4 parquet files: 2 processes get whole files, 3 processes every third record; in memory: 6 shards
    source, expected = (numbered, set(range(100))) if kind == "memory" else (parquet_dir, GOOD_IDS)
    seen = [collect(stream(source, rank=r, world_size=world_size, shuffle_buffer=8))[0] for r in range(world_size)]
    everything = [i for ids in seen for i in ids]
    assert sorted(everything) == sorted(expected) and all(seen)


def _collect_ids_in_process(rank: int, directory: str, out: str) -> None:
    torch.set_num_threads(1)
    s = ImageStream(load_image_dataset(directory), RESOLUTION, label_column="id", rank=rank, world_size=2)
    ids = [int(i) for batch in image_dataloader(s, 3, drop_last=False) for i in batch["labels"]]
    Path(out, f"{rank}.json").write_text(json.dumps(ids))


@pytest.mark.slow
def test_two_processes_cover_every_record_exactly_once(parquet_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.multiprocessing.spawn(_collect_ids_in_process, args=(str(parquet_dir), str(tmp_path)), nprocs=2)
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert sorted(seen[0] + seen[1]) == sorted(GOOD_IDS) and seen[0] and seen[1]
    assert seen[0] == collect(stream(parquet_dir, rank=0, world_size=2))[0]  # processes see what the shards promise


def resumable(parquet_dir: Path, rank: int, world_size: int) -> ImageStream:
    # 7 does not divide the 10 records of a file: blocks straddle shards; crops and flips are random per record
    options = dict(shuffle_buffer=7, random_flip=True, random_crop=True, crop_size=10, repeat=True)
    return stream(parquet_dir, rank=rank, world_size=world_size, **options)


def without_source(state: dict) -> dict:
    # datasets' own part of the state records how far its reader has prefetched, which can differ between two
    # readers at the same record; everything else must be equal
    return {key: value for key, value in state.items() if key != "source"}


@pytest.mark.parametrize(("rank", "world_size"), [(0, 1), (1, 2)])
def test_resume_continues_at_the_exact_record(parquet_dir, rank, world_size):
    reference = resumable(parquet_dir, rank, world_size)
    batches, states = [], [json.dumps(reference.state_dict())]
    iterator = iter(image_dataloader(reference, 3))
    for _ in range(30):  # 2 to 4 epochs: through block, file and epoch boundaries, past the bad records
        batches.append(next(iterator))
        states.append(json.dumps(reference.state_dict()))  # what a checkpoint would write
    assert reference.epoch >= 2 and sum(reference.skip_counts.values()) > 0

    def resume(state: str, start: int, stop: int) -> ImageStream:
        resumed = resumable(parquet_dir, rank, world_size)
        resumed.load_state_dict(json.loads(state))
        resumed_iterator = iter(image_dataloader(resumed, 3))
        for expected in batches[start:stop]:
            got = next(resumed_iterator)
            assert torch.equal(got["labels"], expected["labels"]), start
            torch.testing.assert_close(got["pixel_values"], expected["pixel_values"], rtol=0, atol=0)
        assert without_source(resumed.state_dict()) == without_source(json.loads(states[stop]))
        return resumed

    for cut in (0, 1, 2, 5, 11, 12, 20, 29):
        resume(states[cut], cut, 30)
    # a position saved by a resumed run resumes exactly too
    resumed_once = resume(states[5], 5, 13)
    resume(json.dumps(resumed_once.state_dict()), 13, 30)


def test_resume_after_a_finished_epoch_starts_the_next_one(numbered):
    s = stream(numbered, shuffle_buffer=16)
    collect(s)
    state = s.state_dict()
    expected = collect(s)[0]
    resumed = stream(numbered, shuffle_buffer=16)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # the loop's own set_epoch at a restored position keeps the position
    assert collect(resumed)[0] == expected


def test_set_epoch_keeps_a_restored_position_and_restarts_other_epochs(numbered):
    s = stream(numbered, shuffle_buffer=16)
    batches = iter(image_dataloader(s, 10))
    first = [int(i) for _ in range(3) for i in next(batches)["labels"]]
    state = s.state_dict()
    rest = collect(s)[0]
    resumed = stream(numbered, shuffle_buffer=16)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)
    assert collect(resumed)[0] == rest
    resumed.set_epoch(0)  # at the start of epoch 1 now: moves back to the start of epoch 0
    assert collect(resumed)[0] == first + rest


def test_a_state_only_loads_into_the_stream_it_came_from(numbered):
    state = stream(numbered, rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="each process must restore its own state"):
        stream(numbered, rank=1, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        stream(numbered, rank=0, world_size=2, seed=3).load_state_dict(state)


def test_streams_of_the_builtin_digits_carry_their_labels():
    digits = load_image_dataset("builtin:digits", split="test")
    s = ImageStream(digits, 16, num_channels=1, label_column="label", shuffle_buffer=64)
    ids, pixels = collect(s, batch_size=64)
    assert pixels.shape == (360, 1, 16, 16)
    assert np.bincount(ids, minlength=10).tolist() == np.bincount(digits["label"], minlength=10).tolist()


def test_a_stream_can_be_pickled_for_spawned_processes(numbered):
    import pickle

    s = stream(numbered, shuffle_buffer=16)
    assert collect(pickle.loads(pickle.dumps(s)))[0] == collect(s)[0]
