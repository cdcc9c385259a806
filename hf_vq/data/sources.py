"""Resolving a source argument into a `datasets` object: a builtin, a local folder (parquet or images), a saved
dataset or a Hub dataset id; and the check that the columns a caller names exist."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from datasets import (
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    load_dataset,
    load_dataset_builder,
    load_from_disk,
)

from ..utils.errors import UsageError
from ..utils.paths import check_source
from .builtin import is_builtin, load_builtin


def load_image_dataset(
    source: str, split: str = "train", dataset_config: str | None = None, streaming: bool = True
) -> IterableDataset | Dataset:
    """One split of an image dataset: a builtin (`builtin:<name>`), a local folder, or a Hub dataset id.

    A local folder holding `*.parquet` files (at any depth) is read with the parquet builder, any other folder with
    imagefolder (labels from subfolder names); in both, files or folders named after a split (`train-*.parquet`,
    `test/`) make that split, and everything else is `train`. Builtins are small and returned in memory whatever
    `streaming` says (`ImageStream` streams them). Raises a `UsageError` naming the available splits, or naming a
    local path that does not exist (before any request to the Hub: `hf_vq.utils.paths.check_source`).
    """
    source = check_source(source, "--dataset")
    if is_builtin(source):
        return load_builtin(source, split)
    if os.path.isdir(source):
        has_parquet = any(name.endswith(".parquet") for _, _, names in os.walk(source) for name in names)
        builder = "parquet" if has_parquet else "imagefolder"
        splits = load_dataset(builder, data_dir=source, streaming=streaming)
        if split not in splits:
            raise UsageError(f"{builder} folder {source!r} has no split {split!r}; available: {list(splits)}")
        return splits[split]
    try:
        return load_dataset(source, dataset_config, split=split, streaming=streaming)
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        raise UsageError(f"dataset {source!r} has no split {split!r}: {error}") from error


# Holding out part of a local folder that has only a training split: a small fraction of its data files, at least
# one and at most HOLD_OUT_MAX_FILES; a folder of fewer than HOLD_OUT_MIN_FILES files trains without evaluation.
HOLD_OUT_FRACTION = 0.05
HOLD_OUT_MAX_FILES = 500
HOLD_OUT_MIN_FILES = 10
# Files that describe the others (imagefolder's metadata); they go with both parts, never held out.
METADATA_NAMES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


@dataclass(frozen=True)
class HeldOutSplit:
    """A deterministic part of a local folder's training files held out for evaluation, because the folder has no
    eval split: `train_files` are trained on, `eval_files` (empty when the folder is too small) are evaluated on."""

    source: str
    split: str  # the split the files are taken from
    builder: str  # "parquet" or "imagefolder"
    train_files: tuple[str, ...]
    eval_files: tuple[str, ...]
    metadata_files: tuple[str, ...] = ()

    def describe(self) -> str:
        """What the eval split is, for the log and metrics.json."""
        return f"held out from {self.split} ({len(self.eval_files)} files)"

    def record(self, eval_split: str | None) -> dict[str, str | int]:
        """What a run's metrics.json says about its eval split: the files held out, or why none were."""
        if self.eval_files:
            return {"eval_split": self.describe(), "eval_held_out_files": len(self.eval_files)}
        count = len(self.train_files)
        return {"eval_skipped": f"{self.source} has no {eval_split!r} split and too few files to hold out ({count})"}

    def load(self, part: str, streaming: bool = True) -> IterableDataset | Dataset:
        """The `"train"` or `"eval"` part as a dataset (both loaded together, so that imagefolder's labels agree)."""
        if part not in ("train", "eval"):
            raise ValueError(f"part must be 'train' or 'eval', got {part!r}")
        if not self.eval_files:
            raise UsageError(f"{self.source!r} has too few files to hold out an eval split; use --eval_split none")
        metadata = list(self.metadata_files)
        data_files = {"train": [*self.train_files, *metadata], "eval": [*self.eval_files, *metadata]}
        return load_dataset(self.builder, data_files=data_files, streaming=streaming)[part]


def _local_split_files(source: str) -> tuple[str, dict[str, list[str]]]:
    """The builder of a local folder and the data files of each of its splits, as `datasets` resolves them."""
    has_parquet = any(name.endswith(".parquet") for _, _, names in os.walk(source) for name in names)
    builder = "parquet" if has_parquet else "imagefolder"
    data_files = load_dataset_builder(builder, data_dir=source).config.data_files or {}
    return builder, {str(split): [str(path) for path in files] for split, files in data_files.items()}


def hold_out_split(source: str, split: str = "train", eval_split: str | None = "test") -> HeldOutSplit | None:
    """The held-out part of `split` when `source` is a local folder whose only split is `split` (no `eval_split`),
    else None (the source has the eval split, or other splits to choose from, or is no local folder).

    The files held out are the ones whose path (relative to the folder) hashes lowest: always the same ones for the
    same folder, wherever it lies, and for any number of processes. A folder of fewer than `HOLD_OUT_MIN_FILES` data
    files gets an empty `eval_files` (train on everything, evaluate on nothing)."""
    if eval_split is None or is_builtin(source):
        return None
    source = os.path.expanduser(source)
    if not os.path.isdir(source):
        return None
    builder, splits = _local_split_files(source)
    if eval_split in splits or set(splits) != {split}:
        return None  # the eval split exists, or load_image_dataset names the splits there are
    files = sorted(splits[split])
    metadata = tuple(path for path in files if os.path.basename(path) in METADATA_NAMES)
    data = [path for path in files if os.path.basename(path) not in METADATA_NAMES]

    def key(path: str) -> str:
        relative = Path(os.path.relpath(path, source)).as_posix()
        return hashlib.sha256(relative.encode()).hexdigest()

    if len(data) < HOLD_OUT_MIN_FILES:
        return HeldOutSplit(source, split, builder, tuple(data), (), metadata)
    count = min(max(1, round(len(data) * HOLD_OUT_FRACTION)), HOLD_OUT_MAX_FILES)
    held = set(sorted(data, key=key)[:count])
    train = tuple(path for path in data if path not in held)
    return HeldOutSplit(source, split, builder, train, tuple(sorted(held)), metadata)


def load_code_dataset(source: str, split: str = "train") -> Dataset | IterableDataset:
    """One split of a code dataset: a folder written by `Dataset(Dict).save_to_disk` (as `scripts/encode_dataset.py`
    writes; a single saved `Dataset` is every split), a local parquet folder, or a Hub dataset id (streamed)."""
    source = check_source(source, "--dataset")
    saved = any(os.path.isfile(os.path.join(source, name)) for name in ("dataset_dict.json", "state.json"))
    if saved:
        data = load_from_disk(source)
        if isinstance(data, DatasetDict):
            if split not in data:
                raise UsageError(f"code dataset {source!r} has no split {split!r}; available: {list(data)}")
            return data[split]
        return data
    return load_image_dataset(source, split)


def check_columns(features: Features | dict, **columns: str | None) -> None:
    """Raise a `ValueError` naming the argument and the dataset's columns unless every given column exists."""
    for role, column in columns.items():
        if column is not None and column not in features:
            raise UsageError(f"`{role}` {column!r} is not a column of the dataset; columns: {list(features)}")
