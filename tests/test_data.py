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
    images_to_tensor,
    is_builtin,
    load_builtin,
    load_eval_images,
    photo_eval_crops,
    stream_defaults,
)
from hf_vq.utils.image_utils import convert_image_mode


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


def test_images_to_tensor_resizes_converts_and_scales(digits):
    images = digits["test"]["image"][:6]
    gray = images_to_tensor(images, resolution=16, num_channels=1)
    assert gray.shape == (6, 1, 16, 16) and gray.dtype == torch.float32
    assert gray.min() >= -1 and gray.max() <= 1 and gray.min() == -1
    rgb = images_to_tensor(images, resolution=16, num_channels=3)
    assert rgb.shape == (6, 3, 16, 16)
    torch.testing.assert_close(rgb[:, 0], rgb[:, 2])  # grayscale copied to every channel
    flipped = images_to_tensor(images, 16, 1, flip=torch.tensor([True] * 6))
    torch.testing.assert_close(flipped, gray.flip(-1))


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


def test_photo_eval_crops_are_fixed_windows_of_the_held_out_photos():
    crops = photo_eval_crops(resolution=16, crops_per_photo=3, crop_size=16)  # no resizing: exact windows
    assert crops.shape == (9, 3, 16, 16) and crops.dtype == torch.float32
    torch.testing.assert_close(crops, photo_eval_crops(16, 3, crop_size=16), rtol=0, atol=0)
    assert len({c.numpy().tobytes() for c in crops}) == 9
    import skimage.data

    chelsea = skimage.data.chelsea()  # PHOTOS_TEST[0]
    windows = np.lib.stride_tricks.sliding_window_view(chelsea, (16, 16, 3))[:, :, 0]  # (285, 436, 16, 16, 3)
    for crop in crops[:3]:
        pixels = np.round((crop.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)  # (16, 16, 3)
        assert (windows == pixels).all(axis=(2, 3, 4)).any()
    resized = photo_eval_crops(resolution=8, crops_per_photo=2)  # 16-px crops resized to 8
    assert resized.shape == (6, 3, 8, 8) and resized.min() >= -1 and resized.max() <= 1


def test_photo_eval_crops_of_the_training_photos():
    import skimage.data

    crops = photo_eval_crops(resolution=8, crops_per_photo=2, split="train")
    assert crops.shape == (2 * len(PHOTOS_TRAIN), 3, 8, 8)
    astronaut = skimage.data.astronaut()  # PHOTOS_TRAIN[0]: its crops come first
    windows = np.lib.stride_tricks.sliding_window_view(astronaut, (8, 8, 3))[:, :, 0]
    exact = photo_eval_crops(resolution=8, crops_per_photo=2, crop_size=8, split="train")
    for crop in exact[:2]:
        pixels = np.round((crop.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        assert (windows == pixels).all(axis=(2, 3, 4)).any()
    with pytest.raises(ValueError, match="no split 'validation'"):
        photo_eval_crops(8, 1, split="validation")
    # the loader the trainer and scripts use takes the split too: 2 crops per training photo, then cut to the limit
    loaded = load_eval_images("builtin:photos", "train", 8, limit=len(PHOTOS_TRAIN) + 1)
    assert torch.equal(loaded, crops[: len(PHOTOS_TRAIN) + 1])
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_eval_images("builtin:photos", "validation", 8)


def test_photo_streams_yield_random_crops_not_the_whole_photo(photos):
    options = stream_defaults("builtin:photos")
    assert options["random_crop"] and options["repeat"] and stream_defaults("org/dataset") == {}
    stream = ImageStream(photos["train"], 16, **options)
    batches = iter(image_dataloader(stream, 8))
    crops = torch.cat([next(batches)["pixel_values"] for _ in range(6)])  # 48 crops: epochs 0-5 of 8 photographs
    assert crops.shape == (48, 3, 16, 16) and stream.epoch == 5 and stream.state_dict()["offset"] == 8
    assert len({c.numpy().tobytes() for c in crops}) == 48
    whole = images_to_tensor(photos["train"]["image"], 16)  # the downscaled photographs
    assert min((whole - crop).abs().max() for crop in crops[:8]) > 0.1
    uncached = ImageStream(photos["train"], 16, random_crop=True, repeat=True)
    torch.testing.assert_close(next(iter(image_dataloader(uncached, 8)))["pixel_values"], crops[:8], rtol=0, atol=0)


def test_convert_image_mode_handles_transparency_depth_and_color_spaces():
    transparent = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    transparent.putpixel((1, 0), (0, 0, 0, 0))
    assert np.asarray(convert_image_mode(transparent, 3)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    half = Image.new("LA", (1, 1), (0, 128))
    assert np.asarray(convert_image_mode(half, 1)).tolist() == [[127]]  # black at 50% over white
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255, 10, 20, 30])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 1
    assert np.asarray(convert_image_mode(palette, 3)).tolist() == [[[0, 0, 255], [255, 255, 255]]]
    deep = Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16))
    assert deep.mode == "I;16" and np.asarray(convert_image_mode(deep, 1)).tolist() == [[0, 1, 128, 255]]
    for mode in ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "RGBA", "LA", "PA"):
        for channels, target in ((1, "L"), (3, "RGB")):
            assert convert_image_mode(Image.new(mode, (3, 2)), channels).mode == target, mode
    rgb = Image.new("RGB", (3, 2))
    assert convert_image_mode(rgb, 3) is rgb  # nothing to do: no copy
    with pytest.raises(ValueError, match="num_channels"):
        convert_image_mode(rgb, 4)
