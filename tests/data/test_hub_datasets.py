"""A dataset repo of parquet shards on a (loopback) Hub, streamed through `datasets` by `hf_vq.data`: each process
of a two-process run reads whole shards, and together they see every image once per epoch."""

import io
import json
import subprocess
import sys
import textwrap

import pytest

import hf_vq.data

from ..conftest import launch
from ..hub_server import LoopbackHub

NUM_SHARDS, PER_SHARD = 4, 10

# Each process streams one epoch of its part of org/digits and writes the indices it saw.
READER = """
import json, os, sys
from hf_vq.data import ImageStream, load_image_dataset

rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
source = load_image_dataset("org/digits", "train")
stream = ImageStream(source, 8, num_channels=1, label_column="index", shuffle_buffer=4, seed=0, rank=rank,
                     world_size=world_size)
seen = [int(record["labels"]) for record in stream]
with open(os.path.join(sys.argv[1], f"seen-{rank}.json"), "w") as handle:
    json.dump({"seen": seen, "world_size": world_size}, handle)
"""


@pytest.fixture
def hub_with_digits():
    """org/digits: 40 digits with their row index, in 4 parquet shards, as the Hub stores image datasets."""
    digits = hf_vq.data.load_builtin("digits", split="train").select(range(NUM_SHARDS * PER_SHARD))
    digits = digits.add_column("index", list(range(len(digits))))
    files = {}
    for shard in range(NUM_SHARDS):
        buffer = io.BytesIO()
        digits.shard(NUM_SHARDS, shard, contiguous=True).to_parquet(buffer)
        files[f"data/train-{shard:05d}-of-{NUM_SHARDS:05d}.parquet"] = buffer.getvalue()
    with LoopbackHub() as hub:
        hub.add_dataset("org/digits", files)
        yield hub


def hub_environment(monkeypatch, hub: LoopbackHub, home) -> None:
    """The variables huggingface_hub reads at import, for the subprocesses `launch` starts."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_the_loopback_hub_serves_what_datasets_streaming_asks(hub_with_digits, tmp_path, monkeypatch):
    hub_environment(monkeypatch, hub_with_digits, tmp_path / "home")
    code = textwrap.dedent("""
        from datasets import load_dataset
        from huggingface_hub import HfApi
        stream = load_dataset("org/digits", split="train", streaming=True)
        print(stream.num_shards, sum(1 for _ in stream))
        paths = ["data", "data/train-00001-of-00004.parquet"]
        infos = HfApi().get_paths_info("org/digits", paths, repo_type="dataset")
        print(sorted(type(info).__name__ + ":" + info.path for info in infos))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{NUM_SHARDS} {NUM_SHARDS * PER_SHARD}"
    assert lines[1] == "['RepoFile:data/train-00001-of-00004.parquet', 'RepoFolder:data']"
    assert hub_with_digits.ranges  # parquet is read by byte ranges, not whole files
    assert all(path.startswith("data/train-") for path, _, _ in hub_with_digits.ranges)


@pytest.mark.slow
def test_two_processes_stream_whole_shards_of_a_hub_dataset_each_image_once(hub_with_digits, tmp_path, monkeypatch):
    hub_environment(monkeypatch, hub_with_digits, tmp_path / "home")
    script = tmp_path / "read.py"
    script.write_text(READER)
    process = launch([str(script), str(tmp_path)], num_processes=2)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]
    parts = [json.loads((tmp_path / f"seen-{rank}.json").read_text()) for rank in range(2)]
    assert all(part["world_size"] == 2 for part in parts)
    seen = [part["seen"] for part in parts]
    # every image once per epoch: the two parts add up to the dataset, with nothing seen twice
    assert sorted(seen[0] + seen[1]) == list(range(NUM_SHARDS * PER_SHARD))
    # whole shards per process (4 shards, 2 processes): each shard's rows all went to one process
    for shard in range(NUM_SHARDS):
        rows = set(range(shard * PER_SHARD, (shard + 1) * PER_SHARD))
        assert rows <= set(seen[0]) or rows <= set(seen[1]), (shard, seen)
