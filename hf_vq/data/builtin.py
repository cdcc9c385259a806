"""The builtin datasets: small datasets bundled with installed packages, so that nothing needs the network.

- `builtin:digits`: scikit-learn's bundled handwritten digits (1,797 8x8 grayscale images, labels 0-9) with a fixed,
  stratified train/test split.
- `builtin:photos`: the color photographs bundled with scikit-image and scikit-learn at full size, whole photographs
  held out for `test`. Train on random crops of them (`ImageStream(..., random_crop=True, repeat=True)`, see
  `stream_defaults`); evaluate on `evaluation.photo_eval_crops`.
- `builtin:folk-melodies`: the monophonic folk tunes of music21's bundled corpus (Essen, O'Neill's 1850, Ryan's
  Mammoth) as MusicVAE melody tokens, split by tune (`hf_vq.data.melodies`). Built once (minutes) and saved under
  the datasets cache; train on `SequenceStream` windows, evaluate on `melodies.melody_windows`.

Adding a builtin is one loader function returning a `DatasetDict` of its splits plus one entry in
`BUILTIN_DATASETS`; `load_builtin` and every source argument (`load_image_dataset("builtin:<name>")`) then know it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from ..utils.errors import UsageError
from ..utils.paths import BUILTIN_PREFIX
from .melodies import load_folk_melodies

DIGITS_TEST_SIZE = 360  # 20% of the 1,797 digits, stratified by label
SPLIT_SEED = 0

# scikit-image / scikit-learn photographs that ship inside the packages (no download). Whole photographs are held
# out, so that evaluation crops never overlap a training crop.
PHOTOS_TRAIN = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "china",
)
PHOTOS_TEST = ("chelsea", "coffee", "flower")
PHOTOS_SPLITS = {"train": PHOTOS_TRAIN, "test": PHOTOS_TEST}


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


def photo_names(split: str) -> tuple[str, ...]:
    """The names of the `builtin:photos` photographs of a split (`"train"` or `"test"`)."""
    if split not in PHOTOS_SPLITS:
        raise UsageError(f"builtin:photos has no split {split!r}; available: {list(PHOTOS_SPLITS)}")
    return PHOTOS_SPLITS[split]


def photo_array(name: str) -> np.ndarray:
    """One bundled photograph as a (H, W, 3) uint8 array."""
    import skimage.data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name.startswith("motorcycle_"):
        left, right, _disparity = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


def _load_photos() -> DatasetDict:
    features = Features({"image": Image(), "name": Value("string")})

    def split(names: tuple[str, ...]) -> Dataset:
        images = []
        for name in names:
            buffer = io.BytesIO()
            # lossless; compress_level 1 encodes the ~10 MP in well under a second (the default level takes ~3 s)
            PILImage.fromarray(photo_array(name)).save(buffer, format="PNG", compress_level=1)
            images.append({"bytes": buffer.getvalue(), "path": None})
        return Dataset.from_dict({"image": images, "name": list(names)}, features=features)

    return DatasetDict({name: split(names) for name, names in PHOTOS_SPLITS.items()})


# name (without the prefix) -> a loader building every split, in memory
BUILTIN_DATASETS: dict[str, Callable[[], DatasetDict]] = {
    "digits": _load_digits,
    "photos": _load_photos,
    "folk-melodies": load_folk_melodies,  # cached on disk after the first build
}


def is_builtin(source: str) -> bool:
    """Whether a source argument names a builtin dataset (`builtin:<name>`)."""
    return source.startswith(BUILTIN_PREFIX)


def load_builtin(name: str, split: str | None = None) -> Dataset | DatasetDict:
    """A builtin dataset by name (`"digits"` or `"builtin:digits"`), as a `DatasetDict` or one of its splits."""
    key = name.removeprefix(BUILTIN_PREFIX)
    if key not in BUILTIN_DATASETS:
        available = [BUILTIN_PREFIX + k for k in BUILTIN_DATASETS]
        raise UsageError(f"unknown builtin dataset {name!r}; available: {available}")
    dataset = BUILTIN_DATASETS[key]()
    if split is None:
        return dataset
    if split not in dataset:
        raise UsageError(f"builtin dataset {name!r} has no split {split!r}; available: {list(dataset)}")
    return dataset[split]


def stream_defaults(source: str) -> dict[str, Any]:
    """`ImageStream` keyword arguments that a source needs beyond the generic ones (`{}` for most sources).

    `builtin:photos` is a handful of large photographs: train on random crops (twice the resolution, resized),
    repeating forever, with the decoded photographs cached instead of decoding a PNG for every crop.
    """
    if source == BUILTIN_PREFIX + "photos":
        return {"random_crop": True, "repeat": True, "decode_cache_size": len(PHOTOS_TRAIN)}
    return {}
