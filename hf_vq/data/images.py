"""One image record -> model input: decoding (bytes, paths, PIL images), mode conversion, resizing, augmentation.

`ImageStream` reads its image column undecoded (`undecoded_image_column`), so that bad bytes cost one record and not
the iterator, and turns each value into pixels here: `ImageDecoder` (decoding, conversion to L or RGB, an optional
cache), then `augmented_pixels` (random crop, resizing, random flip). The conversion and resizing themselves are
`hf_vq.utils.image_utils`' (`convert_image_mode`, `preprocess_image`), which the rest of the library shares.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from datasets import Image, IterableDataset, Value
from PIL import Image as PILImage

from ..utils.errors import UsageError
from ..utils.image_utils import convert_image_mode, preprocess_image

_IMAGE_DECODER = Image()  # datasets' decoder: bytes or a local/remote path -> PIL, EXIF orientation applied


def undecoded_image_column(dataset: IterableDataset, image_column: str) -> IterableDataset:
    """The dataset with decoding off: `image_column` yields `{"bytes", "path"}` dicts, decoded by `ImageDecoder`.

    Raw bytes, paths, or `{bytes, path}` structs (parquet written without datasets' metadata) are images too; a
    column of anything else raises a `ValueError`. `dataset.features` must be known and hold `image_column`.
    """
    feature = dataset.features[image_column]
    dataset = dataset.decode(False)
    if isinstance(feature, Image):
        return dataset
    is_raw = isinstance(feature, Value) and feature.dtype in ("binary", "large_binary", "string", "large_string")
    if not (is_raw or (isinstance(feature, dict) and set(feature) == {"bytes", "path"})):
        raise UsageError(f"column {image_column!r} holds {feature}, which is not an image (bytes, paths or Image)")
    return dataset.cast_column(image_column, Image(decode=False))


def _image_dict(value: Any) -> dict[str, Any]:
    """Image bytes, a path, or a `{"bytes", "path"}` dict -> the dict datasets' decoder takes."""
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value), "path": None}
    if isinstance(value, str):
        return {"bytes": None, "path": value}
    if not isinstance(value, dict):
        raise TypeError(f"expected image bytes, a path or a PIL image, got {type(value).__name__}")
    return value


def decode_image(value: Any, num_channels: int = 3) -> PILImage.Image:
    """An image value (dict of bytes/path, bytes, path, PIL image) -> PIL image in mode L (1 channel) or RGB (3).

    Undecodable values raise what PIL raises (OSError, ValueError, SyntaxError, DecompressionBombError, ...).
    """
    if isinstance(value, PILImage.Image):
        return convert_image_mode(value, num_channels)
    return convert_image_mode(_IMAGE_DECODER.decode_example(_image_dict(value)), num_channels)


class ImageDecoder:
    """`decode_image` that keeps up to `cache_size` decoded images (least recently used out first).

    The cache is for repeating over a few large images, such as `builtin:photos`; images are keyed by a hash of their
    bytes (or by their path), PIL images are converted and never cached. `cache_size=0` decodes every time.
    """

    def __init__(self, num_channels: int = 3, cache_size: int = 0):
        if cache_size < 0:
            raise UsageError(f"`cache_size` must be >= 0, got {cache_size}")
        self.num_channels = num_channels
        self.cache_size = cache_size
        self._decoded: OrderedDict[Any, PILImage.Image] = OrderedDict()

    def __call__(self, value: Any) -> PILImage.Image:
        if not self.cache_size or isinstance(value, PILImage.Image):
            return decode_image(value, self.num_channels)
        value = _image_dict(value)
        key = value["path"] if value["bytes"] is None else hashlib.sha256(value["bytes"]).digest()
        if key in self._decoded:
            self._decoded.move_to_end(key)
            return self._decoded[key]
        image = decode_image(value, self.num_channels)
        self._decoded[key] = image
        if len(self._decoded) > self.cache_size:
            self._decoded.popitem(last=False)
        return image


def random_square_crop(image: PILImage.Image, size: int, rng: np.random.Generator) -> PILImage.Image:
    """A square of side `size` (the shorter side when smaller) at a random position: left, then top, from `rng`."""
    side = min(size, image.width, image.height)
    left = int(rng.integers(0, image.width - side + 1))
    top = int(rng.integers(0, image.height - side + 1))
    return image.crop((left, top, left + side, top + side))


def augmented_pixels(
    image: PILImage.Image,
    resolution: int,
    num_channels: int = 3,
    rng: np.random.Generator | None = None,
    crop_size: int | None = None,
    random_flip: bool = False,
) -> torch.Tensor:
    """A decoded image -> (num_channels, resolution, resolution) float32 in [-1, 1], augmented with `rng`.

    With `crop_size`, a `random_square_crop` of that size first; then the shorter side resized to `resolution` and
    center-cropped (`preprocess_image`); with `random_flip`, mirrored left to right with probability 1/2. `rng` is
    drawn in that order (crop, flip), so that a record's generator gives the same augmentation again.
    """
    if (crop_size is not None or random_flip) and rng is None:
        raise UsageError("a random crop or flip needs `rng`")
    if crop_size is not None:
        image = random_square_crop(image, crop_size, rng)
    flip = random_flip and bool(rng.random() < 0.5)
    return preprocess_image(image, resolution, num_channels, flip)
