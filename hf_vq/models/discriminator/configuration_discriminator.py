"""Configuration of the PatchGAN discriminator (taming's `NLayerDiscriminator`)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ...utils.configuration_utils import CheckedKeysMixin, check_choice, check_int
from ...utils.errors import UsageError

NORM_TYPES = ("batch", "group", "instance", "none")


class PatchDiscriminatorConfig(CheckedKeysMixin, PreTrainedConfig):
    r"""
    A PatchGAN discriminator (Isola et al. 2017) as in taming-transformers: 4x4 convolutions, each of the first
    `num_layers` with stride 2, then two with stride 1, the last one giving one logit per image patch. The defaults
    are taming's VQ-GAN discriminator (3 layers, 64 filters, BatchNorm; a 70x70 receptive field).

    Args:
        in_channels (`int`, defaults to 3): channels of the images it judges.
        num_filters (`int`, defaults to 64): filters of the first conv (taming's `ndf`); layer `n` has
            `num_filters * min(2 ** n, max_filter_multiplier)`.
        num_layers (`int`, defaults to 3): stride-2 convs (taming's `n_layers`); each halves the patch grid.
        norm_type (`str`, defaults to `"batch"`): normalization after every conv but the first and the last:
            `"batch"` (taming's), `"group"`, `"instance"` (both with a learned scale and shift) or `"none"`.
            The convs followed by a norm have no bias (the norm's shift replaces it).
        norm_num_groups (`int`, defaults to 32): groups when `norm_type="group"`; must divide the channels of every
            normalized layer.
        max_filter_multiplier (`int`, defaults to 8): cap on the channel multiplier (taming's 8: 512 channels with
            64 filters).
    """

    model_type = "hf_vq_patch_discriminator"

    in_channels: int = 3
    num_filters: int = 64
    num_layers: int = 3
    norm_type: str = "batch"
    norm_num_groups: int = 32
    max_filter_multiplier: int = 8

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("in_channels", self.in_channels, minimum=1)
        check_int("num_filters", self.num_filters, minimum=1)
        check_int("num_layers", self.num_layers, minimum=1)
        check_int("max_filter_multiplier", self.max_filter_multiplier, minimum=1)
        check_choice("norm_type", self.norm_type, NORM_TYPES)
        check_int("norm_num_groups", self.norm_num_groups, minimum=1)
        if self.norm_type == "group":
            for channels in self.layer_channels[1:]:
                if channels % self.norm_num_groups != 0:
                    raise UsageError(
                        f"`norm_num_groups` ({self.norm_num_groups}) must divide the channels of every normalized "
                        f"layer {self.layer_channels[1:]}: GroupNorm splits the channels into equal groups"
                    )

    @property
    def layer_channels(self) -> list[int]:
        """Output channels of the hidden convs, first to last (the final 1-channel conv excluded)."""
        return [self.num_filters * min(2**n, self.max_filter_multiplier) for n in range(self.num_layers + 1)]

    @property
    def min_input_size(self) -> int:
        """Smallest image side giving a 1x1 logit map: `num_layers` halvings, then two 4x4 convs taking 1 each."""
        return 3 * 2**self.num_layers
