"""Evaluation metrics for image autoencoders. Images are float tensors in [-1, 1], (B, C, H, W).

Set-level metrics (codebook usage, active units, KL per channel, bits/dim, FID) take a whole evaluation set: a tensor
of images, or an iterable of batches (tensors, or dicts with `pixel_values` as `hf_vq.data` yields them), and
accumulate over all of it, never one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from .losses.lpips import LPIPS, load_lpips
from .models.vae import VAEModel
from .modules.distributions import DiagonalGaussian
from .modules.quantizers import code_statistics
from .utils.torch_utils import evaluating, module_device

ImageSet = torch.Tensor | Iterable[torch.Tensor] | Iterable[dict[str, torch.Tensor]]


def image_batches(images: ImageSet, batch_size: int = 64) -> Iterator[torch.Tensor]:
    """The batches (B, C, H, W) of an evaluation set; a `ValueError` for an empty set or images of another shape."""
    batches = images.split(batch_size) if isinstance(images, torch.Tensor) else images
    shape, count = None, 0
    for batch in batches:
        batch = batch["pixel_values"] if isinstance(batch, dict) else batch
        if batch.ndim != 4:
            raise ValueError(f"expected batches of images (B, C, H, W), got shape {tuple(batch.shape)}")
        if shape is not None and batch.shape[1:] != shape:
            raise ValueError(f"images of different sizes in one set: {tuple(shape)} and {tuple(batch.shape[1:])}")
        shape, count = batch.shape[1:], count + len(batch)
        yield batch
    if count == 0:
        raise ValueError("the evaluation set is empty")


def _check_pair(reconstruction: torch.Tensor, target: torch.Tensor, what: str) -> None:
    if reconstruction.shape != target.shape:
        raise ValueError(f"{what}: shapes differ: {tuple(reconstruction.shape)} and {tuple(target.shape)}")


def psnr(reconstruction: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image, in dB: (B,).

    `10 * log10(data_range ** 2 / MSE)`; `data_range` is 2 for images in [-1, 1] (so the figure equals the usual
    PSNR of the same images in [0, 1] or [0, 255]). Reconstructions are clipped to the valid range first, as
    they would be when saved as images.
    """
    _check_pair(reconstruction, target, "psnr")
    if reconstruction.ndim < 2:
        raise ValueError(f"expected a batch of images (B, ...), got shape {tuple(reconstruction.shape)}")
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
    _check_pair(reconstruction, target, "ssim")
    if reconstruction.ndim != 4:
        raise ValueError(f"ssim takes images (B, C, H, W), got shape {tuple(reconstruction.shape)}")
    window = gaussian_window(sigma).to(reconstruction.device)
    size, channels = window.shape[0], reconstruction.shape[1]
    if min(reconstruction.shape[-2:]) < size:
        raise ValueError(f"ssim needs images of at least {size}x{size} pixels, got {tuple(reconstruction.shape[-2:])}")
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
    _check_pair(reconstruction, target, "lpips_distance")
    model = lpips if isinstance(lpips, LPIPS) else load_lpips(lpips)
    device = next(model.parameters()).device
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


def codebook_usage(indices: torch.Tensor, num_embeddings: int) -> float:
    """Fraction of the `num_embeddings` codes that occur at least once in `indices` (a whole evaluation set)."""
    return (code_histogram(indices, num_embeddings) > 0).float().mean().item()


def codebook_perplexity(indices: torch.Tensor, num_embeddings: int) -> float:
    """exp(entropy) of the code histogram of `indices`: K for uniform use, 1 for a single code."""
    return code_statistics(code_histogram(indices, num_embeddings))[0].item()


def _check_vq_model(model: torch.nn.Module, what: str) -> None:
    if not hasattr(model, "encode_indices"):
        raise ValueError(f"{what} takes a VQ model (with encode_indices); got {type(model).__name__}")


@torch.no_grad()
def codebook_statistics(model: torch.nn.Module, images: ImageSet, batch_size: int = 64) -> dict[str, float]:
    """How a VQ model uses its codebook over a whole evaluation set: `codebook_usage` (fraction of the K codes that
    occur), `codebook_perplexity` (exp of the entropy of the code histogram), `codes_used`, `num_codes`."""
    _check_vq_model(model, "codebook_statistics")
    num_codes = model.config.num_vq_embeddings
    counts = torch.zeros(num_codes, dtype=torch.long)
    with evaluating(model):
        for batch in image_batches(images, batch_size):
            counts += code_histogram(model.encode_indices(batch.to(module_device(model))).cpu(), num_codes)
    perplexity, usage = code_statistics(counts)
    return {
        "codebook_usage": usage.item(),
        "codebook_perplexity": perplexity.item(),
        "codes_used": int((counts > 0).sum()),
        "num_codes": num_codes,
    }


@torch.no_grad()
def reconstruction_metrics(
    model: torch.nn.Module, images: ImageSet, batch_size: int = 64, lpips: LPIPS | None = None
) -> dict[str, float]:
    """Held-out metrics of an autoencoder over a whole set of images in [-1, 1], in eval mode.

    Always `psnr` and `ssim` (means over images); `lpips` with an `LPIPS` module; for VQ models `codebook_usage` and
    `codebook_perplexity` over the whole set (not one batch); for VAEs the mean `kl` per image in nats.
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
                histogram = code_histogram(output.indices.cpu(), model.config.num_vq_embeddings)
                counts = histogram if counts is None else counts + histogram
            if getattr(output, "kl", None) is not None:
                scores["kl"].append(output.kl.cpu())
    metrics = {name: torch.cat(values).mean().item() for name, values in scores.items() if values}
    metrics["num_images"] = count
    if counts is not None:
        perplexity, usage = code_statistics(counts)
        metrics["codebook_usage"], metrics["codebook_perplexity"] = usage.item(), perplexity.item()
    return metrics


def _posterior_mean(model: torch.nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, DiagonalGaussian | None]:
    """The latent an image maps to (the posterior mean of a VAE; a VQ model's latent before quantization) and, for
    a VAE, the posterior."""
    encoded = model.encode(batch)
    if isinstance(encoded, DiagonalGaussian):
        return encoded.mean, encoded
    return encoded, None


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
    first = second = kl_sum = None
    count = 0
    with evaluating(model):
        for batch in image_batches(images, batch_size):
            mean, posterior = _posterior_mean(model, batch.to(module_device(model)))
            mean = mean.double().cpu()  # (B, C, h, w)
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
    if not isinstance(model, VAEModel):
        raise ValueError(f"kl_per_channel takes a VAE; got {type(model).__name__}")
    return latent_statistics(model, images, batch_size=batch_size)["kl_per_channel"]


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


def _fitted_scale(reconstruction: torch.Tensor, images: torch.Tensor) -> float:
    """The maximum-likelihood scale of a Gaussian decoder with one global scale: sqrt of the mean squared error."""
    return max((reconstruction.float() - images.float()).pow(2).mean().sqrt().item(), 1e-3)


def _check_scale(decoder_scale: float | None) -> None:
    if decoder_scale is not None and not decoder_scale > 0:
        raise ValueError(f"`decoder_scale` must be > 0, got {decoder_scale}")


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
) -> dict[str, float]:
    """Negative log-likelihood bound in bits per dimension over a held-out set, comparable to the VQ-VAE paper's
    figures on 8-bit data: the decoder is a Gaussian around the decoded image with one global `decoder_scale`,
    discretized to 256 levels (`discretized_gaussian_log_likelihood`). D = C * H * W.

    - VQ models: -(log p(x | z_q) + log p(z)) / (D ln 2) with the codes z of each image and `prior` either the
      uniform prior over the K codes (`"uniform"`, log K nats per code as the paper's training assumes) or a learned
      `VQPriorForCausalLM` (with `class_labels` (N,) if it is class-conditional). Returns `bits_per_dim` and its
      parts `reconstruction_bits_per_dim` and `prior_bits_per_dim`.
    - VAEs: the importance-weighted bound (Burda et al. 2016) with `num_samples` posterior samples per image,
      -log (1/k sum_i p(x|z_i) p(z_i) / q(z_i|x)) / (D ln 2), and the ELBO (`elbo_bits_per_dim`, with the KL in closed
      form). The bound tightens as k grows; k=1 gives the ELBO in expectation. `generator` seeds the samples.

    `decoder_scale`: the Gaussian's standard deviation in [-1, 1] units; None fits it to the set (sqrt of the mean
    squared error of the reconstructions, the maximum-likelihood value); the one used is returned too.
    """
    _check_scale(decoder_scale)
    images = torch.cat([batch.cpu() for batch in image_batches(images, batch_size)])
    if isinstance(model, VAEModel):
        if not isinstance(prior, str) or class_labels is not None:
            raise ValueError("a VAE's prior is its own N(0, I): pass neither `prior` nor `class_labels`")
        return _vae_bits_per_dim(model, images, decoder_scale, batch_size, num_samples, generator)
    if not hasattr(model, "encode_indices"):
        raise ValueError(
            f"bits_per_dim takes a VQ model or a VAE; got {type(model).__name__} (a deterministic autoencoder has no "
            "likelihood)"
        )
    if isinstance(prior, str):
        if prior != "uniform":
            raise ValueError(f"`prior` must be 'uniform' or a VQPriorForCausalLM, got {prior!r}")
    else:
        prior.check_vq_model(model)
        if prior.config.is_class_conditional and class_labels is None:
            raise ValueError("the prior is class-conditional: pass the `class_labels` of the images")
    if class_labels is not None and len(class_labels) != len(images):
        raise ValueError(f"got {len(class_labels)} class labels for {len(images)} images")
    reconstructions, prior_nats = [], []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(module_device(model))
            indices = model.encode_indices(batch)
            reconstructions.append(model.decode_indices(indices).float().cpu())
            if isinstance(prior, str):
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
    model: VAEModel,
    images: torch.Tensor,
    decoder_scale: float | None,
    batch_size: int,
    num_samples: int,
    generator: torch.Generator | None,
) -> dict[str, float]:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}")
    device = module_device(model)
    with evaluating(model):
        if decoder_scale is None:  # fitted to the reconstructions from the posterior means
            means = [
                model(batch.to(device), sample_posterior=False).reconstruction.cpu()
                for batch in images.split(batch_size)
            ]
            decoder_scale = _fitted_scale(torch.cat(means), images)
        iwae, elbo = [], []
        # Each decoder call takes `per_call` latents: a few images, each with a chunk of its k samples.
        images_per_batch = max(1, batch_size // num_samples)
        samples_per_call = max(1, batch_size // images_per_batch)
        for batch in images.split(images_per_batch):
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


# ----- Frechet distance (FID, rFID) -----


def frechet_distance(mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """Frechet distance between two Gaussians: |m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    The trace of the matrix square root is taken as the sum of the square roots of the eigenvalues of the symmetric
    S_a^(1/2) S_b S_a^(1/2), which has the same spectrum as S_a S_b and stays real where `scipy.linalg.sqrtm` of
    the product can turn complex.
    """
    mean_a, mean_b, cov_a, cov_b = (t.double() for t in (mean_a, mean_b, cov_a, cov_b))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mean_a), len(mean_a)):
        raise ValueError(f"frechet_distance: means {tuple(mean_a.shape)}, {tuple(mean_b.shape)} and covariances "
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
        raise ValueError("feature statistics need at least 2 images")
    mean = total / count
    return mean, (outer - count * torch.outer(mean, mean)) / (count - 1)


def fid(
    images_a: ImageSet, images_b: ImageSet, extractor: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 64
) -> float:
    """Frechet distance between the feature statistics of two image sets; FID with `extractor` an Inception network
    (`hf_vq.inception.load_inception`)."""
    return frechet_distance(
        *feature_statistics(extractor, images_a, batch_size), *feature_statistics(extractor, images_b, batch_size)
    )


@torch.no_grad()
def rfid(
    model: torch.nn.Module, images: ImageSet, extractor: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 64
) -> float:
    """Reconstruction FID: `fid` between a set of images and the model's reconstructions of them."""
    originals, reconstructions = [], []
    with evaluating(model):
        for batch in image_batches(images, batch_size):
            originals.append(batch.cpu())
            reconstructions.append(model(batch.to(module_device(model))).reconstruction.clamp(-1, 1).float().cpu())
    return fid(torch.cat(originals), torch.cat(reconstructions), extractor, batch_size)
