"""Evaluation metrics for image autoencoders. Images are float tensors in [-1, 1], (B, C, H, W)."""

from __future__ import annotations

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
