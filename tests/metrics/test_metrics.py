"""Evaluation metrics against known values: SSIM, LPIPS distance, codebook usage over a set, active units and KL per
channel, the VAE's importance-weighted bits/dim, the Frechet distance and the FID Inception."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from scipy.stats import norm
from skimage.metrics import structural_similarity

import hf_vq
from hf_vq.metrics import (
    active_units,
    bits_per_dim,
    codebook_statistics,
    feature_statistics,
    fid,
    frechet_distance,
    image_batches,
    kl_per_channel,
    latent_statistics,
    lpips_distance,
    reconstruction_metrics,
    rfid,
    ssim,
)
from hf_vq.metrics.inception import FEATURES, FIDInceptionV3, load_inception
from hf_vq.modules.distributions import DiagonalGaussian
from hf_vq.modules.lpips import LPIPS

from ..conftest import vqgan


def photos(n: int = 4, size: int = 32, channels: int = 3) -> torch.Tensor:
    """Smooth test images in [-1, 1] (upsampled noise: structure at several scales)."""
    coarse = torch.rand(n, channels, size // 4, size // 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


# ----- SSIM and LPIPS -----


def test_ssim_of_an_image_with_itself_is_one_and_falls_with_noise():
    images = photos()
    assert torch.allclose(ssim(images, images), torch.ones(4), atol=1e-6)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    scores = [ssim((images + level * noise).clamp(-1, 1), images).mean().item() for level in (0.05, 0.2, 0.5)]
    assert 1 > scores[0] > scores[1] > scores[2] > 0


def test_ssim_equals_scikit_image():
    images = photos(n=2)
    noisy = (images + 0.2 * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    ours = ssim(noisy, images)
    for index in range(2):
        reference = structural_similarity(
            noisy[index].double().numpy(), images[index].double().numpy(), data_range=2.0, channel_axis=0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )  # fmt: skip
        assert ours[index].item() == pytest.approx(reference, abs=1e-5)


def test_ssim_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(photos(size=32), photos(size=16))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(photos(size=8), photos(size=8))


def test_lpips_distance_is_the_lpips_modules_distance_per_pair():
    lpips = LPIPS()  # random weights: the wiring, not the values, is under test here
    a, b = photos(n=3), photos(n=3).flip(0)
    distances = lpips_distance(a, b, lpips, batch_size=2)
    assert distances.shape == (3,)
    assert torch.allclose(distances, lpips(a, b), atol=1e-6)
    assert torch.allclose(lpips_distance(a, a, lpips), torch.zeros(3), atol=1e-6)


# ----- codebook usage over a set -----


def test_codebook_usage_over_a_set_equals_a_hand_count():
    model = vqgan().eval()
    images = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    indices = model.encode_indices(images)
    counts = torch.bincount(indices.flatten(), minlength=model.config.num_vq_embeddings)
    used = int((counts > 0).sum())
    probabilities = counts[counts > 0].double() / counts.sum()
    perplexity = math.exp(-(probabilities * probabilities.log()).sum().item())
    # In batches of 3 (and as an iterable of dict batches, as hf_vq.data yields them): the set, not one batch.
    for source in (images, [{"pixel_values": batch} for batch in images.split(3)]):
        statistics = codebook_statistics(model, source, batch_size=3)
        assert statistics["codes_used"] == used and statistics["num_codes"] == model.config.num_vq_embeddings
        assert statistics["codebook_usage"] == pytest.approx(used / model.config.num_vq_embeddings)
        assert statistics["codebook_perplexity"] == pytest.approx(perplexity, rel=1e-5)
    metrics = reconstruction_metrics(model, images, batch_size=3)
    assert metrics["codebook_usage"] == pytest.approx(used / model.config.num_vq_embeddings)
    assert metrics["num_images"] == 10 and 0 < metrics["ssim"] <= 1


@pytest.mark.parametrize("shared", [False, True])
def test_codebook_statistics_of_residual_quantization_are_per_codebook(shared):
    # Separate codebooks: stage k's index 5 is another code than stage j's; pooled, the stages' histograms would
    # count a code as used when any stage uses its number. A shared codebook is one histogram over every stage.
    model = vqgan(quantizer_type="residual", residual_depth=3, residual_shared_codebook=shared).eval()
    size = model.config.num_vq_embeddings
    images = photos(n=6, size=16)
    indices = model.encode_indices(images)  # (6, h, w, 3)
    histograms = (
        [torch.bincount(indices.flatten(), minlength=size)]
        if shared
        else [torch.bincount(indices[..., k].flatten(), minlength=size) for k in range(3)]
    )

    def perplexity(counts):
        probabilities = counts[counts > 0].double() / counts.sum()
        return math.exp(-(probabilities * probabilities.log()).sum().item())

    used = sum(int((counts > 0).sum()) for counts in histograms)
    statistics = codebook_statistics(model, images, batch_size=4)
    assert statistics["num_codes"] == size * len(histograms) and statistics["codes_used"] == used
    assert statistics["codebook_usage"] == pytest.approx(used / (size * len(histograms)))
    expected_perplexity = sum(perplexity(counts) for counts in histograms) / len(histograms)
    assert statistics["codebook_perplexity"] == pytest.approx(expected_perplexity, rel=1e-5)
    metrics = reconstruction_metrics(model, images, batch_size=4)
    assert metrics["codebook_usage"] == pytest.approx(statistics["codebook_usage"])
    assert metrics["codebook_perplexity"] == pytest.approx(expected_perplexity, rel=1e-5)


def test_sets_of_mixed_sizes_or_empty_sets_are_refused():
    with pytest.raises(ValueError, match="different sizes"):
        list(image_batches([photos(size=16), photos(size=32)]))
    with pytest.raises(ValueError, match="empty"):
        list(image_batches([]))
    with pytest.raises(ValueError, match="takes a VQ model"):
        codebook_statistics(hf_vq.VAEModel(hf_vq.VAEConfig(sample_size=16)), photos(size=16))


# ----- active units and KL per channel -----


class FixedPosteriorVAE(hf_vq.VAEModel):
    """A VAE whose posterior and decoder are set by hand, for closed forms: q(z|x) = N(mean(x), exp(logvar)) with
    mean(x) = `slopes` * (mean pixel of x) per channel, constant over positions; the decoder ignores z and outputs
    `output` everywhere."""

    def setup(self, slopes: torch.Tensor, logvar: torch.Tensor, output: float) -> "FixedPosteriorVAE":
        self.slopes, self.fixed_logvar, self.output = slopes, logvar, output
        return self.eval()

    def encode(self, pixel_values: torch.Tensor) -> DiagonalGaussian:
        size = self.config.latent_size
        level = pixel_values.mean(dim=(1, 2, 3))[:, None, None, None]  # (B, 1, 1, 1)
        mean = (self.slopes[None, :, None, None] * level).expand(-1, -1, size, size)
        return DiagonalGaussian(mean, self.fixed_logvar[None, :, None, None].expand_as(mean))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        channels, side = self.config.out_channels, self.config.sample_size
        return torch.full((len(latents), channels, side, side), self.output)


def fixed_vae(slopes, logvar, output=0.0) -> FixedPosteriorVAE:
    config = hf_vq.VAEConfig(in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1,
                             norm_num_groups=8, latent_channels=len(slopes), sample_size=8)  # fmt: skip
    return FixedPosteriorVAE(config).setup(torch.tensor(slopes), torch.tensor(logvar), output)


def test_active_units_and_kl_per_channel_match_closed_forms():
    # Channel 0 follows the image (active), channel 1 barely does, channel 2 is collapsed onto the prior.
    model = fixed_vae(slopes=[2.0, 0.01, 0.0], logvar=[math.log(0.25), 0.0, 0.0])
    levels = torch.linspace(-0.9, 0.9, 20)
    images = levels[:, None, None, None].expand(-1, 1, 8, 8).clone()
    statistics = latent_statistics(model, images, batch_size=6)
    variance = levels.double().var(unbiased=False).item()
    expected_activity = [4.0 * variance, 1e-4 * variance, 0.0]
    assert statistics["unit_activity"].tolist() == pytest.approx(expected_activity, rel=1e-4, abs=1e-9)
    assert statistics["active_units"] == 1 == active_units(model, images)
    # KL of N(m, s^2) from N(0, 1), per position: (m^2 + s^2 - 1 - log s^2) / 2, summed over the 4x4 positions.
    positions = model.config.latent_size**2
    mean_square = (levels.double() ** 2).mean().item()
    expected_kl = [
        positions * 0.5 * (4.0 * mean_square + 0.25 - 1 - math.log(0.25)),
        positions * 0.5 * (1e-4 * mean_square),
        0.0,
    ]
    # (float32 posteriors: channel 1's KL of 2e-4 nats comes out of a difference of numbers near 1)
    assert kl_per_channel(model, images).tolist() == pytest.approx(expected_kl, rel=1e-3, abs=1e-6)
    assert statistics["kl"] == pytest.approx(sum(expected_kl), rel=1e-4)
    with pytest.raises(ValueError, match="takes a VAE"):
        kl_per_channel(vqgan(), photos(size=16))


# ----- bits per dimension of a VAE -----


def discretized_gaussian_bits(images: torch.Tensor, mean: float, scale: float) -> float:
    """Closed form in float64 with scipy: -log2 of the Gaussian mass of each pixel's 8-bit bin, per dimension."""
    x = images.double().numpy()
    half = 1 / 255
    upper = np.where(x >= 1 - 1e-9, np.inf, (x + half - mean) / scale)
    lower = np.where(x <= -1 + 1e-9, -np.inf, (x - half - mean) / scale)
    mass = norm.cdf(upper) - norm.cdf(lower)
    return float(-np.log2(mass).sum(axis=(1, 2, 3)).mean() / x[0].size)


def eight_bit_images(n: int = 6) -> torch.Tensor:
    levels = torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    return levels.float() / 127.5 - 1


def test_vae_bits_per_dim_of_a_known_density_equals_the_closed_form():
    images = eight_bit_images()
    # q(z|x) = p(z) and a decoder that ignores z: every importance weight is p(x|z), the density in closed form.
    model = fixed_vae(slopes=[0.0, 0.0], logvar=[0.0, 0.0], output=0.1)
    result = bits_per_dim(model, images, decoder_scale=0.3, num_samples=4, batch_size=8)
    expected = discretized_gaussian_bits(images, 0.1, 0.3)
    assert result["bits_per_dim"] == pytest.approx(expected, rel=1e-6)
    assert result["elbo_bits_per_dim"] == pytest.approx(expected, rel=1e-6)


def test_the_importance_weighted_bound_tightens_to_the_density_and_the_elbo_pays_the_kl():
    images = eight_bit_images(32)
    # q(z|x) != p(z) but the decoder ignores z: log p(x) = log p(x|.) exactly; the ELBO falls short by KL(q || p),
    # and the importance-weighted bound closes the gap as k grows (E_q[p/q] = 1).
    model = fixed_vae(slopes=[1.5, -1.0], logvar=[math.log(0.5), math.log(0.8)], output=-0.2)
    exact = discretized_gaussian_bits(images, -0.2, 0.4)
    kl_bits = model.encode(images).kl().double().mean().item() / (images[0].numel() * math.log(2))
    gaps = {}
    for k in (1, 10, 2000):
        result = bits_per_dim(
            model, images, decoder_scale=0.4, num_samples=k, generator=torch.Generator().manual_seed(0)
        )
        assert result["elbo_bits_per_dim"] == pytest.approx(exact + kl_bits, rel=1e-6)
        gaps[k] = result["bits_per_dim"] - exact
    assert kl_bits > gaps[1] > gaps[10] > gaps[2000] > 0  # (seen: 0.044 > 0.041 > 0.015 > 0.003)
    assert gaps[2000] < 0.1 * kl_bits


def test_vae_bits_per_dim_runs_on_a_real_vae_and_refuses_bad_input():
    config = hf_vq.VAEConfig(in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1,
                             norm_num_groups=8, latent_channels=2, sample_size=8)  # fmt: skip
    model = hf_vq.VAEModel(config)
    result = bits_per_dim(model, eight_bit_images(), num_samples=3, generator=torch.Generator().manual_seed(0))
    assert result["num_samples"] == 3 and result["decoder_scale"] > 0
    assert 0 < result["bits_per_dim"] <= result["elbo_bits_per_dim"] + 1e-3
    with pytest.raises(ValueError, match="num_samples"):
        bits_per_dim(model, eight_bit_images(), num_samples=0)
    with pytest.raises(ValueError, match="decoder_scale"):
        bits_per_dim(model, eight_bit_images(), decoder_scale=-1.0)


# ----- Frechet distance, FID -----


def test_frechet_distance_of_gaussians_in_closed_form():
    mean_a, mean_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    var_a, var_b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    # Diagonal covariances commute: tr(A + B - 2 (AB)^(1/2)) = sum (sqrt(a) - sqrt(b))^2.
    expected = (mean_a - mean_b).pow(2).sum() + (var_a.sqrt() - var_b.sqrt()).pow(2).sum()
    assert frechet_distance(mean_a, torch.diag(var_a), mean_b, torch.diag(var_b)) == pytest.approx(expected.item())
    # A rotation of both covariances changes nothing; the distance of a Gaussian to itself is 0.
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    cov_a, cov_b = (rotation @ torch.diag(v.double()) @ rotation.T for v in (var_a, var_b))
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected.item(), rel=1e-9)
    assert frechet_distance(mean_a, cov_a, mean_a, cov_a) == pytest.approx(0.0, abs=1e-9)


def test_fid_with_a_small_feature_extractor_equals_the_frechet_distance_of_its_features():
    def extractor(images: torch.Tensor) -> torch.Tensor:  # a small feature extractor: per-channel means and stds
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)

    real = photos(n=40, size=16)
    fake = (real * 0.5 + 0.3).clamp(-1, 1)
    features_real, features_fake = extractor(real).double(), extractor(fake).double()
    expected = frechet_distance(features_real.mean(0), torch.cov(features_real.T),
                                features_fake.mean(0), torch.cov(features_fake.T))  # fmt: skip
    assert fid(real, fake, extractor, batch_size=7) == pytest.approx(expected, rel=1e-9)
    mean, cov = feature_statistics(extractor, real, batch_size=7)
    assert torch.allclose(mean, features_real.mean(0)) and torch.allclose(cov, torch.cov(features_real.T))
    assert fid(real, real, extractor) == pytest.approx(0.0, abs=1e-9)
    model = vqgan().eval()
    reconstructions = model(real).reconstruction.clamp(-1, 1)
    assert rfid(model, real, extractor, batch_size=16) == pytest.approx(
        fid(real, reconstructions, extractor), rel=1e-6
    )


def test_the_fid_inception_loads_its_weights_file_and_gives_2048_features(tmp_path):
    generator = torch.Generator().manual_seed(0)

    def random_like(key: str, value: torch.Tensor) -> torch.Tensor:
        if key.endswith("running_var"):
            return torch.rand(value.shape, generator=generator) + 0.5
        return torch.randn(value.shape, generator=generator) * 0.05

    # Random weights in the file's layout (pytorch-fid's has no num_batches_tracked), plus its classifier.
    expected = FIDInceptionV3().state_dict()
    state = {key: random_like(key, value) for key, value in expected.items() if "num_batches_tracked" not in key}
    state = {**state, "fc.weight": torch.zeros(1008, FEATURES), "fc.bias": torch.zeros(1008)}  # the classifier
    for name, save in (("inception.safetensors", save_file), ("pt_inception.pth", torch.save)):
        save(state, tmp_path / name)
        loaded = load_inception(tmp_path / name)
        assert torch.equal(loaded.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    features = loaded(photos(n=2, size=16, channels=1))
    assert features.shape == (2, FEATURES) and torch.isfinite(features).all()
    del state["Mixed_5b.branch1x1.conv.weight"]
    save_file(state, tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="missing .*Mixed_5b.branch1x1.conv.weight"):
        load_inception(tmp_path / "broken.safetensors")
    with pytest.raises(ValueError, match="do not exist"):
        load_inception(tmp_path / "absent.pth")
