import numpy as np
import pytest
import torch
from datasets import ClassLabel, DatasetDict
from PIL import Image

from hf_vq.data import images_to_tensor, is_builtin, load_builtin


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
