"""The input checks of the models and blocks: a wrong input fails with a sentence that names the argument, the
expected shape and the config field behind it, instead of a shape error deep inside a conv.

Images and latents are checked by the same function (`check_feature_maps`): both are float (B, C, H, W) maps and
differ only by the argument's name, the config field that sets C and the constraints on H and W
(`check_pixel_values` reads those of an encoder's images from its config). Code grids, the integer (B, h, w) tensors
of the VQ models and quantizers, have `check_indices`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..utils.errors import UsageError


def _shape_or_type(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def check_feature_maps(
    value: Any,
    name: str,
    channels: int,
    channels_field: str,
    *,
    downsample_factor: int = 1,
    min_size: int = 1,
) -> None:
    """Raise a `ValueError` unless `value` is a float tensor (batch, channels, height, width) with height and width
    divisible by `downsample_factor` and at least `min_size`.

    Args:
        value: the argument to check, e.g. `pixel_values` or `latents`.
        name: its name in the error messages.
        channels: the channels the model was configured with.
        channels_field: the config field that set `channels` (e.g. `"in_channels"`), named in the error messages.
        downsample_factor: the model's downsampling factor: the encoder could not map other sizes to a code grid.
        min_size: the smallest height and width the model takes.
    """
    if not isinstance(value, torch.Tensor) or value.ndim != 4:
        raise UsageError(
            f"`{name}` must be a tensor of shape (batch, {channels}, height, width), got {_shape_or_type(value)}"
        )
    if not value.is_floating_point():
        raise UsageError(f"`{name}` must be a float tensor, got dtype {value.dtype}")
    _, got_channels, height, width = value.shape
    if got_channels != channels:
        raise UsageError(
            f"`{name}` must have {channels} channels, shape (batch, {channels}, height, width), since the model was "
            f"configured with {channels_field}={channels}; got {got_channels} channels, shape {tuple(value.shape)}"
        )
    if height % downsample_factor or width % downsample_factor:
        raise UsageError(
            f"`{name}` has spatial size {height}x{width}, which is not divisible by the model's downsampling factor "
            f"{downsample_factor}"
        )
    if height < min_size or width < min_size:
        raise UsageError(f"`{name}` is {height}x{width}; the model needs at least {min_size}x{min_size}")


def check_pixel_values(pixel_values: Any, config: Any) -> None:
    """`check_feature_maps` for the images an encoder takes: `config.in_channels` channels, sides divisible by
    `config.downsample_factor`."""
    check_feature_maps(
        pixel_values, "pixel_values", config.in_channels, "in_channels", downsample_factor=config.downsample_factor
    )


def check_indices(indices: Any, num_embeddings: int) -> None:
    """Raise a `ValueError` unless `indices` is an integer (B, h, w) grid of codes in [0, num_embeddings)."""
    if not isinstance(indices, torch.Tensor) or indices.ndim != 3:
        raise UsageError(
            f"indices must be a (batch, height, width) grid of code indices, got shape {_shape_or_type(indices)}"
        )
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise UsageError(f"indices must be an integer tensor, got dtype {indices.dtype}")
    if indices.numel() and (indices.min() < 0 or indices.max() >= num_embeddings):
        raise UsageError(
            f"indices must lie in [0, {num_embeddings}) (the codebook size), got values in "
            f"[{indices.min().item()}, {indices.max().item()}]"
        )


__all__ = ["check_feature_maps", "check_indices", "check_pixel_values"]
