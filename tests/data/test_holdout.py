"""A local folder with only training images: a fixed part of its files is held out for evaluation and never trained
on (`hf_vq.data.sources.hold_out_split`), or, when the folder is too small, training runs without evaluation."""

import json
import logging
from pathlib import Path

import pytest
import torch

from hf_vq.data import ImageStream, load_eval_images
from hf_vq.data.sources import HOLD_OUT_MIN_FILES, hold_out_split, load_image_dataset
from hf_vq.training import main

from ..training.test_trainer import write_recipe
from .conftest import noise


def image_folder(folder: Path, count: int, size: int = 8, grey_levels: bool = False) -> Path:
    """`count` PNG files in `folder`; with `grey_levels`, image i is the flat grey level i (to recognize it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = noise((size, size), index).convert("L")
        if grey_levels:
            image = image.point(lambda _, level=index: level)
        image.save(folder / f"img_{index:03d}.png")
    return folder


def levels(images: torch.Tensor) -> set[int]:
    """The grey levels of flat images in [-1, 1]."""
    return {round(float(value)) for value in (images.flatten(1).mean(dim=1) + 1) * 127.5}


def test_a_folder_without_an_eval_split_holds_out_a_fixed_part_of_its_files(tmp_path):
    folder = image_folder(tmp_path / "images", 40, grey_levels=True)
    held_out = hold_out_split(str(folder), "train", "test")
    assert held_out is not None and held_out.builder == "imagefolder"
    assert len(held_out.eval_files) == 2 and len(held_out.train_files) == 38  # 5 %
    assert not set(held_out.eval_files) & set(held_out.train_files)
    assert held_out.describe() == "held out from train (2 files)"
    # Always the same files, wherever the folder lies.
    moved = image_folder(tmp_path / "elsewhere" / "images", 40, grey_levels=True)
    again = hold_out_split(str(moved), "train", "test")
    assert [Path(path).name for path in again.eval_files] == [Path(path).name for path in held_out.eval_files]

    evaluated = load_eval_images(str(folder), held_out, resolution=8, num_channels=1)
    expected = {int(Path(path).stem.split("_")[1]) for path in held_out.eval_files}
    assert evaluated.shape == (2, 1, 8, 8) and levels(evaluated) == expected
    stream = ImageStream(held_out.load("train"), 8, num_channels=1, shuffle_buffer=1)
    trained = torch.stack([example["pixel_values"] for example in stream])
    assert len(trained) == 38 and not levels(trained) & expected  # never trained on


def test_a_source_with_its_eval_split_or_other_splits_holds_nothing_out(tmp_path):
    image_folder(tmp_path / "split" / "train", 12)
    image_folder(tmp_path / "split" / "test", 3)
    assert hold_out_split(str(tmp_path / "split"), "train", "test") is None
    assert hold_out_split(str(tmp_path / "split"), "train", None) is None
    image_folder(tmp_path / "other" / "train", 12)
    image_folder(tmp_path / "other" / "validation", 3)
    assert hold_out_split(str(tmp_path / "other"), "train", "test") is None  # the user chooses the split
    with pytest.raises(ValueError, match=r"no split 'test'; available: \['train', 'validation'\]"):
        load_image_dataset(str(tmp_path / "other"), "test")
    assert hold_out_split("builtin:digits", "train", "test") is None
    small = hold_out_split(str(image_folder(tmp_path / "small", HOLD_OUT_MIN_FILES - 1)), "train", "test")
    assert small.eval_files == () and len(small.train_files) == HOLD_OUT_MIN_FILES - 1
    assert "too few files to hold out (9)" in small.record("test")["eval_skipped"]


def test_training_on_a_folder_of_training_images_with_default_flags(tmp_path, caplog):
    folder = image_folder(tmp_path / "my_images", 40)
    recipe = write_recipe(tmp_path / "r.yaml", "autoencoder", dataset=str(folder), max_train_steps=2,
                          checkpointing_steps=2, validation_steps=2)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="hf_vq"):
        metrics = main("autoencoder", ["--config", str(recipe), "--output_dir", str(tmp_path / "run")])
    assert "evaluating on held out from train (2 files), which are never trained on" in caplog.text
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["eval_split"] == "held out from train (2 files)" and saved["eval_held_out_files"] == 2
    assert saved["eval_num_images"] == 2 and 0 < metrics["eval_psnr"] < 100

    small = image_folder(tmp_path / "few", 9)
    recipe = write_recipe(tmp_path / "s.yaml", "autoencoder", dataset=str(small), max_train_steps=1,
                          checkpointing_steps=1, validation_steps=1, train_batch_size=4)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="hf_vq"):
        metrics = main("autoencoder", ["--config", str(recipe), "--output_dir", str(tmp_path / "small_run")])
    assert "training without evaluation" in caplog.text
    assert "eval_psnr" not in metrics and "too few files to hold out (9)" in metrics["eval_skipped"]
