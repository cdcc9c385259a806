"""VQ-GAN autoencoder (taming-transformers' architecture) with the state-dict layout of diffusers' `VQModel`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedModel

from ...modeling_utils import HubMixin
from ...modules.backbone import (
    build_decoder,
    build_encoder,
    check_latents,
    check_pixel_values,
    diffusers_config_kwargs,
    init_conv_weights,
)
from ...modules.quantizers import TRAINING_STATE_BUFFERS, VectorQuantizer, build_quantizer
from ...modules.vq_autoencoder import VQAutoencoderMixin
from .configuration_vqgan import VQGANConfig

if TYPE_CHECKING:
    from diffusers import VQModel

# diffusers' `VQModel` config keys that `VQGANConfig` carries under the same name.
_DIFFUSERS_KEYS = (
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "act_fn", "latent_channels", "sample_size", "num_vq_embeddings", "norm_num_groups", "vq_embed_dim",
    "scaling_factor", "norm_type", "mid_block_add_attention",
)  # fmt: skip
# State-dict keys of the quantizer's training state, which diffusers' and taming's checkpoints do not have.
QUANTIZER_STATE_KEYS = tuple(f"quantize.{name}" for name in TRAINING_STATE_BUFFERS)


class VQGANPreTrainedModel(HubMixin, PreTrainedModel):
    config_class = VQGANConfig
    base_model_prefix = "vqgan"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True

    def _init_weights(self, module):
        init_conv_weights(module)


class VQGANModel(VQAutoencoderMixin, VQGANPreTrainedModel):
    """VQ-GAN autoencoder: encoder, `quant_conv`, quantizer, `post_quant_conv`, decoder.

    `forward(pixel_values)` returns a `VQAutoencoderOutput`; `encode_indices` / `decode_indices` map images to code
    grids (B, H/f, W/f) and back.

    Args:
        config: the model's `VQGANConfig`.
    """

    def __init__(self, config: VQGANConfig):
        super().__init__(config)
        self.encoder = build_encoder(config)
        self.quant_conv = nn.Conv2d(config.latent_channels, config.vq_embed_dim, 1)
        self.quantize = build_quantizer(config)
        self.post_quant_conv = nn.Conv2d(config.vq_embed_dim, config.latent_channels, 1)
        self.decoder = build_decoder(config)
        self.post_init()

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> unquantized latents (B, vq_embed_dim, H/f, W/f), as diffusers'."""
        check_pixel_values(pixel_values, self.config)
        return self.quant_conv(self.encoder(pixel_values))

    def decode_quantized(self, quantized: torch.Tensor) -> torch.Tensor:
        """Quantized latents (B, vq_embed_dim, h, w) -> images (B, out_channels, h*f, w*f)."""
        check_latents(quantized, self.config.vq_embed_dim)
        return self.decoder(self.post_quant_conv(quantized))

    @classmethod
    def from_diffusers(cls, vq_model: VQModel, **config_overrides) -> VQGANModel:
        """The same network as a diffusers `VQModel`, weights copied key for key (as float32).

        Args:
            vq_model: a diffusers `VQModel` with `norm_type="group"`.
            config_overrides: fields diffusers does not have, e.g. `vq_beta` or `vq_codebook_update="ema"`.
        """
        source = diffusers_config_kwargs(vq_model.config, _DIFFUSERS_KEYS)
        if source.get("norm_type", "group") != "group":
            raise ValueError(f"VQModel with norm_type={source['norm_type']!r} (MoVQ) is not supported, only 'group'")
        model = cls(VQGANConfig(**source, **config_overrides))
        missing, unexpected = model.load_state_dict(vq_model.state_dict(), strict=False)
        missing = [key for key in missing if key not in QUANTIZER_STATE_KEYS]  # ours alone; set just below
        if missing or unexpected:
            raise ValueError(f"VQModel does not match VQGANModel: missing {missing}, unexpected {unexpected}")
        if isinstance(model.quantize, VectorQuantizer):
            model.quantize.use_pretrained_codebook()
        return model

    def to_diffusers(self) -> VQModel:
        """This network as a diffusers `VQModel`, weights copied key for key.

        Only a plain quantizer has a diffusers equivalent: no FSQ, cosine codes or factorized codebook. (An EMA
        codebook converts: the EMA only trains it.)
        """
        from diffusers import VQModel

        quantize = self.quantize
        if not isinstance(quantize, VectorQuantizer) or quantize.use_l2_norm or quantize.out_proj is not None:
            raise ValueError(
                "diffusers' VQModel has a plain nearest-neighbour codebook: a model with quantizer_type='fsq', "
                "vq_use_l2_norm=True or vq_codebook_dim set would quantize differently there, so it is not converted"
            )
        vq_model = VQModel(**diffusers_config_kwargs(self.config, _DIFFUSERS_KEYS))
        target_keys = vq_model.state_dict().keys()
        vq_model.load_state_dict({k: v for k, v in self.state_dict().items() if k in target_keys}, strict=True)
        return vq_model


__all__ = ["VQGANModel", "VQGANPreTrainedModel"]
