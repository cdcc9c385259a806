"""Resolving a source argument into a `datasets` object: a builtin, a local folder (parquet or images), a saved
dataset or a Hub dataset id; and the check that the columns a caller names exist."""

from __future__ import annotations

import os

from datasets import Dataset, DatasetDict, Features, IterableDataset, load_dataset, load_from_disk

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
