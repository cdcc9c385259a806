"""Every metric that applies to an autoencoder over a held-out set, as one JSON-ready dict: what
`scripts/evaluate.py` writes, what the demo reports and what a model card reads."""

from __future__ import annotations

import torch

from .likelihood import bits_per_dim
from .posterior import latent_statistics
from .reconstruction import ImageSet, image_batches, reconstruction_metrics


@torch.no_grad()
def evaluation_report(
    model: torch.nn.Module,
    images: ImageSet,
    *,
    prior: torch.nn.Module | None = None,
    class_labels: torch.Tensor | None = None,
    decoder_scale: float | None = None,
    lpips: torch.nn.Module | None = None,
    batch_size: int = 64,
    num_samples: int = 64,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, object]:
    """Reconstruction metrics (`reconstruction_metrics`), active latent channels (and a VAE's KL per channel), and
    bits/dim: a VAE's importance-weighted bound with `num_samples` samples and its ELBO; a VQ model's bound with the
    uniform prior (`bits_per_dim_uniform_prior`) and, given a learned `prior` (with `class_labels` if it is
    class-conditional), with it (`bits_per_dim`), both at the same `decoder_scale` (None: fitted to this set).
    With `progress`, each pass over the set shows a tqdm bar on stderr when stderr is a terminal."""
    if not isinstance(images, torch.Tensor):  # every metric below reads the whole set
        images = torch.cat([batch.cpu() for batch in image_batches(images, batch_size)])

    def batches(label: str) -> ImageSet:  # the set as batches, behind a progress bar with `progress`
        return image_batches(images, batch_size, label if progress else None)

    metrics: dict[str, object] = reconstruction_metrics(model, batches("reconstruction"), batch_size, lpips=lpips)
    latents = latent_statistics(model, batches("latents"), batch_size=batch_size)
    metrics["active_units"] = latents["active_units"]
    metrics["num_latent_channels"] = latents["num_latent_channels"]
    if "kl_per_channel" in latents:  # a VAE
        metrics["kl_per_channel"] = [round(value, 6) for value in latents["kl_per_channel"].tolist()]
        result = bits_per_dim(model, images, decoder_scale=decoder_scale, batch_size=batch_size,
                              num_samples=num_samples, generator=generator, progress=progress)  # fmt: skip
        metrics.update({name: result[name] for name in ("bits_per_dim", "elbo_bits_per_dim", "decoder_scale")})
        metrics["bits_per_dim_num_samples"] = num_samples
    elif hasattr(model, "encode_indices"):
        uniform = bits_per_dim(model, images, "uniform", decoder_scale=decoder_scale, batch_size=batch_size,
                               progress=progress)  # fmt: skip
        metrics["bits_per_dim_uniform_prior"] = uniform["bits_per_dim"]
        metrics["decoder_scale"] = uniform["decoder_scale"]
        if prior is not None:
            learned = bits_per_dim(model, images, prior, class_labels=class_labels, batch_size=batch_size,
                                   decoder_scale=uniform["decoder_scale"], progress=progress)  # fmt: skip
            metrics["bits_per_dim"] = learned["bits_per_dim"]
    return metrics
