"""Held-out evaluation images, always the same ones: the first records a split streams, or fixed crops of the
`builtin:photos` photographs, as tensors for the trainer's evaluation, the scripts and the benchmarks."""

from __future__ import annotations

from itertools import islice

import numpy as np
import torch
from PIL import Image as PILImage

from ..utils.errors import UsageError
from ..utils.image_utils import preprocess_image
from .builtin import BUILTIN_PREFIX, SPLIT_SEED, photo_array, photo_names
from .images import random_square_crop
from .sources import HeldOutSplit, load_image_dataset
from .stream import ImageStream


def photo_eval_crops(
    resolution: int, crops_per_photo: int, crop_size: int | None = None, split: str = "test"
) -> torch.Tensor:
    """Fixed crops of the `builtin:photos` photographs of a split -> (N, 3, resolution, resolution) in [-1, 1].

    `crops_per_photo` squares of `crop_size` (default twice `resolution`, as in training) at seeded random
    positions in each photograph of `split` (`"test"`: the held-out ones; `"train"`: fixed crops of the training
    distribution), resized to `resolution`; N = crops_per_photo * photographs, photograph by photograph. The same
    arguments always give the same tensor.
    """
    if resolution < 1 or crops_per_photo < 1:
        raise UsageError(f"`resolution` and `crops_per_photo` must be >= 1, got {resolution} and {crops_per_photo}")
    crop_size = 2 * resolution if crop_size is None else crop_size
    crops = []
    for index, name in enumerate(photo_names(split)):
        photo = PILImage.fromarray(photo_array(name))
        rng = np.random.default_rng([SPLIT_SEED, index])
        for _ in range(crops_per_photo):
            crops.append(preprocess_image(random_square_crop(photo, crop_size, rng), resolution, 3))
    return torch.stack(crops)  # (N, 3, R, R)


def load_eval_images(
    source: str,
    split: str | HeldOutSplit,
    resolution: int,
    num_channels: int = 3,
    limit: int = 1000,
    image_column: str = "image",
    dataset_config: str | None = None,
) -> torch.Tensor:
    """Up to `limit` held-out images of a source, (N, C, R, R) in [-1, 1], always the same ones: the first records
    of the split as a stream without shuffle buffer yields them (its shards in their seeded order, so not necessarily
    the first rows), or for `builtin:photos` fixed crops of the split's photographs. `split` may be the files held
    out of a folder without an eval split (`hf_vq.data.sources.hold_out_split`): exactly those are read."""
    if source == f"{BUILTIN_PREFIX}photos" and isinstance(split, str):
        crops_per_photo = -(-limit // len(photo_names(split)))
        crops = photo_eval_crops(resolution, crops_per_photo, split=split)[:limit]
        if num_channels == 1:  # PIL's L conversion (ITU-R 601 luma), linear so it holds in [-1, 1] units too
            crops = (crops * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return crops
    return load_eval_examples(source, split, resolution, num_channels, limit, image_column, None, dataset_config)[0]


def load_eval_examples(
    source: str,
    split: str | HeldOutSplit,
    resolution: int,
    num_channels: int = 3,
    limit: int = 1000,
    image_column: str = "image",
    label_column: str | None = None,
    dataset_config: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`load_eval_images` with the labels: images (N, C, R, R) in [-1, 1] and, with `label_column`, labels (N,)."""
    if isinstance(split, HeldOutSplit):
        dataset = split.load("eval")
    else:
        dataset = load_image_dataset(source, split, dataset_config)
    stream = ImageStream(
        dataset,
        resolution,
        num_channels=num_channels,
        image_column=image_column,
        label_column=label_column,
        shuffle_buffer=1,
    )
    examples = list(islice(stream, limit))
    if not examples:
        where = split.describe() if isinstance(split, HeldOutSplit) else f"split {split!r}"
        raise UsageError(f"{where} of {source!r} has no usable images in column {image_column!r}")
    images = torch.stack([example["pixel_values"] for example in examples])
    labels = torch.tensor([example["labels"] for example in examples]) if label_column is not None else None
    return images, labels
