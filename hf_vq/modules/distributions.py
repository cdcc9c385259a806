"""Diagonal Gaussian posterior q(z | x) = N(mean, diag(exp(logvar))) over a latent grid (B, C, h, w)."""

from __future__ import annotations

import torch

from ..utils.errors import UsageError

# Sum over channels and positions: per-sample totals (B,), the unit the VAE reports KL in.
PER_SAMPLE = (1, 2, 3)


class DiagonalGaussian:
    """A diagonal Gaussian over latents of shape (B, C, h, w).

    Args:
        mean: (B, C, h, w) means.
        logvar: (B, C, h, w) log-variances, clamped to [-30, 20] as in LDM and diffusers so that `exp` neither
            underflows to a zero variance nor overflows.
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        if mean.shape != logvar.shape:
            raise UsageError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        """Split (B, 2C, h, w) encoder output into mean (first C channels) and logvar (last C), diffusers' order."""
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterized sample mean + std * eps, differentiable in mean and logvar (Kingma & Welling, sec. 2.4)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussian | None = None, dims: tuple[int, ...] = PER_SAMPLE) -> torch.Tensor:
        """KL(self || other) in nats, summed over `dims` (`dims=()` keeps each element); `other` is N(0, I) if None."""
        if other is None:
            kl = 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar)
        else:
            kl = 0.5 * (
                (self.mean - other.mean).pow(2) / other.var + self.var / other.var - 1.0 - self.logvar + other.logvar
            )
        return kl.sum(dim=dims) if dims else kl


def latent_mean(encoded: torch.Tensor | DiagonalGaussian) -> torch.Tensor:
    """What an encoder's output says an image's latent is: a posterior's mean (a VAE), or the latent itself."""
    return encoded.mean if isinstance(encoded, DiagonalGaussian) else encoded
