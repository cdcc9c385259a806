"""Variational autoencoder (beta-VAE, free bits) with the state-dict layout of diffusers' `AutoencoderKL`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...conversion.diffusers import (
    autoencoder_kl_from_vae,
    diffusers_from_pretrained_kwargs,
    load_diffusers_model,
    read_diffusers_config,
    vae_config_from_autoencoder_kl,
)
from ...modules.backbone import build_decoder, build_encoder, init_conv_weights
from ...modules.checks import check_feature_maps, check_pixel_values
from ...modules.distributions import DiagonalGaussian
from ...utils.errors import UsageError
from ..modeling_utils import HubMixin
from .configuration_vae import VAEConfig

if TYPE_CHECKING:
    from diffusers import AutoencoderKL


@dataclass
class VAEOutput(ModelOutput):
    """
    Args:
        reconstruction: (B, out_channels, H, W) decoded images in [-1, 1] units.
        latents: (B, latent_channels, h, w) the latents that were decoded (a posterior sample or its mean).
        latent_mean: (B, latent_channels, h, w) posterior mean.
        latent_logvar: (B, latent_channels, h, w) posterior log-variance.
        kl: (B,) KL(q(z|x) || N(0, I)) of each sample, in nats.
        kl_loss: () the regularization term to add to the reconstruction loss: `beta` times the batch-mean KL,
            with the free-bits hinge per latent channel.
    """

    reconstruction: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    latent_mean: torch.Tensor | None = None
    latent_logvar: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None


class VAEPreTrainedModel(HubMixin, PreTrainedModel):
    config_class = VAEConfig
    base_model_prefix = "vae"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True

    def _init_weights(self, module):
        init_conv_weights(module)


class VAEModel(VAEPreTrainedModel):
    """Variational autoencoder with a diagonal Gaussian posterior and a N(0, I) prior.

    Args:
        config: the model's `VAEConfig`.
    """

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        latent = config.latent_channels
        self.encoder = build_encoder(config, double_z=True)
        self.decoder = build_decoder(config)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1) if config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(latent, latent, 1) if config.use_post_quant_conv else None
        self.post_init()

    def encode(self, pixel_values: torch.Tensor) -> DiagonalGaussian:
        """Images (B, C, H, W) in [-1, 1] -> the posterior q(z | x) over (B, latent_channels, H/f, W/f)."""
        check_pixel_values(pixel_values, self.config)
        moments = self.encoder(pixel_values)  # (B, 2 * latent_channels, h, w)
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        return DiagonalGaussian.from_moments(moments)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_channels, h, w) -> images (B, out_channels, h*f, w*f)."""
        check_feature_maps(latents, "latents", self.config.latent_channels, "latent_channels")
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        return self.decoder(latents)

    def kl_loss(self, posterior: DiagonalGaussian) -> torch.Tensor:
        """`beta * sum_c max(free_bits, E_batch[KL_c])`, KL_c summed over channel c's positions, in nats."""
        kl_per_channel = posterior.kl(dims=(2, 3)).mean(dim=0)  # (C,)
        if self.config.free_bits > 0:
            kl_per_channel = kl_per_channel.clamp(min=self.config.free_bits)
        return self.config.beta * kl_per_channel.sum()

    def forward(
        self,
        pixel_values: torch.Tensor,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> VAEOutput:
        """Encode, draw (or take the mean of) the posterior, decode.

        Args:
            pixel_values: (B, in_channels, H, W) images in [-1, 1]; H and W divisible by the downsampling factor.
            sample_posterior: decode a reparameterized posterior sample (`True`) or the mean (`False`); defaults
                to sampling in training mode and the mean in evaluation mode.
            generator: optional random generator for the posterior sample.
        """
        posterior = self.encode(pixel_values)
        if sample_posterior is None:
            sample_posterior = self.training
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return VAEOutput(
            reconstruction=self.decode(latents),
            latents=latents,
            latent_mean=posterior.mean,
            latent_logvar=posterior.logvar,
            kl=posterior.kl(),
            kl_loss=self.kl_loss(posterior),
        )

    @torch.no_grad()
    def sample(
        self, num_samples: int, generator: torch.Generator | None = None, latent_size: int | None = None
    ) -> torch.Tensor:
        """Decode `num_samples` draws from the N(0, I) prior into images (num_samples, out_channels, H, W).

        Args:
            num_samples: how many images.
            generator: optional random generator (on the model's device).
            latent_size: side of the latent grid; defaults to the one at `config.sample_size`.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise UsageError(f"`num_samples` must be a positive integer, got {num_samples!r}")
        size = self.config.latent_size if latent_size is None else latent_size
        shape = (num_samples, self.config.latent_channels, size, size)
        latents = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        return self.decode(latents)

    @classmethod
    def from_diffusers(
        cls, autoencoder_kl: AutoencoderKL | str | os.PathLike, *, subfolder: str | None = None, **kwargs
    ) -> VAEModel:
        """The same network as a diffusers `AutoencoderKL`, weights copied key for key (as float32).

        Args:
            autoencoder_kl: a diffusers `AutoencoderKL`, or a local folder or Hub repo id holding one (`config.json`
                with `_class_name`, `diffusion_pytorch_model.safetensors`).
            subfolder: the model's subfolder in a pipeline folder or repo, e.g. "vae".
            kwargs: with a path, `revision`, `token`, `local_files_only`, `cache_dir`, `force_download`, `variant`,
                `dtype`; the others are fields of `VAEConfig` that diffusers does not have, e.g. `beta` or `free_bits`.
        """
        if isinstance(autoencoder_kl, (str, os.PathLike)):
            hub_kwargs, dtype, config_overrides = diffusers_from_pretrained_kwargs(kwargs)
            config, state_dict = load_diffusers_model(
                autoencoder_kl, "AutoencoderKL", subfolder=subfolder, **hub_kwargs
            )
        else:
            if subfolder is not None:
                raise UsageError("`subfolder` is for a path or repo id, not for a loaded AutoencoderKL")
            config, state_dict = autoencoder_kl.config, autoencoder_kl.state_dict()
            dtype, config_overrides = None, kwargs
        model = cls(VAEConfig(**vae_config_from_autoencoder_kl(config), **config_overrides))
        model.load_state_dict(state_dict, strict=True)  # the same keys; copies values, keeps float32
        return model if dtype is None else model.to(dtype)

    @classmethod
    def _from_pretrained_other_layout(cls, source: str, kwargs: dict) -> VAEModel | None:
        """A diffusers `AutoencoderKL` folder or repo, converted on load (in eval mode, as `from_pretrained` gives)."""
        if read_diffusers_config(source, **diffusers_from_pretrained_kwargs(kwargs)[0]) is None:
            return None
        return cls.from_diffusers(source, **kwargs).eval()

    def to_diffusers(self) -> AutoencoderKL:
        """This network as a diffusers `AutoencoderKL`, weights copied key for key."""
        return autoencoder_kl_from_vae(self.config, self.state_dict())
