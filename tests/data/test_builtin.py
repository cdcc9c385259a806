"""The builtin datasets: the fixed digits split, the held-out photographs, and how photographs are streamed."""

import numpy as np
import pytest
import torch
from datasets import ClassLabel, DatasetDict
from PIL import Image

from hf_vq.data import (
    PHOTOS_TEST,
    PHOTOS_TRAIN,
    ImageStream,
    image_dataloader,
    is_builtin,
    load_builtin,
    stream_defaults,
)
from hf_vq.utils.image_utils import preprocess_image


@pytest.fixture(scope="module")
def digits() -> DatasetDict:
    return load_builtin("builtin:digits")


def test_digits_has_a_fixed_stratified_split(digits):
    assert set(digits) == {"train", "test"}
    assert digits["train"].num_rows == 1437 and digits["test"].num_rows == 360
    assert isinstance(digits["train"].features["label"], ClassLabel)
    assert digits["train"].features["label"].names == [str(d) for d in range(10)]
    test_counts = np.bincount(digits["test"]["label"], minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # 36 per class, stratified


def test_digits_split_is_deterministic_and_disjoint(digits):
    again = load_builtin("digits", split="test")
    first = np.stack([np.asarray(im) for im in digits["test"]["image"]])
    second = np.stack([np.asarray(im) for im in again["image"]])
    assert np.array_equal(first, second)
    train = {np.asarray(im).tobytes() for im in digits["train"]["image"]}
    # the scikit-learn digits contain a handful of exact duplicates; the split must not be built by leaking rows
    shared = sum(np.asarray(im).tobytes() in train for im in digits["test"]["image"])
    assert shared <= 5


def test_digit_images_are_8x8_grayscale_pil_over_the_full_range(digits):
    image = digits["train"][0]["image"]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (8, 8)
    pixels = np.stack([np.asarray(im) for im in digits["train"]["image"][:200]])
    assert pixels.min() == 0 and pixels.max() == 255


def test_digits_match_scikit_learn():
    from sklearn.datasets import load_digits

    reference = load_digits()
    train = load_builtin("digits", split="train")
    total = np.zeros(10, dtype=int)
    for split in ("train", "test"):
        total += np.bincount(load_builtin("digits", split=split)["label"], minlength=10)
    assert total.tolist() == np.bincount(reference.target, minlength=10).tolist()
    first = np.asarray(train[0]["image"], dtype=np.float64) * 16 / 255
    assert np.abs(reference.images - first).reshape(len(reference.images), -1).max(axis=1).min() < 0.04


def test_unknown_builtin_and_split_raise():
    with pytest.raises(ValueError, match="builtin:digits"):
        load_builtin("builtin:cifar")
    with pytest.raises(ValueError, match="validation"):
        load_builtin("builtin:digits", split="validation")
    assert is_builtin("builtin:digits") and not is_builtin("nielsr/CelebA-faces")


@pytest.fixture(scope="module")
def photos() -> DatasetDict:
    return load_builtin("builtin:photos")


def test_photos_hold_out_whole_photographs(photos):
    assert set(photos) == {"train", "test"} and photos["train"].column_names == ["image", "name"]
    assert photos["train"]["name"] == list(PHOTOS_TRAIN) and photos["test"]["name"] == list(PHOTOS_TEST)
    assert not set(PHOTOS_TRAIN) & set(PHOTOS_TEST)
    train = {np.asarray(im).tobytes() for im in photos["train"]["image"]}
    assert not any(np.asarray(im).tobytes() in train for im in photos["test"]["image"])
    sizes = {row["name"]: row["image"].size for split in photos.values() for row in split}
    assert sizes["astronaut"] == (512, 512) and sizes["coffee"] == (600, 400) and sizes["china"] == (640, 427)
    assert all(row["image"].mode == "RGB" for split in photos.values() for row in split)


def test_photos_are_the_bundled_pixels_losslessly(photos):
    import skimage.data

    (astronaut,) = [row["image"] for row in photos["train"] if row["name"] == "astronaut"]
    assert np.array_equal(np.asarray(astronaut), skimage.data.astronaut())


def test_photo_streams_yield_random_crops_not_the_whole_photo(photos):
    options = stream_defaults("builtin:photos")
    assert options["random_crop"] and options["repeat"] and stream_defaults("org/dataset") == {}
    stream = ImageStream(photos["train"], 16, **options)
    batches = iter(image_dataloader(stream, 8))
    crops = torch.cat([next(batches)["pixel_values"] for _ in range(6)])  # 48 crops: epochs 0-5 of 8 photographs
    assert crops.shape == (48, 3, 16, 16) and stream.epoch == 5 and stream.state_dict()["offset"] == 8
    assert len({c.numpy().tobytes() for c in crops}) == 48
    whole = torch.stack([preprocess_image(image, 16) for image in photos["train"]["image"]])  # downscaled photographs
    assert min((whole - crop).abs().max() for crop in crops[:8]) > 0.1
    uncached = ImageStream(photos["train"], 16, random_crop=True, repeat=True)
    torch.testing.assert_close(next(iter(image_dataloader(uncached, 8)))["pixel_values"], crops[:8], rtol=0, atol=0)
