"""Datasets as torch-ready images: the builtin datasets that need no network.

Builtin sources are named `builtin:<name>`: `builtin:digits` is scikit-learn's bundled handwritten digits
(1,797 8x8 grayscale images, labels 0-9) with a fixed, stratified train/test split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage

from .image_utils import preprocess_image

BUILTIN_PREFIX = "builtin:"
DIGITS_TEST_SIZE = 360  # 20% of the 1,797 digits, stratified by label
SPLIT_SEED = 0


def _load_digits() -> DatasetDict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are counts of 0..16 set pixels in 4x4 blocks of the original 32x32 bitmaps: map to 0..255.
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})

    def split(indices: np.ndarray) -> Dataset:
        indices = np.sort(indices)
        images = [PILImage.fromarray(pixels[i], mode="L") for i in indices]
        return Dataset.from_dict({"image": images, "label": labels[indices].tolist()}, features=features)

    return DatasetDict(train=split(train_idx), test=split(test_idx))


BUILTIN_DATASETS: dict[str, Callable[[], DatasetDict]] = {"digits": _load_digits}


def is_builtin(source: str) -> bool:
    return source.startswith(BUILTIN_PREFIX)


def load_builtin(name: str, split: str | None = None) -> Dataset | DatasetDict:
    """A builtin dataset by name (`"digits"` or `"builtin:digits"`), as a `DatasetDict` or one of its splits."""
    key = name.removeprefix(BUILTIN_PREFIX)
    if key not in BUILTIN_DATASETS:
        available = [BUILTIN_PREFIX + k for k in BUILTIN_DATASETS]
        raise ValueError(f"unknown builtin dataset {name!r}; available: {available}")
    dataset = BUILTIN_DATASETS[key]()
    if split is None:
        return dataset
    if split not in dataset:
        raise ValueError(f"builtin dataset {name!r} has no split {split!r}; available: {list(dataset)}")
    return dataset[split]


def images_to_tensor(
    images: list[PILImage.Image], resolution: int, num_channels: int = 3, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """PIL images -> (B, num_channels, resolution, resolution) float32 in [-1, 1]; `flip` is a (B,) bool mask."""
    flips = [False] * len(images) if flip is None else flip.tolist()
    if len(flips) != len(images):
        raise ValueError(f"`flip` has {len(flips)} entries for {len(images)} images")
    pairs = zip(images, flips, strict=True)
    return torch.stack([preprocess_image(image, resolution, num_channels, f) for image, f in pairs])
