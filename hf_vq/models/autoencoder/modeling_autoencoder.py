"""Plain, denoising and k-sparse autoencoder on the taming / LDM convolutional backbone."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...modules.backbone import build_decoder, build_encoder, init_conv_weights
from ...modules.checks import check_feature_maps, check_pixel_values
from ...utils.errors import UsageError
from ..modeling_utils import HubMixin
from .configuration_autoencoder import AutoencoderConfig


@dataclass
class AutoencoderOutput(ModelOutput):
    """
    Args:
        reconstruction: (B, out_channels, H, W) decoded images in [-1, 1] units.
        latents: (B, latent_channels, h, w) codes the decoder saw (after k-sparsity, from the corrupted input when
            the model is denoising and in training mode).
    """

    reconstruction: torch.Tensor | None = None
    latents: torch.Tensor | None = None


class AutoencoderPreTrainedModel(HubMixin, PreTrainedModel):
    config_class = AutoencoderConfig
    base_model_prefix = "autoencoder"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True

    def _init_weights(self, module):
        init_conv_weights(module)


class AutoencoderModel(AutoencoderPreTrainedModel):
    """Deterministic autoencoder; denoising and k-sparse through `AutoencoderConfig`.

    Args:
        config: the model's `AutoencoderConfig`.
    """

    def __init__(self, config: AutoencoderConfig):
        super().__init__(config)
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)
        self.post_init()

    def corrupt(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The configured input corruption (whatever the mode; `forward` applies it in training mode only)."""
        kind = self.config.corruption
        if kind is None:
            return pixel_values
        if kind == "gaussian":
            noise = torch.randn(pixel_values.shape, generator=generator, device=pixel_values.device)
            return pixel_values + self.config.noise_std * noise.to(pixel_values.dtype)
        # "mask": one draw per pixel, shared by its channels. -1 is black, the 0 of Vincent et al.'s [0, 1] images.
        batch, _, height, width = pixel_values.shape
        uniform = torch.rand((batch, 1, height, width), generator=generator, device=pixel_values.device)
        return pixel_values.masked_fill(uniform < self.config.mask_ratio, -1.0)

    def sparsify(self, latents: torch.Tensor) -> torch.Tensor:
        """Keep the `sparsity_k` largest activations of each sample, zero the rest (Makhzani & Frey 2013, sec. 2).

        Gradients flow only through the kept units, as in the paper.
        """
        k = self.config.sparsity_k
        if k is None:
            return latents
        flat = latents.flatten(1)  # (B, C*h*w)
        if k > flat.shape[1]:
            raise UsageError(
                f"`sparsity_k` ({k}) exceeds the {flat.shape[1]} latent activations of a "
                f"{tuple(latents.shape[1:])} latent; use larger inputs or a smaller sparsity_k"
            )
        keep = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)
        return (flat * keep).view_as(latents)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> latents (B, latent_channels, H/f, W/f), k-sparse if configured."""
        check_pixel_values(pixel_values, self.config)
        return self.sparsify(self.encoder(pixel_values))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_channels, h, w) -> images (B, out_channels, h*f, w*f)."""
        check_feature_maps(latents, "latents", self.config.latent_channels, "latent_channels")
        return self.decoder(latents)

    def forward(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> AutoencoderOutput:
        """Reconstruct `pixel_values`; in training mode a denoising model sees them corrupted first.

        Args:
            pixel_values: (B, in_channels, H, W) images in [-1, 1]; H and W divisible by the downsampling factor.
            generator: optional random generator for the corruption.
        """
        check_pixel_values(pixel_values, self.config)
        inputs = self.corrupt(pixel_values, generator) if self.training else pixel_values
        latents = self.encode(inputs)
        return AutoencoderOutput(reconstruction=self.decode(latents), latents=latents)
