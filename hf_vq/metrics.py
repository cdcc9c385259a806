"""Evaluation metrics for image autoencoders. Images are float tensors in [-1, 1], (B, C, H, W)."""

from __future__ import annotations

import math

import torch

from .modules.quantizers import code_statistics


def psnr(reconstruction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image, in dB: (B,).

    `10 * log10(data_range ** 2 / MSE)`; `data_range` is 2 for images in [-1, 1] (so the figure equals the usual
    PSNR of the same images in [0, 1] or [0, 255]). Reconstructions are clipped to the valid range first, as
    they would be when saved as images.
    """
    if reconstruction.shape != target.shape:
        raise ValueError(f"shapes differ: reconstruction {tuple(reconstruction.shape)}, target {tuple(target.shape)}")
    if reconstruction.ndim < 2:
        raise ValueError(f"expected a batch of images (B, ...), got shape {tuple(reconstruction.shape)}")
    low = -data_range / 2
    clipped = reconstruction.detach().float().clamp(low, low + data_range)
    mse = (clipped - target.detach().float()).pow(2).flatten(1).mean(dim=1)  # (B,)
    return 10.0 * torch.log10(data_range**2 / mse)


def code_histogram(indices: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    """Counts of each code (K,) in a tensor of code indices of any shape."""
    return torch.bincount(indices.reshape(-1).long(), minlength=num_embeddings)


def codebook_usage(indices: torch.Tensor, num_embeddings: int) -> float:
    """Fraction of the `num_embeddings` codes that occur at least once in `indices` (a whole evaluation set)."""
    return (code_histogram(indices, num_embeddings) > 0).float().mean().item()


def codebook_perplexity(indices: torch.Tensor, num_embeddings: int) -> float:
    """exp(entropy) of the code histogram of `indices`: K for uniform use, 1 for a single code."""
    return code_statistics(code_histogram(indices, num_embeddings))[0].item()


@torch.no_grad()
def reconstruction_metrics(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of an autoencoder over a whole set of images (B, C, H, W) in [-1, 1], in eval mode.

    Always `psnr` (mean over images, dB); for VQ models `codebook_usage` and `codebook_perplexity` over the whole
    set (not one batch); for VAEs the mean `kl` per image in nats.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    scores, indices, kls = [], [], []
    for batch in images.split(batch_size):
        batch = batch.to(device)
        output = model(batch)
        scores.append(psnr(output.reconstruction, batch).cpu())
        if getattr(output, "indices", None) is not None:
            indices.append(output.indices.cpu())
        if getattr(output, "kl", None) is not None:
            kls.append(output.kl.cpu())
    model.train(was_training)
    metrics = {"psnr": torch.cat(scores).mean().item(), "num_images": len(images)}
    if indices:
        num_embeddings = model.config.num_vq_embeddings
        metrics["codebook_usage"] = codebook_usage(torch.cat(indices), num_embeddings)
        metrics["codebook_perplexity"] = codebook_perplexity(torch.cat(indices), num_embeddings)
    if kls:
        metrics["kl"] = torch.cat(kls).mean().item()
    return metrics


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
        raise ValueError(f"shapes differ: images {tuple(images.shape)}, mean {tuple(mean.shape)}")
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


@torch.no_grad()
def bits_per_dim(
    model: torch.nn.Module,
    images: torch.Tensor,
    prior: torch.nn.Module | str = "uniform",
    class_labels: torch.Tensor | None = None,
    decoder_scale: float | None = None,
    batch_size: int = 64,
) -> dict[str, float]:
    """The VQ-VAE bound in bits per dimension over a held-out set: -(log p(x | z_q) + log p(z)) / (D ln 2).

    `z` are the codes of each image, `p(x | z_q)` a Gaussian around the decoded image with a global `scale`,
    discretized to 8-bit levels (`discretized_gaussian_log_likelihood`), and `p(z)` either the uniform prior over the
    K codes (`prior="uniform"`, log K nats per code as the paper's training objective assumes) or a learned
    `VQPriorForCausalLM` (with `class_labels` (N,) if it is class-conditional). D = C * H * W.

    `decoder_scale`: the Gaussian's standard deviation in [-1, 1] units; None fits it to the set (the maximum
    likelihood value, sqrt of the mean squared error), a single number. Returns `bits_per_dim` and its two parts,
    `reconstruction_bits_per_dim` and `prior_bits_per_dim`, plus the `decoder_scale` used.
    """
    if not hasattr(model, "encode_indices"):
        raise ValueError(f"bits_per_dim takes a VQ model (with encode_indices); got {type(model).__name__}")
    if isinstance(prior, str):
        if prior != "uniform":
            raise ValueError(f"`prior` must be 'uniform' or a VQPriorForCausalLM, got {prior!r}")
    else:
        prior.check_vq_model(model)
        if prior.config.is_class_conditional and class_labels is None:
            raise ValueError("the prior is class-conditional: pass the `class_labels` of the images")
    if class_labels is not None and len(class_labels) != len(images):
        raise ValueError(f"got {len(class_labels)} class labels for {len(images)} images")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    reconstructions, prior_nats = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        indices = model.encode_indices(batch)
        reconstructions.append(model.decode_indices(indices).float().cpu())
        if isinstance(prior, str):
            prior_nats.append(torch.full((len(batch),), indices[0].numel() * math.log(model.config.num_vq_embeddings)))
        else:
            labels = None if class_labels is None else class_labels[start : start + batch_size]
            prior_nats.append(-prior.log_prob_codes(indices.to(prior.device), labels).cpu())
    model.train(was_training)
    reconstruction = torch.cat(reconstructions)
    if decoder_scale is None:
        decoder_scale = max((reconstruction - images.float()).pow(2).mean().sqrt().item(), 1e-3)
    elif decoder_scale <= 0:
        raise ValueError(f"`decoder_scale` must be > 0, got {decoder_scale}")
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
