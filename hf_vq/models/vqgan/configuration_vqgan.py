"""Configuration of the VQ-GAN autoencoder (taming-transformers' architecture, diffusers' `VQModel` layout)."""

from __future__ import annotations

import inspect

from ...conversion.taming import taming_config_kwargs
from ...utils.configuration_utils import ConvAutoencoderConfig, QuantizerConfigMixin, check_choice
from ...utils.errors import UsageError


class VQGANConfig(ConvAutoencoderConfig, QuantizerConfigMixin):
    r"""
    The VQ-GAN autoencoder of Esser et al. 2021: the taming / LDM backbone (see `ConvAutoencoderConfig`), a 1x1
    `quant_conv` to `vq_embed_dim` channels, a quantizer (see `QuantizerConfigMixin`), a 1x1 `post_quant_conv` and
    the decoder. The defaults are taming's f16 ImageNet / FacesHQ model: 5 levels [128, 128, 256, 256, 512] (f = 16),
    2 residual blocks per level, attention at the lowest-resolution level (16x16), 256 latent channels, 1024 codes of
    dimension 256. Unset block types put attention at the lowest-resolution level, as taming does.
    The discriminator and the perceptual loss are not part of the model; see `hf_vq.losses`.

    Args:
        norm_type (`str`, defaults to `"group"`): only `"group"`; diffusers' `"spatial"` (MoVQ) is not supported.
        scaling_factor (`float`, defaults to 0.18215): carried to and from diffusers' `VQModel`; unused here.
        lookup_from_codebook (`bool`, defaults to `False`): carried to and from diffusers' `VQModel`, whose
            `decode(indices, force_not_quantize=True, shape=...)` then looks the codes up (as `AmusedPipeline` calls
            it); here `decode_indices` does that.
        force_upcast (`bool`, defaults to `False`): carried to and from diffusers' `VQModel` (pipelines decode in
            float32 with it); unused here.
    """

    model_type = "hf_vq_vqgan"

    block_out_channels: list[int] | tuple[int, ...] = (128, 128, 256, 256, 512)
    latent_channels: int = 256
    num_vq_embeddings: int | None = 1024
    norm_type: str = "group"
    scaling_factor: float = 0.18215
    lookup_from_codebook: bool = False
    force_upcast: bool = False

    @staticmethod
    def _default_block_types(num_levels: int) -> tuple[list[str], list[str]]:
        """taming's layout: attention only at the lowest resolution (16x16 for f16 at 256 px)."""
        down = ["DownEncoderBlock2D"] * (num_levels - 1) + ["AttnDownEncoderBlock2D"]
        up = ["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * (num_levels - 1)
        return down, up

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_choice("norm_type", self.norm_type, ("group",))
        for name in ("lookup_from_codebook", "force_upcast"):
            if not isinstance(getattr(self, name), bool):
                raise UsageError(f"`{name}` must be a bool, got {getattr(self, name)!r}")
        if self.vq_embed_dim is None:
            self.vq_embed_dim = self.latent_channels
        self._check_quantizer()

    @classmethod
    def from_taming(cls, **fields) -> VQGANConfig:
        """The config of a taming `VQModel` from its `ddconfig` entries (`ch`, `ch_mult`, `num_res_blocks`,
        `attn_resolutions`, `resolution`, `z_channels`, `in_channels`, `out_ch`), `n_embed` and `embed_dim` (the
        mapping is `hf_vq.conversion.taming.taming_config_kwargs`); any other keyword overrides a field of ours.

        taming's level i has `ch * ch_mult[i]` channels at resolution `resolution / 2**i`, with attention after each
        residual block when that resolution is in `attn_resolutions`; the decoder mirrors it.
        """
        names = inspect.signature(taming_config_kwargs).parameters
        taming = {name: fields.pop(name) for name in list(fields) if name in names}
        return cls(**taming_config_kwargs(**taming), **fields)
