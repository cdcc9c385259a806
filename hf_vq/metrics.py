"""Evaluation metrics for image autoencoders. Images are float tensors in [-1, 1], (B, C, H, W)."""

from __future__ import annotations

import torch


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
