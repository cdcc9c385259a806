"""What each family trains on: the model class and its generator loss terms.

The models return only their own terms (KL, quantizer losses); the reconstruction and perceptual terms and their
weighting live here, one function per family, so that the loop is the same for every family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedConfig, PreTrainedModel

from ..losses import reconstruction_loss
from ..models import (
    AutoencoderConfig,
    AutoencoderModel,
    VAEConfig,
    VAEModel,
    VQGANConfig,
    VQGANModel,
    VQPriorConfig,
    VQPriorForCausalLM,
    VQVAEConfig,
    VQVAEModel,
)
from .arguments import TrainingArguments

# (model output, pixel_values, perceptual distances (B,) or None, training arguments) -> {term name: scalar}
LossTerms = Callable[[object, torch.Tensor, "torch.Tensor | None", TrainingArguments], dict[str, torch.Tensor]]


def pixel_terms(output, pixel_values: torch.Tensor, perceptual, args: TrainingArguments, default: str) -> dict:
    """Mean pixel loss plus the weighted mean LPIPS distance (when LPIPS weights were given)."""
    terms = {
        "reconstruction": reconstruction_loss(output.reconstruction, pixel_values, args.reconstruction_loss or default)
    }
    if perceptual is not None:
        terms["perceptual"] = args.perceptual_weight * perceptual.mean()
    return terms


def autoencoder_terms(output, pixel_values, perceptual, args) -> dict[str, torch.Tensor]:
    return pixel_terms(output, pixel_values, perceptual, args, default="l2")


def vae_terms(output, pixel_values, perceptual, args) -> dict[str, torch.Tensor]:
    """A negative ELBO: the pixel loss summed over each image (a log-likelihood per image, as the KL is in nats
    per image), plus the LPIPS distance counted at every pixel as LDM does, plus the model's beta / free-bits KL."""
    loss_type = args.reconstruction_loss or "l2"
    terms = {"reconstruction": reconstruction_loss(output.reconstruction, pixel_values, loss_type, reduction="sum")}
    if perceptual is not None:
        pixels = pixel_values[0].numel()
        terms["perceptual"] = args.perceptual_weight * perceptual.mean() * pixels
    terms["kl"] = output.kl_loss
    return terms


def vq_terms(default: str) -> LossTerms:
    def terms(output, pixel_values, perceptual, args) -> dict[str, torch.Tensor]:
        result = pixel_terms(output, pixel_values, perceptual, args, default=default)
        result["quantizer"] = args.codebook_weight * output.quantizer_loss
        return result

    return terms


@dataclass(frozen=True)
class Family:
    """A trainable model family: its config and model classes, its loss terms, whether it has a discriminator, and
    what it trains on: "images" (`Trainer`) or "codes" (`PriorTrainer`, whose loss is the LM's next-token loss)."""

    name: str
    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    loss_terms: LossTerms | None
    adversarial: bool = False
    data: str = "images"


FAMILIES: dict[str, Family] = {
    "autoencoder": Family("autoencoder", AutoencoderConfig, AutoencoderModel, autoencoder_terms),
    "vae": Family("vae", VAEConfig, VAEModel, vae_terms),
    "vqvae": Family("vqvae", VQVAEConfig, VQVAEModel, vq_terms(default="l2")),
    "vqgan": Family("vqgan", VQGANConfig, VQGANModel, vq_terms(default="l1"), adversarial=True),
    "prior": Family("prior", VQPriorConfig, VQPriorForCausalLM, loss_terms=None, data="codes"),
}
