"""Evaluation metrics for image autoencoders. Images are float tensors in [-1, 1], (B, C, H, W).

Set-level metrics (codebook usage, active units, KL per channel, bits/dim, FID) take a whole evaluation set: a tensor
of images, or an iterable of batches (tensors, or dicts with `pixel_values` as `hf_vq.data` yields them), and
accumulate over all of it, never one batch. Metrics take tensors and models; they import no loss and no model class.
"""

from ..utils.torch_utils import evaluating
from .fid import feature_statistics, fid, frechet_distance, rfid
from .likelihood import bits_per_dim, discretized_gaussian_log_likelihood
from .posterior import active_units, encodes_a_posterior, kl_per_channel, latent_statistics
from .reconstruction import (
    ImageSet,
    code_histogram,
    codebook_histograms,
    codebook_perplexity,
    codebook_statistics,
    codebook_usage,
    gaussian_window,
    image_batches,
    lpips_distance,
    psnr,
    reconstruction_metrics,
    ssim,
)
from .report import evaluation_report
from .sequence import sequence_metrics

__all__ = [
    "active_units",
    "bits_per_dim",
    "code_histogram",
    "codebook_histograms",
    "codebook_perplexity",
    "codebook_statistics",
    "codebook_usage",
    "discretized_gaussian_log_likelihood",
    "encodes_a_posterior",
    "evaluating",
    "evaluation_report",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "gaussian_window",
    "image_batches",
    "ImageSet",
    "kl_per_channel",
    "latent_statistics",
    "lpips_distance",
    "psnr",
    "reconstruction_metrics",
    "rfid",
    "sequence_metrics",
    "ssim",
]
