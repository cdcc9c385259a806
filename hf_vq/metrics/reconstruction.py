"""Reconstruction metrics of image autoencoders: PSNR, SSIM, LPIPS distance, codebook usage and perplexity, and all
of them over a whole evaluation set (`reconstruction_metrics`). Images are float tensors in [-1, 1], (B, C, H, W)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..modules.lpips import LPIPS, load_lpips
from ..modules.quantizers import code_statistics
from ..utils.errors import UsageError
from ..utils.torch_utils import check_same_shape, evaluating, module_device

ImageSet = torch.Tensor | Iterable[torch.Tensor] | Iterable[dict[str, torch.Tensor]]


def image_batches(images: ImageSet, batch_size: int = 64, progress: str | None = None) -> Iterator[torch.Tensor]:
    """The batches (B, C, H, W) of an evaluation set; a `ValueError` for an empty set or images of another shape.
    With `progress` (a label), a tqdm bar over the batches on stderr when stderr is a terminal."""
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    if progress is not None:
        batches = tqdm(batches, desc=progress, unit="batch", disable=None)  # disable=None: off unless a terminal
    shape, count = None, 0
    for batch in batches:
        batch = batch["pixel_values"] if isinstance(batch, dict) else batch
        if batch.ndim != 4:
            raise UsageError(f"expected batches of images (B, C, H, W), got shape {tuple(batch.shape)}")
        if shape is not None and batch.shape[1:] != shape:
            raise UsageError(f"images of different sizes in one set: {tuple(shape)} and {tuple(batch.shape[1:])}")
        shape, count = batch.shape[1:], count + len(batch)
        yield batch
    if count == 0:
        raise UsageError("the evaluation set is empty")


def psnr(reconstruction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image, in dB: (B,).

    `10 * log10(data_range ** 2 / MSE)`; `data_range` is 2 for images in [-1, 1] (so the figure equals the usual
    PSNR of the same images in [0, 1] or [0, 255]). Reconstructions are clipped to the valid range first, as
    they would be when saved as images.
    """
    check_same_shape(reconstruction, target, "psnr")
    if reconstruction.ndim < 2:
        raise UsageError(f"expected a batch of images (B, ...), got shape {tuple(reconstruction.shape)}")
    low = -data_range / 2
    clipped = reconstruction.detach().float().clamp(low, low + data_range)
    mse = (clipped - target.detach().float()).pow(2).flatten(1).mean(dim=1)  # (B,)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """The normalized 2-D Gaussian window (S, S) of SSIM, S = 2 * int(truncate * sigma + 0.5) + 1 (11 for 1.5)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 2.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity of each image (B,) (Wang et al. 2004): local means, variances and covariance under a
    Gaussian window (`sigma` 1.5, 11x11), per channel, averaged over the positions where the window fits and over
    channels. The same figure as scikit-image's `structural_similarity(gaussian_weights=True,
    use_sample_covariance=False)`. Reconstructions are clipped to the valid range first, as in `psnr`."""
    check_same_shape(reconstruction, target, "ssim")
    if reconstruction.ndim != 4:
        raise UsageError(f"ssim takes images (B, C, H, W), got shape {tuple(reconstruction.shape)}")
    window = gaussian_window(sigma).to(reconstruction.device)
    size, channels = window.shape[0], reconstruction.shape[1]
    if min(reconstruction.shape[-2:]) < size:
        raise UsageError(f"ssim needs images of at least {size}x{size} pixels, got {tuple(reconstruction.shape[-2:])}")
    low = -data_range / 2
    x = reconstruction.detach().double().clamp(low, low + data_range)
    y = target.detach().double()
    weights = window.expand(channels, 1, size, size)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, weights, groups=channels)  # (B, C, H - S + 1, W - S + 1)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).float()


def lpips_distance(
    reconstruction: torch.Tensor, target: torch.Tensor, lpips: LPIPS | str, batch_size: int = 64
) -> torch.Tensor:
    """LPIPS distance of each image pair (B,). `lpips`: an `LPIPS` module or its weights (a safetensors file, folder
    or Hub repo, as `--lpips_weights`; pretrained weights cannot be downloaded here, see
    scripts/convert_lpips_weights.py)."""
    check_same_shape(reconstruction, target, "lpips_distance")
    model = lpips if isinstance(lpips, LPIPS) else load_lpips(lpips)
    device = module_device(model)
    with torch.no_grad():
        return torch.cat(
            [
                model(a.to(device), b.to(device)).cpu()
                for a, b in zip(reconstruction.split(batch_size), target.split(batch_size), strict=True)
            ]
        )


def code_histogram(indices: torch.Tensor, num_embeddings: int) -> torch.Tensor:
    """Counts of each code (K,) in a tensor of code indices of any shape."""
    return torch.bincount(indices.reshape(-1).long(), minlength=num_embeddings)


def codebook_histograms(indices: torch.Tensor, num_embeddings: int, num_codebooks: int = 1) -> torch.Tensor:
    """Counts of each code of each codebook (num_codebooks, K): of every index for one codebook (indices of any
    shape), of the k-th index of each position for separate codebooks (indices (..., num_codebooks), residual
    quantization's stages last)."""
    if num_codebooks == 1:
        return code_histogram(indices, num_embeddings)[None]
    if indices.shape[-1] != num_codebooks:
        raise ValueError(
            f"indices of {num_codebooks} codebooks must have them last, (..., {num_codebooks}); "
            f"got {tuple(indices.shape)}"
        )
    stages = indices.reshape(-1, num_codebooks).long()
    return torch.stack([torch.bincount(stages[:, k], minlength=num_embeddings) for k in range(num_codebooks)])


def codebook_usage(indices: torch.Tensor, num_embeddings: int) -> float:
    """Fraction of the `num_embeddings` codes that occur at least once in `indices` (a whole evaluation set)."""
    return (code_histogram(indices, num_embeddings) > 0).float().mean().item()


def codebook_perplexity(indices: torch.Tensor, num_embeddings: int) -> float:
    """exp(entropy) of the code histogram of `indices`: K for uniform use, 1 for a single code."""
    return code_statistics(code_histogram(indices, num_embeddings))[0].item()


def _check_vq_model(model: torch.nn.Module, what: str) -> None:
    if not hasattr(model, "encode_indices"):
        raise UsageError(f"{what} takes a VQ model (with encode_indices); got {type(model).__name__}")


@torch.no_grad()
def codebook_statistics(model: torch.nn.Module, images: ImageSet, batch_size: int = 64) -> dict[str, float]:
    """How a VQ model uses its codebook over a whole evaluation set: `codebook_usage` (fraction of the K codes that
    occur), `codebook_perplexity` (exp of the entropy of the code histogram), `codes_used`, `num_codes`. With
    separate codebooks (residual quantization's stages), each is taken per codebook: the usage and perplexity are
    their means, the codes counted over all of them."""
    _check_vq_model(model, "codebook_statistics")
    config = model.config
    counts = torch.zeros(config.num_codebooks, config.num_vq_embeddings, dtype=torch.long)
    with evaluating(model):
        for batch in image_batches(images, batch_size):
            indices = model.encode_indices(batch.to(module_device(model))).cpu()
            counts += codebook_histograms(indices, config.num_vq_embeddings, config.num_codebooks)
    perplexity, usage = code_statistics(counts)
    return {
        "codebook_usage": usage.item(),
        "codebook_perplexity": perplexity.item(),
        "codes_used": int((counts > 0).sum()),
        "num_codes": counts.numel(),
    }


@torch.no_grad()
def reconstruction_metrics(
    model: torch.nn.Module, images: ImageSet, batch_size: int = 64, lpips: LPIPS | None = None
) -> dict[str, float]:
    """Held-out metrics of an autoencoder over a whole set of images in [-1, 1], in eval mode.

    Always `psnr` and `ssim` (means over images); `lpips` with an `LPIPS` module; for VQ models `codebook_usage` and
    `codebook_perplexity` over the whole set (not one batch; with separate codebooks, the means of theirs, as
    `codebook_statistics`); for VAEs the mean `kl` per image in nats.
    """
    scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "lpips": [], "kl": []}
    counts, count = None, 0
    with evaluating(model):
        for batch in image_batches(images, batch_size):
            batch = batch.to(module_device(model))
            output = model(batch)
            count += len(batch)
            scores["psnr"].append(psnr(output.reconstruction, batch).cpu())
            if min(batch.shape[-2:]) >= gaussian_window().shape[0]:
                scores["ssim"].append(ssim(output.reconstruction, batch).cpu())
            if lpips is not None:
                scores["lpips"].append(lpips_distance(output.reconstruction, batch, lpips))
            if getattr(output, "indices", None) is not None:
                histogram = codebook_histograms(
                    output.indices.cpu(), model.config.num_vq_embeddings, model.config.num_codebooks
                )
                counts = histogram if counts is None else counts + histogram
            if getattr(output, "kl", None) is not None:
                scores["kl"].append(output.kl.cpu())
    metrics = {name: torch.cat(values).mean().item() for name, values in scores.items() if values}
    metrics["num_images"] = count
    if counts is not None:
        perplexity, usage = code_statistics(counts)
        metrics["codebook_usage"], metrics["codebook_perplexity"] = usage.item(), perplexity.item()
    return metrics
