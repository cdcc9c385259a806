import math

import torch

from hf_vq import DiagonalGaussian


def test_kl_to_standard_normal_matches_hand_computation():
    mean = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1)
    logvar = torch.tensor([math.log(0.25), 0.0]).view(1, 2, 1, 1)
    posterior = DiagonalGaussian(mean, logvar)
    # 0.5 * (mu^2 + var - 1 - log var) per element
    expected = [0.5 * (0.25 + 0.25 - 1 - math.log(0.25)), 0.5 * (1.0 + 1.0 - 1 - 0.0)]
    torch.testing.assert_close(posterior.kl(dims=()).flatten(), torch.tensor(expected))
    torch.testing.assert_close(posterior.kl(), torch.tensor([sum(expected)]))


def test_kl_between_gaussians_matches_torch_distributions():
    shape = (2, 3, 4, 4)
    p = DiagonalGaussian(torch.randn(shape), torch.randn(shape))
    q = DiagonalGaussian(torch.randn(shape), torch.randn(shape))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(p.mean, p.std), torch.distributions.Normal(q.mean, q.std)
    ).sum(dim=(1, 2, 3))
    torch.testing.assert_close(p.kl(q), expected, rtol=1e-5, atol=1e-5)


def test_from_moments_splits_mean_then_logvar_like_diffusers():
    moments = torch.arange(2 * 4 * 2 * 2, dtype=torch.float32).view(2, 4, 2, 2)
    posterior = DiagonalGaussian.from_moments(moments)
    torch.testing.assert_close(posterior.mean, moments[:, :2])
    torch.testing.assert_close(posterior.logvar, moments[:, 2:].clamp(-30, 20))
    assert posterior.mode() is posterior.mean


def test_samples_have_the_posterior_moments_and_carry_gradients():
    mean = torch.full((20000, 1, 1, 1), 1.5, requires_grad=True)
    logvar = torch.full((20000, 1, 1, 1), math.log(0.09), requires_grad=True)
    z = DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 1.5) < 0.01
    assert abs(z.std().item() - 0.3) < 0.01
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_sampling_is_reproducible_with_a_generator():
    posterior = DiagonalGaussian(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4))
    a = posterior.sample(torch.Generator().manual_seed(3))
    b = posterior.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_logvar_is_clamped_so_variance_stays_finite_and_positive():
    posterior = DiagonalGaussian(torch.zeros(1, 2, 1, 1), torch.tensor([-100.0, 100.0]).view(1, 2, 1, 1))
    assert torch.isfinite(posterior.var).all() and (posterior.var > 0).all()
    assert torch.isfinite(posterior.kl()).all()
