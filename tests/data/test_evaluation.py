"""Evaluation images: fixed crops of the builtin photographs, and records of a split, always the same ones."""

import numpy as np
import pytest
import torch

from hf_vq.data import PHOTOS_TRAIN, load_builtin, load_eval_examples, load_eval_images, photo_eval_crops
from hf_vq.utils.image_utils import preprocess_image


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


def test_eval_examples_are_always_the_same_records_with_their_labels():
    images, labels = load_eval_examples("builtin:digits", "test", 8, num_channels=1, limit=5, label_column="label")
    assert images.shape == (5, 1, 8, 8) and labels.shape == (5,)
    digits = load_builtin("digits", split="test")
    expected = torch.stack([preprocess_image(image, 8, 1) for image in digits["image"]])  # (360, 1, 8, 8)
    for image, label in zip(images, labels, strict=True):
        (matches,) = torch.where((expected == image).flatten(1).all(dim=1))
        assert label in [digits[int(i)]["label"] for i in matches]  # each image comes with its own label
    again = load_eval_examples("builtin:digits", "test", 8, num_channels=1, limit=5, label_column="label")
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)
    torch.testing.assert_close(load_eval_images("builtin:digits", "test", 8, 1, limit=5), images, rtol=0, atol=0)
