"""Latent-space tools: lerp / slerp against their definitions, interpolation between images for each family, and
attribute vectors."""

import math

import pytest
import torch
from torch import nn

import hf_vq
from hf_vq.latents import apply_attribute, attribute_vector, encode_latents, interpolate, lerp, slerp

from .conftest import vqgan


def random_vector(shape=(4, 2, 2), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_slerp_keeps_the_norm_of_equal_norm_endpoints_and_hits_both_exactly():
    a, b = random_vector(seed=0), random_vector(seed=1)
    b = b * a.norm() / b.norm()
    path = slerp(a, b, torch.linspace(0, 1, 11))
    assert path.shape == (11, 4, 2, 2)
    assert torch.allclose(path.flatten(1).norm(dim=1), a.norm().expand(11), rtol=1e-6)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    # Constant angular speed: consecutive points are equally far apart.
    steps = (path[1:] - path[:-1]).flatten(1).norm(dim=1)
    assert torch.allclose(steps, steps[0].expand(10), rtol=1e-5)


def test_slerp_norm_goes_linearly_between_unequal_norms_and_its_midpoint_bisects_the_angle():
    a, b = random_vector(seed=2), 3 * random_vector(seed=3)
    middle = slerp(a, b, 0.5)
    assert middle.norm().item() == pytest.approx(((a.norm() + b.norm()) / 2).item(), rel=1e-6)
    cosine = lambda x, y: (x.flatten() @ y.flatten() / (x.norm() * y.norm())).item()  # noqa: E731
    assert cosine(a, middle) == pytest.approx(cosine(middle, b), rel=1e-6)


def test_lerp_and_slerp_agree_for_tiny_angles():
    a = random_vector(seed=4)
    for angle in (1e-3, 1e-9, 0.0):
        b = a + angle * random_vector(seed=5) * a.norm() / random_vector(seed=5).norm()
        t = torch.linspace(0, 1, 5)
        assert torch.allclose(slerp(a, b, t), lerp(a, b, t), atol=max(angle**2, 1e-7) * a.norm().item())
        assert torch.isfinite(slerp(a, b, t)).all()


def test_slerp_is_stable_for_opposite_and_nearly_opposite_vectors():
    a = random_vector(seed=6)
    for b in (-a, -a + 1e-9 * random_vector(seed=7), -2 * a):
        path = slerp(a, b, torch.linspace(0, 1, 9))
        assert torch.isfinite(path).all()
        norms = path.flatten(1).norm(dim=1)
        expected = torch.linspace(0, 1, 9) * (b.norm() - a.norm()) + a.norm()
        assert torch.allclose(norms, expected, rtol=1e-5)  # never through 0, as lerp would go
        assert torch.equal(path[0], a) and torch.equal(path[-1], b)
        # Half way it is orthogonal to both ends.
        assert abs(path[4].flatten() @ a.flatten()) < 1e-4 * a.norm() * path[4].norm()


def test_lerp_is_the_straight_line_and_both_refuse_different_shapes():
    a, b = random_vector(seed=8), random_vector(seed=9)
    assert torch.allclose(lerp(a, b, 0.25), 0.75 * a + 0.25 * b)
    for function in (lerp, slerp):
        with pytest.raises(ValueError, match="different shapes"):
            function(a, random_vector(shape=(2, 2, 2)), 0.5)


# ----- through models -----


class IdentityAutoencoder(nn.Module):
    """encode = decode = identity: latents are the images, so known shifts stay known."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def images(n: int, size: int = 16, seed: int = 0, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 1.4 - 0.7


def test_the_attribute_vector_of_two_shifted_groups_recovers_the_shift_and_applies_it():
    model = IdentityAutoencoder()
    without = images(7)
    shift = torch.zeros(3, 16, 16)
    shift[0, 4:12, 4:12] = 0.25  # "a brighter red square"
    vector = attribute_vector(model, without + shift, without, batch_size=3)
    assert torch.allclose(vector, shift, atol=1e-6)
    others = images(2, seed=1)
    assert torch.allclose(apply_attribute(model, others, vector, scale=2.0), (others + 2 * shift).clamp(-1, 1))


def test_attribute_tools_refuse_empty_groups_and_different_sizes():
    model = IdentityAutoencoder()
    with pytest.raises(ValueError, match="`images_with` is empty"):
        attribute_vector(model, images(0), images(3))
    with pytest.raises(ValueError, match="`images_without` is empty"):
        attribute_vector(model, images(3), images(0))
    with pytest.raises(ValueError, match="different sizes"):
        attribute_vector(model, images(3, size=16), images(3, size=8))
    with pytest.raises(ValueError, match="attribute vector has shape"):
        apply_attribute(model, images(2), torch.zeros(3, 8, 8))


def test_interpolating_a_vae_decodes_the_spherical_path_between_posterior_means():
    model = hf_vq.VAEModel(hf_vq.VAEConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
                                           latent_channels=4, sample_size=16)).eval()  # fmt: skip
    a, b = images(1, seed=2)[0], images(1, seed=3)[0]
    strip = interpolate(model, a, b, steps=5)
    assert strip.shape == (5, 3, 16, 16) and strip.abs().max() <= 1
    latents = encode_latents(model, torch.stack([a, b]))
    expected = model.decode(slerp(latents[0], latents[1], torch.linspace(0, 1, 5))).clamp(-1, 1)
    assert torch.allclose(strip, expected, atol=1e-6)
    assert not torch.allclose(interpolate(model, a, b, steps=5, method="lerp")[2], strip[2])


def test_interpolating_a_vq_model_quantizes_each_point_and_ends_at_the_reconstructions():
    model = vqgan().eval()
    a, b = images(1, seed=4), images(1, seed=5)
    strip = interpolate(model, a, b, steps=4, method="lerp")
    reconstructions = model(torch.cat([a, b])).reconstruction.clamp(-1, 1)
    assert torch.allclose(strip[0], reconstructions[0], atol=1e-5)  # (batch sizes differ: float rounding)
    assert torch.allclose(strip[-1], reconstructions[1], atol=1e-5)
    # Every point decodes from codes: re-encoding it is a fixed point of decode_indices(encode_indices(.)) in codes.
    latents = encode_latents(model, torch.cat([a, b]))
    middle = lerp(latents[0], latents[1], 1 / 3)
    codes = model.quantize(middle[None]).indices
    assert torch.allclose(strip[1], model.decode_indices(codes)[0].clamp(-1, 1), atol=1e-5)


def test_interpolate_refuses_bad_steps_methods_and_images_of_different_sizes():
    model = IdentityAutoencoder()
    with pytest.raises(ValueError, match="steps"):
        interpolate(model, images(1)[0], images(1, seed=1)[0], steps=1)
    with pytest.raises(ValueError, match="method"):
        interpolate(model, images(1)[0], images(1, seed=1)[0], method="cubic")
    with pytest.raises(ValueError, match="different sizes"):
        interpolate(model, images(1, size=16)[0], images(1, size=8)[0])
    with pytest.raises(ValueError, match="one image at each end"):
        interpolate(model, images(2), images(1))
    assert math.isfinite(interpolate(model, images(1)[0], images(1, seed=1)[0], steps=2).sum().item())
