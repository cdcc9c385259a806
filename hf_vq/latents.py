"""Latent-space tools: interpolation and attribute vectors, for every autoencoder family.

An image's latent is what the encoder gives before any sampling or quantization: the posterior mean of a VAE, the
latent of an autoencoder, the pre-quantization latent of a VQ model (whose `decode` quantizes, so VQ interpolations
move in the continuous space and snap to codes at the end). Each latent is treated as one vector. Spherical
interpolation suits a Gaussian prior, whose mass sits near a sphere (White 2016; MusicVAE, Roberts et al. 2018):
linear midpoints of two typical latents have a norm a typical latent never has.
"""

from __future__ import annotations

import torch

from .modules.distributions import latent_mean
from .utils.errors import UsageError
from .utils.torch_utils import check_same_shape, evaluating, module_device

# Below this sine of the angle between two latents, they are treated as parallel or opposite.
PARALLEL_SINE = 1e-6


def _fractions(t: float | torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """`t` as a float64 vector (T,) and whether it was a single number."""
    tensor = torch.as_tensor(t, dtype=torch.float64, device=like.device)
    return tensor.reshape(-1), tensor.ndim == 0


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """`(1 - t) a + t b`. With `t` a number, a tensor shaped like `a`; with `t` a tensor of T fractions, (T, *a.shape).
    The endpoints t = 0 and t = 1 give `a` and `b` exactly."""
    check_same_shape(a, b, "the two latents (or images)")
    fractions, single = _fractions(t, a)
    shape = (-1,) + (1,) * a.ndim
    weights = fractions.view(shape)
    mixed = ((1 - weights) * a.double() + weights * b.double()).to(a.dtype)
    mixed = torch.where(weights == 0, a, torch.where(weights == 1, b, mixed))
    return mixed[0] if single else mixed


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two latents (each one vector, of any shape): the direction turns along the
    great circle from `a` to `b` at constant angular speed, the norm goes linearly from |a| to |b| (so equal-norm
    endpoints keep their norm all the way). Shapes as in `lerp`; t = 0 and t = 1 give `a` and `b` exactly.

    Stable at both ends: the angle is `atan2(sin, cos)` of the unit vectors, and the path is built from `a`'s
    direction and the unit vector towards `b` orthogonal to it, never dividing by a small sine. Nearly parallel
    latents are interpolated linearly (the same curve to first order); for exactly opposite ones every great circle
    is a shortest path, and the one through the first coordinate axis not parallel to `a` is taken.
    """
    check_same_shape(a, b, "the two latents (or images)")
    fractions, single = _fractions(t, a)
    x, y = a.double().reshape(-1), b.double().reshape(-1)
    norm_x, norm_y = x.norm(), y.norm()
    if norm_x == 0 or norm_y == 0:  # no direction to turn: the norm interpolation is all there is
        return lerp(a, b, t)
    unit_x, unit_y = x / norm_x, y / norm_y
    cosine = (unit_x @ unit_y).clamp(-1, 1)
    orthogonal = unit_y - cosine * unit_x
    sine = orthogonal.norm()
    angle = torch.atan2(sine, cosine)
    if sine < PARALLEL_SINE:
        if cosine > 0:
            return lerp(a, b, t)
        # Opposite: turn through a direction orthogonal to `a`, from the least-aligned coordinate axis.
        axis = torch.zeros_like(unit_x)
        axis[unit_x.abs().argmin()] = 1.0
        orthogonal = axis - (axis @ unit_x) * unit_x
    direction = orthogonal / orthogonal.norm()
    turned = torch.cos(fractions * angle)[:, None] * unit_x + torch.sin(fractions * angle)[:, None] * direction
    norms = (1 - fractions) * norm_x + fractions * norm_y
    path = (norms[:, None] * turned).to(a.dtype).view(-1, *a.shape)
    weights = fractions.view((-1,) + (1,) * a.ndim)
    path = torch.where(weights == 0, a, torch.where(weights == 1, b, path))
    return path[0] if single else path


INTERPOLATIONS = {"lerp": lerp, "slerp": slerp}


def _as_batch(images: torch.Tensor, what: str) -> torch.Tensor:
    """Images (C, H, W) or (B, C, H, W) -> (B, C, H, W)."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise UsageError(f"{what}: expected an image (C, H, W) or images (B, C, H, W), got {tuple(images.shape)}")
    return images


@torch.no_grad()
def encode_latents(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The latents (B, ...) of images (B, C, H, W) in [-1, 1]: a VAE's posterior mean, an autoencoder's latent, a VQ
    model's latent before quantization."""
    return latent_mean(model.encode(_as_batch(images, "encode_latents").to(module_device(model))))


@torch.no_grad()
def decode_latents(model: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Images of latents; a VQ model quantizes them first (its `decode` does)."""
    return model.decode(latents).clamp(-1, 1)


@torch.no_grad()
def interpolate(
    model: torch.nn.Module, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 8, method: str = "slerp"
) -> torch.Tensor:
    """Decoded images (steps, C, H, W) along the path between two images' latents, endpoints included.

    `method`: "slerp" (spherical, for Gaussian latents) or "lerp". For VQ models the path is taken before
    quantization and each point is quantized when decoded.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise UsageError(f"`steps` must be an integer >= 2 (the two endpoints at least), got {steps!r}")
    if method not in INTERPOLATIONS:
        raise UsageError(f"`method` must be one of {sorted(INTERPOLATIONS)}, got {method!r}")
    image_a, image_b = _as_batch(image_a, "image_a"), _as_batch(image_b, "image_b")
    if len(image_a) != 1 or len(image_b) != 1:
        raise UsageError(f"interpolate takes one image at each end, got {len(image_a)} and {len(image_b)}")
    if image_a.shape != image_b.shape:
        raise UsageError(
            f"the two images have different sizes: {tuple(image_a.shape[1:])} and {tuple(image_b.shape[1:])}"
        )
    with evaluating(model):
        latents = encode_latents(model, torch.cat([image_a, image_b]))
        fractions = torch.linspace(0, 1, steps, dtype=torch.float64)
        path = INTERPOLATIONS[method](latents[0], latents[1], fractions)  # (steps, *latent shape)
        return decode_latents(model, path)


def _group_mean(model: torch.nn.Module, images: torch.Tensor, what: str, batch_size: int) -> torch.Tensor:
    images = _as_batch(images, what)
    if len(images) == 0:
        raise UsageError(f"`{what}` is empty: an attribute vector needs images in both groups")
    return torch.cat([encode_latents(model, batch) for batch in images.split(batch_size)]).double().mean(0)


@torch.no_grad()
def attribute_vector(
    model: torch.nn.Module, images_with: torch.Tensor, images_without: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """The mean latent of the images with an attribute minus the mean latent of those without (shaped like one
    latent); add it to a latent to add the attribute (`apply_attribute`)."""
    with_, without = _as_batch(images_with, "images_with"), _as_batch(images_without, "images_without")
    if len(with_) and len(without) and with_.shape[1:] != without.shape[1:]:
        raise UsageError(
            f"the two groups hold images of different sizes: {tuple(with_.shape[1:])} and {tuple(without.shape[1:])}"
        )
    with evaluating(model):
        vector = _group_mean(model, with_, "images_with", batch_size)
        vector = vector - _group_mean(model, without, "images_without", batch_size)
    return vector.float()


@torch.no_grad()
def apply_attribute(
    model: torch.nn.Module, images: torch.Tensor, vector: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Decode the images' latents moved by `scale` times an attribute vector (negative removes the attribute)."""
    with evaluating(model):
        latents = encode_latents(model, images)
        if vector.shape != latents.shape[1:]:
            raise UsageError(
                f"the attribute vector has shape {tuple(vector.shape)}, the images' latents {tuple(latents.shape[1:])}"
            )
        return decode_latents(model, latents + scale * vector.to(latents))
