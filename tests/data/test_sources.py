"""load_image_dataset: local folders split by file names, and missing splits named with the available ones."""

import pytest
from datasets import Dataset, IterableDataset

from hf_vq.data import load_image_dataset

from .conftest import encode, noise, write_parquet


def test_load_image_dataset_reads_split_files_and_rejects_missing_splits(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        write_parquet(tmp_path / "data" / split, {i: encode(noise((10, 10), i)) for i in range(count)}, 1)
    test = load_image_dataset(str(tmp_path), split="test")
    assert isinstance(test, IterableDataset) and [r["id"] for r in test] == [0, 1]
    with pytest.raises(ValueError, match=r"no split 'validation'; available: \['train', 'test'\]"):
        load_image_dataset(str(tmp_path), split="validation")
    digits = load_image_dataset("builtin:digits", split="test")
    assert isinstance(digits, Dataset) and digits.num_rows == 360
