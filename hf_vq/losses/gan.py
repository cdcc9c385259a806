"""Adversarial losses for VQ-GAN training: hinge and non-saturating losses, taming's adaptive generator weight and
LeCAM regularization.

The training loop combines them: the generator adds `disc_weight * adaptive_weight(...) * g_loss` from step
`disc_start`, and the discriminator trains on `d_loss (+ lecam_weight * lecam.penalty(...))` from
`disc_train_start` (default 0). taming also zeroed the discriminator's own loss until `disc_start`, so the generator
met an untrained discriminator when its adversarial term switched on (taming issue #44); training it from the start
avoids that.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.errors import UsageError


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss `(mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))) / 2` (taming's scale), ()."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss `-mean(D(G(z)))`, ()."""
    return -logits_fake.float().mean()


def non_saturating_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator cross-entropy `(mean(softplus(-D(x))) + mean(softplus(D(G(z))))) / 2`, ().

    `softplus(-l) = -log(sigmoid(l))`: the binary cross-entropy of logits, written stably.
    """
    return 0.5 * (F.softplus(-logits_real.float()).mean() + F.softplus(logits_fake.float()).mean())


def non_saturating_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator non-saturating loss `mean(softplus(-D(G(z))))`, i.e. `-mean(log(sigmoid(D(G(z)))))`, ().

    Goodfellow et al. 2014's alternative to minimizing `log(1 - D(G(z)))`, whose gradient vanishes early in training.
    """
    return F.softplus(-logits_fake.float()).mean()


# name -> (discriminator loss, generator loss)
GAN_LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "non_saturating": (non_saturating_d_loss, non_saturating_g_loss),
}


def adaptive_weight(
    reconstruction_loss: torch.Tensor,
    generator_loss: torch.Tensor,
    last_layer_weight: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """taming's adaptive adversarial weight `||grad L_rec|| / (||grad L_gan|| + eps)`, clamped to [0, max_weight].

    Both gradients are taken with respect to the decoder's last layer (`decoder.conv_out.weight`), so the adversarial
    term is scaled to pull on the output as hard as the reconstruction terms do (Esser et al. 2021, eq. 7). Multiply
    by `disc_weight` (taming: 0.8) outside. The graphs are kept (`retain_graph=True`) for the backward pass that
    follows; the result is detached, a constant for that pass.

    Args:
        reconstruction_loss: () the reconstruction (+ perceptual) loss, taming's `nll_loss`.
        generator_loss: () the generator's adversarial loss.
        last_layer_weight: the parameter both losses are differentiated against.
        max_weight: upper clamp (taming: 1e4).
        eps: keeps the ratio finite when the adversarial gradient vanishes (taming: 1e-4).
    """
    (rec_grad,) = torch.autograd.grad(reconstruction_loss, last_layer_weight, retain_graph=True)
    (gan_grad,) = torch.autograd.grad(generator_loss, last_layer_weight, retain_graph=True)
    weight = rec_grad.float().norm() / (gan_grad.float().norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


class LeCAM(nn.Module):
    """LeCAM regularization for the discriminator (Tseng et al. 2021, "Regularizing GANs under Limited Data").

    Keeps exponential moving averages of the discriminator's mean logits on real and on fake images and penalizes
    `mean(relu(D(x) - ema_fake)**2) + mean(relu(ema_real - D(G(z)))**2)`, which keeps the logits on real and fake
    images from drifting apart. Call `update` with each step's logits, then add `lecam_weight * penalty(...)` to the
    discriminator loss. The averages are buffers, so `state_dict` / `load_state_dict` checkpoint them. They are kept
    per process; under multi-process training each process averages its own shard's logits.

    Args:
        decay: EMA decay (0.99). The first update sets the averages to the batch means (no bias towards a starting
            value).
    """

    ema_real: torch.Tensor
    ema_fake: torch.Tensor
    num_updates: torch.Tensor

    def __init__(self, decay: float = 0.99):
        super().__init__()
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise UsageError(f"`decay` must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.register_buffer("ema_real", torch.zeros((), dtype=torch.float32))
        self.register_buffer("ema_fake", torch.zeros((), dtype=torch.float32))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        """Fold this step's mean logits on real and on fake images into the averages."""
        mean_real = logits_real.detach().float().mean()
        mean_fake = logits_fake.detach().float().mean()
        decay = self.decay if self.num_updates > 0 else 0.0
        self.ema_real.mul_(decay).add_((1.0 - decay) * mean_real)
        self.ema_fake.mul_(decay).add_((1.0 - decay) * mean_fake)
        self.num_updates += 1

    def penalty(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """The LeCAM term `mean(relu(D(x) - ema_fake)**2) + mean(relu(ema_real - D(G(z)))**2)`, ()."""
        if self.num_updates == 0:
            raise RuntimeError("LeCAM.penalty needs the moving averages: call update(logits_real, logits_fake) first")
        return (
            F.relu(logits_real.float() - self.ema_fake).pow(2).mean()
            + F.relu(self.ema_real - logits_fake.float()).pow(2).mean()
        )

    def extra_repr(self) -> str:
        return f"decay={self.decay}"
