"""Likelihood bounds in bits per dimension on 8-bit images: a VQ model with the uniform or a learned prior, a VAE
through the importance-weighted bound."""

from __future__ import annotations

import math

import torch

from ..utils.errors import UsageError
from ..utils.torch_utils import evaluating, module_device
from .posterior import encodes_a_posterior
from .reconstruction import ImageSet, image_batches


def discretized_gaussian_log_likelihood(
    images: torch.Tensor, mean: torch.Tensor, scale: float | torch.Tensor, num_bins: int = 256
) -> torch.Tensor:
    """log P(images) in nats (B,) under a Gaussian of `mean` and `scale` discretized into `num_bins` levels.

    Images in [-1, 1] hold `num_bins` levels (8-bit data: 256, bin width 2/255); each value is snapped to its level
    and gets the Gaussian mass of its bin, the two edge bins extending to -inf and +inf (as in PixelCNN++ and
    "Improved DDPM"), so that the probabilities of the levels sum to 1 and the figure is comparable to the
    bits/dim of likelihood models on 8-bit data.
    """
    if images.shape != mean.shape:
        raise UsageError(f"shapes differ: images {tuple(images.shape)}, mean {tuple(mean.shape)}")
    half_bin = 1.0 / (num_bins - 1)
    levels = torch.round((images.float().clamp(-1, 1) + 1) / (2 * half_bin))  # 0 .. num_bins - 1
    x = levels * 2 * half_bin - 1
    scale = torch.as_tensor(scale, dtype=torch.float32, device=images.device)
    upper = (x + half_bin - mean.float()) / scale
    lower = (x - half_bin - mean.float()) / scale
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_survival_lower = torch.special.log_ndtr(-lower)
    # log(Phi(upper) - Phi(lower)), computed on the side of the mean where it does not cancel.
    middle = torch.where(
        lower > 0,
        log_survival_lower + torch.log1p(-torch.exp(torch.special.log_ndtr(-upper) - log_survival_lower)),
        log_cdf_upper + torch.log1p(-torch.exp(torch.special.log_ndtr(lower) - log_cdf_upper)),
    )
    log_p = torch.where(levels == 0, log_cdf_upper, torch.where(levels == num_bins - 1, log_survival_lower, middle))
    return log_p.clamp_min(-1e4).flatten(1).sum(dim=1)  # floor: a bin with zero mass must not give -inf


def _fitted_scale(reconstruction: torch.Tensor, images: torch.Tensor) -> float:
    """The maximum-likelihood scale of a Gaussian decoder with one global scale: sqrt of the mean squared error."""
    return max((reconstruction.float() - images.float()).pow(2).mean().sqrt().item(), 1e-3)


def _check_scale(decoder_scale: float | None) -> None:
    if decoder_scale is not None and not decoder_scale > 0:
        raise UsageError(f"`decoder_scale` must be > 0, got {decoder_scale}")


@torch.no_grad()
def bits_per_dim(
    model: torch.nn.Module,
    images: ImageSet,
    prior: torch.nn.Module | str = "uniform",
    class_labels: torch.Tensor | None = None,
    decoder_scale: float | None = None,
    batch_size: int = 64,
    num_samples: int = 64,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Negative log-likelihood bound in bits per dimension over a held-out set, comparable to the VQ-VAE paper's
    figures on 8-bit data: the decoder is a Gaussian around the decoded image with one global `decoder_scale`,
    discretized to 256 levels (`discretized_gaussian_log_likelihood`). D = C * H * W.

    - VQ models: -(log p(x | z_q) + log p(z)) / (D ln 2) with the codes z of each image and `prior` either the
      uniform prior over the K codes (`"uniform"`, log K nats per code as the paper's training assumes) or a learned
      prior over codes (`VQPriorForCausalLM` or `PixelCNNPriorModel`, with `class_labels` (N,) if it is
      class-conditional). Returns `bits_per_dim` and its parts `reconstruction_bits_per_dim` and `prior_bits_per_dim`.
    - VAEs: the importance-weighted bound (Burda et al. 2016) with `num_samples` posterior samples per image,
      -log (1/k sum_i p(x|z_i) p(z_i) / q(z_i|x)) / (D ln 2), and the ELBO (`elbo_bits_per_dim`, with the KL in closed
      form). The bound tightens as k grows; k=1 gives the ELBO in expectation. `generator` seeds the samples.

    `decoder_scale`: the Gaussian's standard deviation in [-1, 1] units; None fits it to the set (sqrt of the mean
    squared error of the reconstructions, the maximum-likelihood value); the one used is returned too. With
    `progress`, a tqdm bar over the batches on stderr when stderr is a terminal.
    """
    _check_scale(decoder_scale)
    images = torch.cat([batch.cpu() for batch in image_batches(images, batch_size)])
    if not hasattr(model, "encode_indices") and encodes_a_posterior(model, images[:1]):
        if not isinstance(prior, str) or class_labels is not None:
            raise UsageError("a VAE's prior is its own N(0, I): pass neither `prior` nor `class_labels`")
        return _vae_bits_per_dim(model, images, decoder_scale, batch_size, num_samples, generator, progress)
    if not hasattr(model, "encode_indices"):
        raise UsageError(
            f"bits_per_dim takes a VQ model or a VAE; got {type(model).__name__} (a deterministic autoencoder has no "
            "likelihood)"
        )
    _check_prior(model, prior, class_labels, len(images), resolution=images.shape[-1])
    return _vq_bits_per_dim(model, images, prior, class_labels, decoder_scale, batch_size, progress)


def _check_prior(
    model: torch.nn.Module,
    prior: torch.nn.Module | str,
    class_labels: torch.Tensor | None,
    num_images: int,
    resolution: int,
) -> None:
    if isinstance(prior, str):
        if prior != "uniform":
            raise UsageError(f"`prior` must be 'uniform' or a prior over codes (GPT or PixelCNN), got {prior!r}")
    else:
        prior.check_vq_model(model, resolution)  # its codebook size, and its code grid at the images' size
        if prior.config.is_class_conditional and class_labels is None:
            raise UsageError("the prior is class-conditional: pass the `class_labels` of the images")
    if class_labels is not None and len(class_labels) != num_images:
        raise UsageError(f"got {len(class_labels)} class labels for {num_images} images")


def _vq_bits_per_dim(
    model: torch.nn.Module,
    images: torch.Tensor,
    prior: torch.nn.Module | str,
    class_labels: torch.Tensor | None,
    decoder_scale: float | None,
    batch_size: int,
    progress: bool,
) -> dict[str, float]:
    reconstructions, prior_nats = [], []
    label = f"bits/dim ({'uniform' if isinstance(prior, str) else 'learned'} prior)" if progress else None
    with evaluating(model):
        starts = range(0, len(images), batch_size)
        for start, batch in zip(starts, image_batches(images, batch_size, label), strict=True):
            batch = batch.to(module_device(model))
            indices = model.encode_indices(batch)
            reconstructions.append(model.decode_indices(indices).float().cpu())
            if isinstance(prior, str):  # uniform: log K nats per code
                codes = indices[0].numel()
                prior_nats.append(torch.full((len(batch),), codes * math.log(model.config.num_vq_embeddings)))
            else:
                labels = None if class_labels is None else class_labels[start : start + batch_size]
                prior_nats.append(-prior.log_prob_codes(indices.to(prior.device), labels).cpu())
    reconstruction = torch.cat(reconstructions)
    decoder_scale = decoder_scale or _fitted_scale(reconstruction, images)
    reconstruction_nats = -discretized_gaussian_log_likelihood(images, reconstruction, decoder_scale)
    dims_ln2 = images[0].numel() * math.log(2)
    reconstruction_bits = reconstruction_nats.mean().item() / dims_ln2
    prior_bits = torch.cat(prior_nats).mean().item() / dims_ln2
    return {
        "bits_per_dim": reconstruction_bits + prior_bits,
        "reconstruction_bits_per_dim": reconstruction_bits,
        "prior_bits_per_dim": prior_bits,
        "decoder_scale": decoder_scale,
    }


def _vae_bits_per_dim(
    model: torch.nn.Module,
    images: torch.Tensor,
    decoder_scale: float | None,
    batch_size: int,
    num_samples: int,
    generator: torch.Generator | None,
    progress: bool,
) -> dict[str, float]:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise UsageError(f"`num_samples` must be a positive integer, got {num_samples!r}")
    device = module_device(model)
    with evaluating(model):
        if decoder_scale is None:  # fitted to the reconstructions from the posterior means
            means = [
                model(batch.to(device), sample_posterior=False).reconstruction.cpu()
                for batch in images.split(batch_size)
            ]
            decoder_scale = _fitted_scale(torch.cat(means), images)
        iwae, elbo = [], []
        # Each decoder call takes about `batch_size` latents: a few images, each with a chunk of its k samples.
        images_per_batch = max(1, batch_size // num_samples)
        samples_per_call = max(1, batch_size // images_per_batch)
        for batch in image_batches(images, images_per_batch, "bits/dim (importance samples)" if progress else None):
            batch = batch.to(device)
            posterior = model.encode(batch)
            log_weights, expected_log_likelihood = [], 0.0
            for start in range(0, num_samples, samples_per_call):
                k = min(samples_per_call, num_samples - start)
                eps = torch.randn((k, *posterior.mean.shape), generator=generator, device=device)
                z = posterior.mean + posterior.std * eps  # (k, B, C, h, w)
                decoded = model.decode(z.flatten(0, 1)).float()
                targets = batch.expand(k, *batch.shape).flatten(0, 1)
                log_likelihood = discretized_gaussian_log_likelihood(targets, decoded, decoder_scale).view(k, -1)
                # log p(z) - log q(z|x): standard normal against the posterior; the 0.5 log(2 pi) terms cancel.
                log_prior = -0.5 * z.pow(2).flatten(2).sum(-1)
                log_posterior = -0.5 * (eps.pow(2) + posterior.logvar).flatten(2).sum(-1)
                log_weights.append(log_likelihood + log_prior - log_posterior)
                expected_log_likelihood = expected_log_likelihood + log_likelihood.sum(0)
            iwae.append((torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(num_samples)).cpu())
            elbo.append((expected_log_likelihood / num_samples - posterior.kl()).cpu())
    dims_ln2 = images[0].numel() * math.log(2)
    return {
        "bits_per_dim": -torch.cat(iwae).mean().item() / dims_ln2,
        "elbo_bits_per_dim": -torch.cat(elbo).mean().item() / dims_ln2,
        "num_samples": num_samples,
        "decoder_scale": decoder_scale,
    }
