"""Configuration of the VQ-VAE of the paper (van den Oord et al. 2017)."""

from __future__ import annotations

from ...utils.configuration_utils import QuantizerConfigMixin, check_int
from ...utils.errors import UsageError


class VQVAEConfig(QuantizerConfigMixin):
    r"""
    The VQ-VAE of "Neural Discrete Representation Learning" (van den Oord et al. 2017), CIFAR-10 setup by default:
    two stride-2 4x4 convolutions, two residual 3x3 blocks (ReLU, 3x3 conv, ReLU, 1x1 conv), 256 hidden channels,
    a 1x1 conv to `vq_embed_dim` = 64 and K = 512 codes; the decoder mirrors it with transposed convolutions.
    32x32 images give 8x8 code grids. See `QuantizerConfigMixin` for the quantizer fields.

    Args:
        in_channels (`int`, defaults to 3), out_channels (`int`, defaults to 3): image channels.
        hidden_channels (`int`, defaults to 256): channels of the convolutions (the first downsamplings use half).
        residual_hidden_channels (`int`, defaults to 256): channels inside each residual block.
        num_residual_layers (`int`, defaults to 2): residual blocks in the encoder and in the decoder.
        num_downsamples (`int`, defaults to 2): stride-2 convolutions; the downsampling factor is 2 ** this.
        sample_size (`int`, defaults to 32): training resolution, divisible by the downsampling factor.
    """

    model_type = "hf_vq_vqvae"

    in_channels: int = 3
    out_channels: int = 3
    hidden_channels: int = 256
    residual_hidden_channels: int = 256
    num_residual_layers: int = 2
    num_downsamples: int = 2
    sample_size: int = 32
    num_vq_embeddings: int | None = 512
    vq_embed_dim: int | None = 64

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("in_channels", self.in_channels, minimum=1)
        check_int("out_channels", self.out_channels, minimum=1)
        check_int("hidden_channels", self.hidden_channels, minimum=2)
        check_int("residual_hidden_channels", self.residual_hidden_channels, minimum=1)
        check_int("num_residual_layers", self.num_residual_layers, minimum=0)
        check_int("num_downsamples", self.num_downsamples, minimum=1)
        check_int("sample_size", self.sample_size, minimum=1)
        if self.num_downsamples > 1 and self.hidden_channels % 2:
            raise UsageError(
                f"`hidden_channels` ({self.hidden_channels}) must be even: the first downsamplings use half of it"
            )
        if self.sample_size % self.downsample_factor:
            raise UsageError(
                f"`sample_size` ({self.sample_size}) must be divisible by the downsampling factor "
                f"{self.downsample_factor} (2 ** num_downsamples)"
            )
        self._check_quantizer()

    @property
    def downsample_factor(self) -> int:
        return 2**self.num_downsamples

    @property
    def latent_size(self) -> int:
        return self.sample_size // self.downsample_factor
