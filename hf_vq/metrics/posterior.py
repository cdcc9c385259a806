"""Posterior-collapse diagnostics: the activity of each latent channel and, for a VAE, its KL."""

from __future__ import annotations

import torch

from ..modules.distributions import DiagonalGaussian, latent_mean
from ..utils.errors import UsageError
from ..utils.torch_utils import evaluating, module_device
from .reconstruction import ImageSet, image_batches


def _check_autoencoder(model: torch.nn.Module, what: str) -> None:
    if not callable(getattr(model, "encode", None)):
        raise UsageError(f"{what} takes an autoencoder (with encode); got {type(model).__name__}")


@torch.no_grad()
def encodes_a_posterior(model: torch.nn.Module, image: torch.Tensor) -> bool:
    """Whether `model.encode` gives a posterior distribution (a VAE), tried on a batch of one image (1, C, H, W)."""
    _check_autoencoder(model, "encodes_a_posterior")
    with evaluating(model):
        return isinstance(model.encode(image.to(module_device(model))), DiagonalGaussian)


@torch.no_grad()
def latent_statistics(
    model: torch.nn.Module, images: ImageSet, threshold: float = 0.01, batch_size: int = 64
) -> dict[str, object]:
    """Posterior-collapse diagnostics over an evaluation set.

    `unit_activity` (C,): per latent channel, the variance over the data of the latent mean `E_q[z]` (Burda et
    al. 2016's activity statistic, averaged over the channel's positions); `active_units` counts the channels
    above `threshold` (their 0.01). For a VAE also `kl_per_channel` (C,): the mean KL(q(z|x) || N(0, I)) of each
    channel in nats, summed over its positions (a collapsed channel has ~0), and `kl`, their sum.
    """
    return _latent_statistics(model, images, threshold, batch_size, require_posterior=False)


def _latent_statistics(
    model: torch.nn.Module, images: ImageSet, threshold: float, batch_size: int, require_posterior: bool
) -> dict[str, object]:
    _check_autoencoder(model, "latent_statistics")
    first = second = kl_sum = None
    count = 0
    with evaluating(model):
        for batch in image_batches(images, batch_size):
            encoded = model.encode(batch.to(module_device(model)))
            posterior = encoded if isinstance(encoded, DiagonalGaussian) else None
            if posterior is None and require_posterior:
                raise UsageError(
                    f"kl_per_channel takes a VAE (whose encode gives a posterior); got {type(model).__name__}"
                )
            mean = latent_mean(encoded).double().cpu()  # (B, C, h, w)
            first = mean.sum(0) if first is None else first + mean.sum(0)
            second = mean.pow(2).sum(0) if second is None else second + mean.pow(2).sum(0)
            if posterior is not None:
                kl = posterior.kl(dims=(2, 3)).double().cpu().sum(0)  # (C,)
                kl_sum = kl if kl_sum is None else kl_sum + kl
            count += len(batch)
    activity = (second / count - (first / count) ** 2).clamp_min(0).mean(dim=(1, 2))  # (C,)
    statistics: dict[str, object] = {
        "active_units": int((activity > threshold).sum()),
        "num_latent_channels": len(activity),
        "unit_activity": activity.float(),
    }
    if kl_sum is not None:
        statistics["kl_per_channel"] = (kl_sum / count).float()
        statistics["kl"] = (kl_sum / count).sum().item()
    return statistics


def active_units(model: torch.nn.Module, images: ImageSet, threshold: float = 0.01, batch_size: int = 64) -> int:
    """How many latent channels are active over an evaluation set (see `latent_statistics`)."""
    return latent_statistics(model, images, threshold, batch_size)["active_units"]


def kl_per_channel(model: torch.nn.Module, images: ImageSet, batch_size: int = 64) -> torch.Tensor:
    """Mean KL(q(z|x) || N(0, I)) of each latent channel of a VAE over an evaluation set, nats (C,)."""
    return _latent_statistics(model, images, 0.01, batch_size, require_posterior=True)["kl_per_channel"]
