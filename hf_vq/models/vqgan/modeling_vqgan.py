"""VQ-GAN autoencoder (taming-transformers' architecture) with the state-dict layout of diffusers' `VQModel`.

`forward`, `encode_indices` and `decode_indices` are the VQ models' shared ones, in `VQPreTrainedModel`
(`..modeling_vq`); this file builds the network and converts from and to diffusers and taming (the mappings are in
`hf_vq.conversion`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from torch import nn

from ...conversion.diffusers import (
    diffusers_from_pretrained_kwargs,
    load_diffusers_model,
    read_diffusers_config,
    vq_model_from_vqgan,
    vqgan_config_from_vq_model,
)
from ...conversion.taming import (
    convert_taming_state_dict,
    infer_taming_config,
    load_taming_state_dict,
    taming_config_from_yaml,
)
from ...modules.backbone import build_decoder, build_encoder
from ...modules.checks import check_feature_maps, check_pixel_values
from ...modules.quantizers import build_quantizer
from ...utils.errors import UsageError
from ..modeling_utils import HubMixin
from ..modeling_vq import VQPreTrainedModel
from .configuration_vqgan import VQGANConfig

if TYPE_CHECKING:
    from diffusers import VQModel


class VQGANPreTrainedModel(HubMixin, VQPreTrainedModel):
    config_class = VQGANConfig
    base_model_prefix = "vqgan"
    supports_gradient_checkpointing = True


class VQGANModel(VQGANPreTrainedModel):
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
        check_feature_maps(quantized, "latents", self.config.vq_embed_dim, "vq_embed_dim")
        return self.decoder(self.post_quant_conv(quantized))

    @classmethod
    def from_diffusers(
        cls, vq_model: VQModel | str | os.PathLike, *, subfolder: str | None = None, **kwargs
    ) -> VQGANModel:
        """The same network as a diffusers `VQModel`, weights copied key for key (as float32).

        Args:
            vq_model: a diffusers `VQModel` with `norm_type="group"`, or a local folder or Hub repo id holding one
                (`config.json` with `_class_name`, `diffusion_pytorch_model.safetensors`).
            subfolder: the model's subfolder in a pipeline folder or repo, e.g. "vqvae".
            kwargs: with a path, `revision`, `token`, `local_files_only`, `cache_dir`, `force_download`, `variant`,
                `dtype`; the others are fields diffusers does not have, e.g. `vq_beta` or `vq_codebook_update="ema"`.
        """
        if isinstance(vq_model, (str, os.PathLike)):
            hub_kwargs, dtype, config_overrides = diffusers_from_pretrained_kwargs(kwargs)
            config, state_dict = load_diffusers_model(vq_model, "VQModel", subfolder=subfolder, **hub_kwargs)
        else:
            if subfolder is not None:
                raise UsageError("`subfolder` is for a path or repo id, not for a loaded VQModel")
            config, state_dict = vq_model.config, vq_model.state_dict()
            dtype, config_overrides = None, kwargs
        model = cls(VQGANConfig(**vqgan_config_from_vq_model(config), **config_overrides))
        model.load_converted_state_dict(state_dict, source="VQModel")
        return model if dtype is None else model.to(dtype)

    @classmethod
    def _from_pretrained_other_layout(cls, source: str, kwargs: dict) -> VQGANModel | None:
        """A diffusers `VQModel` folder or repo, converted on load (in eval mode, as `from_pretrained` gives)."""
        if read_diffusers_config(source, **diffusers_from_pretrained_kwargs(kwargs)[0]) is None:
            return None
        return cls.from_diffusers(source, **kwargs).eval()

    def to_diffusers(self) -> VQModel:
        """This network as a diffusers `VQModel`, weights copied key for key.

        Only a plain quantizer has a diffusers equivalent: no FSQ, LFQ, SimVQ or residual quantizer, cosine codes or
        factorized codebook. (An EMA codebook and the rotation trick convert: they only change training.) Every field
        of diffusers' config comes from ours: set `config.lookup_from_codebook = True` for pipelines that decode code
        indices (`AmusedPipeline`).
        """
        return vq_model_from_vqgan(self.config, self.state_dict())

    @classmethod
    def from_taming(
        cls,
        checkpoint: str | os.PathLike,
        config: VQGANConfig | str | os.PathLike | None = None,
        resolution: int | None = None,
        allow_unsafe_pickle: bool = False,
    ) -> VQGANModel:
        """A model (in eval mode) with the weights of a taming-transformers / LDM VQ checkpoint (see
        `hf_vq.conversion.taming`, and `scripts/convert_taming_checkpoint.py` for the command line).

        Args:
            checkpoint: the checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin` or `.safetensors`).
            config: a `VQGANConfig`, or the path of the taming config YAML. `None` infers it from the weights, which
                then needs `resolution`.
            resolution: the training resolution, when no config is given (see `infer_taming_config`).
            allow_unsafe_pickle: unpickle Python objects in the checkpoint (see `load_taming_state_dict`); only for
                files you trust.
        """
        if config is not None and resolution is not None:
            raise UsageError("give either config or resolution: the config already holds the resolution")
        state_dict = load_taming_state_dict(checkpoint, allow_unsafe_pickle=allow_unsafe_pickle)
        if config is None:
            config = VQGANConfig(**infer_taming_config(state_dict, resolution))
        elif not isinstance(config, VQGANConfig):
            config = VQGANConfig(**taming_config_from_yaml(config))
        model = cls(config)
        model.load_converted_state_dict(convert_taming_state_dict(state_dict, model), source="the taming checkpoint")
        return model.eval()


__all__ = ["VQGANModel", "VQGANPreTrainedModel"]
