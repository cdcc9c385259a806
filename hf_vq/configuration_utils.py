"""Config validation helpers and the config fields shared by every convolutional autoencoder.

Every check raises a `ValueError` that names the config field and the allowed values, so a bad config fails at
construction, never deep inside `forward`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedConfig

# diffusers' block names, kept so that configs convert to and from diffusers' `AutoencoderKL` / `VQModel` as they are.
DOWN_BLOCK_TYPES = ("DownEncoderBlock2D", "AttnDownEncoderBlock2D")
UP_BLOCK_TYPES = ("UpDecoderBlock2D", "AttnUpDecoderBlock2D")
# diffusers' `get_activation` names.
ACTIVATIONS = ("silu", "swish", "mish", "gelu", "relu")


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> None:
    """Raise a `ValueError` unless `value` is an int in `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"`{name}` must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}")


def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
) -> None:
    """Raise a `ValueError` unless `value` is a finite real number in the given range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise ValueError(f"`{name}` must be {'>' if exclusive_minimum else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if exclusive_maximum else value > maximum):
        raise ValueError(f"`{name}` must be {'<' if exclusive_maximum else '<='} {maximum}, got {value}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise a `ValueError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")


def check_int_list(name: str, value: Any, minimum: int = 1) -> None:
    """Raise a `ValueError` unless `value` is a non-empty list or tuple of ints >= `minimum`."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError(f"`{name}` must be a non-empty list of integers, got {value!r}")
    for i, item in enumerate(value):
        check_int(f"{name}[{i}]", item, minimum=minimum)


class ConvAutoencoderConfig(PreTrainedConfig):
    r"""
    Fields of the taming / LDM convolutional backbone shared by the AE, VAE and VQ-GAN configs. The names are those
    of diffusers' `AutoencoderKL` and `VQModel`.

    Args:
        in_channels (`int`, defaults to 3): channels of the input images.
        out_channels (`int`, defaults to 3): channels of the reconstructions.
        down_block_types (`list[str]`, *optional*): one per resolution level, `"DownEncoderBlock2D"` or
            `"AttnDownEncoderBlock2D"` (with self-attention); defaults to plain blocks.
        up_block_types (`list[str]`, *optional*): the decoder's, `"UpDecoderBlock2D"` or `"AttnUpDecoderBlock2D"`,
            from the lowest resolution up; defaults to plain blocks.
        block_out_channels (`list[int]`): channels of each resolution level. The encoder downsamples by
            `2 ** (len(block_out_channels) - 1)`.
        layers_per_block (`int`): residual blocks per level in the encoder (the decoder has one more, as in taming).
        act_fn (`str`, defaults to `"silu"`): activation of the residual blocks.
        latent_channels (`int`): channels of the latent grid.
        norm_num_groups (`int`, defaults to 32): GroupNorm groups; must divide every entry of `block_out_channels`.
        sample_size (`int`): the training resolution. Inputs of any size divisible by the downsampling factor are
            accepted; the latent size reported by `latent_size` is the one at `sample_size`.
        mid_block_add_attention (`bool`, defaults to `True`): self-attention in the middle block.
    """

    in_channels: int = 3
    out_channels: int = 3
    down_block_types: list[str] | tuple[str, ...] | None = None
    up_block_types: list[str] | tuple[str, ...] | None = None
    block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 256
    mid_block_add_attention: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int_list("block_out_channels", self.block_out_channels)
        # JSON gives lists; keep one type so that configs compare equal after a save/load round trip.
        self.block_out_channels = list(self.block_out_channels)
        num_levels = len(self.block_out_channels)
        for name, default in (("down_block_types", DOWN_BLOCK_TYPES[0]), ("up_block_types", UP_BLOCK_TYPES[0])):
            value = getattr(self, name)
            if value is None:
                value = [default] * num_levels
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"`{name}` must be a list of block names, got {value!r}")
            setattr(self, name, list(value))
        self._check_backbone()

    def _check_backbone(self) -> None:
        check_int("in_channels", self.in_channels, minimum=1)
        check_int("out_channels", self.out_channels, minimum=1)
        check_int("latent_channels", self.latent_channels, minimum=1)
        check_int("layers_per_block", self.layers_per_block, minimum=1)
        check_int("norm_num_groups", self.norm_num_groups, minimum=1)
        check_int("sample_size", self.sample_size, minimum=1)
        check_choice("act_fn", self.act_fn, ACTIVATIONS)
        if not isinstance(self.mid_block_add_attention, bool):
            raise ValueError(f"`mid_block_add_attention` must be a bool, got {self.mid_block_add_attention!r}")
        for i, channels in enumerate(self.block_out_channels):
            if channels % self.norm_num_groups != 0:
                raise ValueError(
                    f"`block_out_channels[{i}]` ({channels}) must be divisible by `norm_num_groups` "
                    f"({self.norm_num_groups}): GroupNorm splits the channels into equal groups"
                )
        for name, types, allowed in (
            ("down_block_types", self.down_block_types, DOWN_BLOCK_TYPES),
            ("up_block_types", self.up_block_types, UP_BLOCK_TYPES),
        ):
            if len(types) != len(self.block_out_channels):
                raise ValueError(
                    f"`{name}` must have one entry per resolution level (len(block_out_channels) = "
                    f"{len(self.block_out_channels)}), got {len(types)}"
                )
            for i, block_type in enumerate(types):
                check_choice(f"{name}[{i}]", block_type, allowed)
        factor = self.downsample_factor
        if self.sample_size % factor != 0:
            raise ValueError(
                f"`sample_size` ({self.sample_size}) must be divisible by the downsampling factor {factor} "
                f"(2 ** (len(block_out_channels) - 1) with {len(self.block_out_channels)} levels)"
            )

    @property
    def downsample_factor(self) -> int:
        """How many pixels one latent position covers along each side."""
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the latent grid for `sample_size` inputs."""
        return self.sample_size // self.downsample_factor
