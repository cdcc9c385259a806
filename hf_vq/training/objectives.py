"""What each family minimizes: one objective per family, from a batch to named loss terms.

The models return only their own terms (KL, quantizer losses, an LM's next-token loss); the reconstruction and
perceptual terms and their weighting live here, so that the loop is the same for every family. The adversarial term
of the VQ-GAN is added by the loop (`hf_vq.training.adversarial`), since it needs the discriminator.

An objective is `objective(model, batch, context) -> (terms, output)`: `model` is the model as prepared by Accelerate
(call it for the forward, so that DDP sees it), `batch` a dict of tensors on the model's device, `terms` maps each
term's name to a scalar (their sum is the loss), `output` is the model's output (the loop logs its `perplexity` /
`usage` and the GAN part reads its `reconstruction`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..losses import reconstruction_loss
from ..models.sequence_vae import beta_schedule, sampling_probability
from .arguments import TrainingArguments

LossTerms = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective may read besides the batch: the arguments, the optimizer step (for schedules that live in
    an objective, such as a KL weight that grows over training), the model without its DDP wrapper (for its own
    helpers, e.g. the prior's `build_inputs`) and the LPIPS network (None: no perceptual term)."""

    args: TrainingArguments
    step: int
    module: torch.nn.Module
    lpips: torch.nn.Module | None = None


Objective = Callable[[torch.nn.Module, dict[str, torch.Tensor], ObjectiveContext], tuple[LossTerms, Any]]


def _perceptual(context: ObjectiveContext, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """LPIPS distance of each image (B,), or None without LPIPS weights."""
    return None if context.lpips is None else context.lpips(reconstruction, target)


def image_objective(default_loss: str, quantizer: bool = False) -> Objective:
    """Mean pixel loss (`default_loss` unless `--reconstruction_loss` says otherwise) plus the weighted mean LPIPS
    distance; with `quantizer`, plus the VQ model's codebook and commitment terms times `--codebook_weight`."""

    def objective(model, batch, context: ObjectiveContext) -> tuple[LossTerms, Any]:
        pixel_values, args = batch["pixel_values"], context.args
        output = model(pixel_values)
        loss_type = args.reconstruction_loss or default_loss
        terms = {"reconstruction": reconstruction_loss(output.reconstruction, pixel_values, loss_type)}
        perceptual = _perceptual(context, output.reconstruction, pixel_values)
        if perceptual is not None:
            terms["perceptual"] = args.perceptual_weight * perceptual.mean()
        if quantizer:
            terms["quantizer"] = args.codebook_weight * output.quantizer_loss
        return terms, output

    return objective


def vae_objective(model, batch, context: ObjectiveContext) -> tuple[LossTerms, Any]:
    """A negative ELBO: the pixel loss summed over each image (a log-likelihood per image, as the KL is in nats per
    image), plus the LPIPS distance counted at every pixel as LDM does, plus the model's beta / free-bits KL."""
    pixel_values, args = batch["pixel_values"], context.args
    output = model(pixel_values)
    loss_type = args.reconstruction_loss or "l2"
    terms = {"reconstruction": reconstruction_loss(output.reconstruction, pixel_values, loss_type, reduction="sum")}
    perceptual = _perceptual(context, output.reconstruction, pixel_values)
    if perceptual is not None:
        terms["perceptual"] = args.perceptual_weight * perceptual.mean() * pixel_values[0].numel()
    terms["kl"] = output.kl_loss
    return terms, output


def causal_lm_objective(model, batch, context: ObjectiveContext) -> tuple[LossTerms, Any]:
    """The GPT prior's next-token cross-entropy over `[prefix, codes]` (`CodeStream` already checked the values)."""
    input_ids = context.module.build_inputs(batch["indices"], batch["class_labels"], check_values=False)
    output = model(input_ids, labels=input_ids)
    return {"nll": output.loss}, output


def pixelcnn_objective(model, batch, context: ObjectiveContext) -> tuple[LossTerms, Any]:
    """The PixelCNN prior's cross-entropy of every code of the grid given the codes before it (`CodeStream` already
    checked the values; class label -1: dropped, for classifier-free guidance)."""
    codes = batch["indices"]
    output = model(codes, class_labels=batch["class_labels"], labels=codes, check_values=False)
    return {"nll": output.loss}, output


def sequence_vae_objective(model, batch, context: ObjectiveContext) -> tuple[LossTerms, Any]:
    """MusicVAE's loss: the cross-entropy summed over time plus beta * max(KL - free_bits, 0), beta annealed as
    `(1 - beta_rate ** step) * max_beta` and the decoder fed its own samples with the scheduled probability."""
    config = context.module.config
    output = model(
        batch["input_ids"],
        beta=beta_schedule(context.step, config.max_beta, config.beta_rate),
        sampling_probability=sampling_probability(context.step, config.sampling_schedule, config.sampling_rate),
    )
    # `kl_penalty` is the loss term (zero while the KL is under the free bits); the loop logs the KL itself as `kl`.
    return {"reconstruction": output.reconstruction_loss, "kl_penalty": output.kl_loss}, output
