"""Frechet distances between feature statistics of image sets: FID and reconstruction FID (rFID), with the FID
Inception-v3 (`hf_vq.metrics.inception`) or any feature extractor."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..utils.errors import UsageError
from ..utils.torch_utils import evaluating, module_device
from .reconstruction import ImageSet, image_batches


def frechet_distance(mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Frechet distance between two Gaussians: |m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    The trace of the matrix square root is taken as the sum of the square roots of the eigenvalues of the symmetric
    S_a^(1/2) S_b S_a^(1/2), which has the same spectrum as S_a S_b and stays real where `scipy.linalg.sqrtm` of
    the product can turn complex.
    """
    mean_a, mean_b, cov_a, cov_b = (t.double() for t in (mean_a, mean_b, cov_a, cov_b))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mean_a), len(mean_a)):
        raise UsageError(f"frechet_distance: means {tuple(mean_a.shape)}, {tuple(mean_b.shape)} and covariances "
                         f"{tuple(cov_a.shape)}, {tuple(cov_b.shape)} do not match")  # fmt: skip
    values, vectors = torch.linalg.eigh((cov_a + cov_a.T) / 2)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return ((mean_a - mean_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_root).item()


@torch.no_grad()
def feature_statistics(
    extractor: Callable[[torch.Tensor], torch.Tensor], images: ImageSet, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and covariance (D, D) (unbiased, float64) of `extractor`'s features (B, D) over a set of images."""
    total = outer = None
    count = 0
    for batch in image_batches(images, batch_size):
        features = extractor(batch).double().flatten(1).cpu()
        total = features.sum(0) if total is None else total + features.sum(0)
        outer = features.T @ features if outer is None else outer + features.T @ features
        count += len(features)
    if count < 2:
        raise UsageError("feature statistics need at least 2 images")
    mean = total / count
    return mean, (outer - count * torch.outer(mean, mean)) / (count - 1)


def fid(
    images_a: ImageSet, images_b: ImageSet, extractor: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 64
) -> float:
    """Frechet distance between the feature statistics of two image sets; FID with `extractor` an Inception network
    (`hf_vq.metrics.inception.load_inception`)."""
    return frechet_distance(
        *feature_statistics(extractor, images_a, batch_size), *feature_statistics(extractor, images_b, batch_size)
    )


@torch.no_grad()
def rfid(
    model: torch.nn.Module,
    images: ImageSet,
    extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 64,
    progress: bool = False,
) -> float:
    """Reconstruction FID: `fid` between a set of images and the model's reconstructions of them. With `progress`,
    each pass shows a tqdm bar on stderr when stderr is a terminal."""

    def batches(images: ImageSet, label: str) -> ImageSet:
        return image_batches(images, batch_size, label if progress else None)

    originals, reconstructions = [], []
    with evaluating(model):
        for batch in batches(images, "rFID reconstructions"):
            originals.append(batch.cpu())
            reconstructions.append(model(batch.to(module_device(model))).reconstruction.clamp(-1, 1).float().cpu())
    originals, reconstructions = torch.cat(originals), torch.cat(reconstructions)
    return fid(batches(originals, "rFID features of the images"),
               batches(reconstructions, "rFID features of the reconstructions"), extractor, batch_size)  # fmt: skip
