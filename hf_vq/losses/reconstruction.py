"""Pixel reconstruction losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..utils.configuration_utils import check_choice
from ..utils.errors import UsageError

LOSS_TYPES = ("l1", "l2")
REDUCTIONS = ("mean", "sum")


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, loss_type: str = "l2", reduction: str = "mean"
) -> torch.Tensor:
    """Pixel loss between reconstructions and targets (B, C, H, W).

    Args:
        loss_type: `"l2"` (squared error) or `"l1"` (absolute error, taming's choice for VQ-GAN).
        reduction: `"mean"` over every element, or `"sum"` over each image's elements and then the mean over the
            batch: the scale of a log-likelihood per image, as the VAE's KL (nats per image) expects.
    """
    check_choice("loss_type", loss_type, LOSS_TYPES)
    check_choice("reduction", reduction, REDUCTIONS)
    if reconstruction.shape != target.shape:
        raise UsageError(f"shapes differ: reconstruction {tuple(reconstruction.shape)}, target {tuple(target.shape)}")
    error = F.l1_loss if loss_type == "l1" else F.mse_loss
    elementwise = error(reconstruction.float(), target.float(), reduction="none")
    if reduction == "mean":
        return elementwise.mean()
    return elementwise.flatten(1).sum(dim=1).mean()
