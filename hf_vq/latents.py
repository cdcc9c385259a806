"""Latent-space tools: interpolation and attribute vectors, for every autoencoder family and the sequence VAE.

An image's latent is what the encoder gives before any sampling or quantization: the posterior mean of a VAE, the
latent of an autoencoder, the pre-quantization latent of a VQ model (whose `decode` quantizes, so VQ interpolations
move in the continuous space and snap to codes at the end). Each latent is treated as one vector. Spherical
interpolation suits a Gaussian prior, whose mass sits near a sphere (White 2016; MusicVAE, Roberts et al. 2018):
linear midpoints of two typical latents have a norm a typical latent never has.

The same functions serve sequence models, autoencoders told apart by `main_input_name == "input_ids"` (the sequence
VAE; the GPT prior takes `input_ids` too but has no `encode` and `decode`, and is refused as any model that is not an
autoencoder): their inputs are integer token sequences (T,) or (B, T), a sequence's latent is its posterior mean, and
latents decode to tokens, greedily unless a `temperature` is given (MusicVAE's interpolations and attribute edits are
greedy too, so that what changes is the latent, not the draw). Attribute vectors can be built from an attribute
function over a set (`attribute_vector_by`: the top quartile minus the bottom quartile, as MusicVAE does for note
density and mean pitch, whose functions are in `hf_vq.music`), and `attribute_shift` measures how far adding one
moves the attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .modules.distributions import latent_mean
from .utils.configuration_utils import check_float, check_int
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


def _is_autoencoder(model: torch.nn.Module) -> bool:
    """Whether a model has the `encode` and `decode` that every tool here goes through."""
    return callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))


def is_sequence_model(model: torch.nn.Module) -> bool:
    """Whether a model is a sequence autoencoder (the sequence VAE): it takes token sequences
    (`main_input_name == "input_ids"`) and has `encode` and `decode`. The GPT prior takes `input_ids` but is no
    autoencoder: False."""
    return getattr(model, "main_input_name", None) == "input_ids" and _is_autoencoder(model)


def _check_autoencoder(model: torch.nn.Module, what: str) -> None:
    """A `UsageError` for a model the latent tools cannot use: one without `encode` and `decode` (a prior, a
    discriminator)."""
    if not _is_autoencoder(model):
        raise UsageError(
            f"{what}: {type(model).__name__} is neither an image autoencoder nor a sequence VAE (it has no `encode` "
            "and `decode`); the latent tools take autoencoders, VAEs, VQ models and SequenceVAEModel"
        )


def _as_batch(model: torch.nn.Module, inputs: torch.Tensor, what: str) -> torch.Tensor:
    """What the model takes, batched: tokens (T,) or (B, T) -> (B, T) for a sequence model, images (C, H, W) or
    (B, C, H, W) -> (B, C, H, W) for the others."""
    _check_autoencoder(model, what)
    if not isinstance(inputs, torch.Tensor):
        raise UsageError(f"{what}: expected a tensor, got {type(inputs).__name__}")
    is_integer = not (inputs.is_floating_point() or inputs.is_complex() or inputs.dtype == torch.bool)
    if is_sequence_model(model):
        if not is_integer:
            raise UsageError(
                f"{what}: {type(model).__name__} takes integer token ids (T,) or (B, T), got a {inputs.dtype} tensor"
            )
        if inputs.ndim == 1:
            inputs = inputs[None]
        if inputs.ndim != 2:
            raise UsageError(f"{what}: expected a token sequence (T,) or sequences (B, T), got {tuple(inputs.shape)}")
        return inputs
    if is_integer:
        raise UsageError(
            f"{what}: {type(model).__name__} takes float images in [-1, 1], got a {inputs.dtype} tensor (token ids "
            "are for sequence models)"
        )
    if inputs.ndim == 3:
        inputs = inputs[None]
    if inputs.ndim != 4:
        raise UsageError(f"{what}: expected an image (C, H, W) or images (B, C, H, W), got {tuple(inputs.shape)}")
    return inputs


def _sequence_length(model: torch.nn.Module, inputs: torch.Tensor) -> int | None:
    """The length to decode a batch's latents to: its T for a sequence model, None (nothing to say) for images."""
    return inputs.shape[1] if is_sequence_model(model) else None


@torch.no_grad()
def encode_latents(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The latents (B, ...) of images (B, C, H, W) in [-1, 1]: a VAE's posterior mean, an autoencoder's latent, a VQ
    model's latent before quantization. For a sequence model, `images` are token ids (T,) or (B, T) and the latents
    their posterior means (B, latent_size)."""
    inputs = _as_batch(model, images, "encode_latents")
    with evaluating(model):  # no dropout: the latent is the posterior mean, not a noisy copy of it
        return latent_mean(model.encode(inputs.to(module_device(model))))


@torch.no_grad()
def decode_latents(
    model: torch.nn.Module,
    latents: torch.Tensor,
    length: int | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Images of latents, clamped to [-1, 1]; a VQ model quantizes them first (its `decode` does).

    A sequence model decodes latents (B, latent_size) to tokens (B, length) (`length` defaults to its training
    length), greedily at temperature 0, else drawing each token at `temperature` with `generator`. Image models
    decode deterministically and take neither.
    """
    _check_autoencoder(model, "decode_latents")
    if is_sequence_model(model):
        with evaluating(model):
            return model.decode(latents, length, temperature=temperature, generator=generator)
    if length is not None or temperature != 0 or generator is not None:
        raise UsageError(
            f"decode_latents: `length`, `temperature` and `generator` are for sequence models; {type(model).__name__} "
            "decodes images deterministically"
        )
    with evaluating(model):
        return model.decode(latents).clamp(-1, 1)


@torch.no_grad()
def interpolate(
    model: torch.nn.Module,
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    steps: int = 8,
    method: str = "slerp",
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decoded images (steps, C, H, W) along the path between two images' latents, endpoints included.

    `method`: "slerp" (spherical, for Gaussian latents) or "lerp". For VQ models the path is taken before
    quantization and each point is quantized when decoded. For a sequence model the ends are two token sequences
    (T,) of one length and the result is tokens (steps, T), decoded greedily (the ends are then the greedy
    reconstructions) unless `temperature` > 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise UsageError(f"`steps` must be an integer >= 2 (the two endpoints at least), got {steps!r}")
    if method not in INTERPOLATIONS:
        raise UsageError(f"`method` must be one of {sorted(INTERPOLATIONS)}, got {method!r}")
    image_a, image_b = _as_batch(model, image_a, "image_a"), _as_batch(model, image_b, "image_b")
    kind = "sequence" if is_sequence_model(model) else "image"
    if len(image_a) != 1 or len(image_b) != 1:
        raise UsageError(f"interpolate takes one {kind} at each end, got {len(image_a)} and {len(image_b)}")
    if image_a.shape != image_b.shape:
        sizes = "lengths" if kind == "sequence" else "sizes"
        raise UsageError(
            f"the two {kind}s have different {sizes}: {tuple(image_a.shape[1:])} and {tuple(image_b.shape[1:])}"
        )
    latents = encode_latents(model, torch.cat([image_a, image_b]))
    fractions = torch.linspace(0, 1, steps, dtype=torch.float64)
    path = INTERPOLATIONS[method](latents[0], latents[1], fractions)  # (steps, *latent shape)
    return decode_latents(model, path, _sequence_length(model, image_a), temperature, generator)


def _encode_all(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The latents (B, ...) of a batch, encoded `batch_size` at a time."""
    check_int("batch_size", batch_size, minimum=1)
    return torch.cat([encode_latents(model, batch) for batch in inputs.split(batch_size)])


def _group_mean(model: torch.nn.Module, images: torch.Tensor, what: str, batch_size: int) -> torch.Tensor:
    if len(images) == 0:
        raise UsageError(f"`{what}` is empty: an attribute vector needs inputs in both groups")
    return _encode_all(model, images, batch_size).double().mean(0)


@torch.no_grad()
def attribute_vector(
    model: torch.nn.Module, images_with: torch.Tensor, images_without: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """The mean latent of the images with an attribute minus the mean latent of those without (shaped like one
    latent); add it to a latent to add the attribute (`apply_attribute`). For a sequence model the two groups are
    token sequences (B, T), of any lengths the model takes (each sequence's latent has the same size)."""
    with_ = _as_batch(model, images_with, "images_with")
    without = _as_batch(model, images_without, "images_without")
    if not is_sequence_model(model) and len(with_) and len(without) and with_.shape[1:] != without.shape[1:]:
        raise UsageError(
            f"the two groups hold images of different sizes: {tuple(with_.shape[1:])} and {tuple(without.shape[1:])}"
        )
    vector = _group_mean(model, with_, "images_with", batch_size)
    vector = vector - _group_mean(model, without, "images_without", batch_size)
    return vector.float()


def _check_vector(vector: torch.Tensor, latents: torch.Tensor) -> None:
    if not isinstance(vector, torch.Tensor) or vector.shape != latents.shape[1:]:
        shape = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise UsageError(f"the attribute vector has shape {shape}, the inputs' latents {tuple(latents.shape[1:])}")


@torch.no_grad()
def apply_attribute(
    model: torch.nn.Module,
    images: torch.Tensor,
    vector: torch.Tensor,
    scale: float = 1.0,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Decode the images' latents moved by `scale` times an attribute vector (negative removes the attribute). For a
    sequence model: token sequences (B, T) in, tokens (B, T) out, greedy unless `temperature` > 0."""
    images = _as_batch(model, images, "images")
    latents = encode_latents(model, images)
    _check_vector(vector, latents)
    moved = latents + scale * vector.to(latents)
    return decode_latents(model, moved, _sequence_length(model, images), temperature, generator)


# ----- attribute vectors from an attribute function, and how far they move it -----

# An attribute: one input (a token sequence (T,) or an image (C, H, W), on the CPU) -> a number, NaN where it is
# undefined (`hf_vq.music.mean_pitch` of a sequence without notes).
Attribute = Callable[[torch.Tensor], float]


def attribute_values(inputs: torch.Tensor, attribute: Attribute) -> torch.Tensor:
    """`attribute` of each input of a batch (B, ...) -> (B,) float64, NaN where it is undefined."""
    return torch.tensor([float(attribute(item)) for item in inputs.cpu()], dtype=torch.float64)


@dataclass
class AttributeGroups:
    """The inputs with the highest and lowest values of an attribute (`attribute_groups`).

    Args:
        values: (N,) the attribute of every input, NaN where undefined (such inputs are in neither group).
        top: (k,) indices of the k highest values, highest last.
        bottom: (k,) indices of the k lowest values, lowest first.
    """

    values: torch.Tensor
    top: torch.Tensor
    bottom: torch.Tensor


def attribute_groups(inputs: torch.Tensor, attribute: Attribute, fraction: float = 0.25) -> AttributeGroups:
    """Split a batch (B, ...) by an attribute function: the `fraction` of inputs where it is highest and the
    `fraction` where it is lowest (quartiles by default, as MusicVAE), k = floor(fraction * N) each, of the N inputs
    where the attribute is defined. Ties are broken by position (a stable sort)."""
    check_float("fraction", fraction, minimum=0.0, maximum=0.5, exclusive_minimum=True)
    if not isinstance(inputs, torch.Tensor) or inputs.ndim < 2:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise UsageError(f"attribute_groups: expected a batch of inputs (B, ...), got {shape}")
    values = attribute_values(inputs, attribute)
    defined = torch.nonzero(~torch.isnan(values)).flatten()
    count = math.floor(fraction * len(defined))
    if count < 1:
        raise UsageError(
            f"attribute_groups: {len(defined)} of {len(values)} inputs have a defined attribute; fraction {fraction} "
            f"needs at least {math.ceil(1 / fraction)}"
        )
    if values[defined].min() == values[defined].max():
        raise UsageError(f"attribute_groups: the attribute is {values[defined][0].item():g} for every input")
    order = defined[torch.sort(values[defined], stable=True).indices]  # input indices, lowest value first
    return AttributeGroups(values=values, top=order[-count:], bottom=order[:count])


@torch.no_grad()
def attribute_vector_by(
    model: torch.nn.Module,
    images: torch.Tensor,
    attribute: Attribute,
    fraction: float = 0.25,
    batch_size: int = 64,
) -> torch.Tensor:
    """The attribute vector of an attribute function over a set (B, ...): the mean latent of the `fraction` of
    inputs where the attribute is highest minus that of the `fraction` where it is lowest (`attribute_groups`). With
    `hf_vq.music.note_density` or `mean_pitch` over melodies, MusicVAE's attribute vectors (Roberts et al. 2018,
    section 5.3)."""
    images = _as_batch(model, images, "images")
    groups = attribute_groups(images, attribute, fraction)
    return attribute_vector(model, images[groups.top], images[groups.bottom], batch_size)


@dataclass
class AttributeShift:
    """How far adding an attribute vector moves the attribute of decoded inputs (`attribute_shift`).

    Args:
        original: the mean attribute of the inputs themselves.
        means: scale -> the mean attribute of the inputs' latents plus scale times the vector, decoded; scale 0 is
            the plain reconstructions. Means leave out the decoded inputs whose attribute is undefined.
        undefined: scale -> how many decoded inputs had an undefined (NaN) attribute.
        count: how many inputs were measured.
    """

    original: float
    means: dict[float, float]
    undefined: dict[float, int]
    count: int

    @property
    def reconstruction(self) -> float:
        """The mean attribute of the plain reconstructions (scale 0)."""
        return self.means[0.0]

    def to_dict(self) -> dict:
        """JSON-ready: scales as strings, NaN as None."""

        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "count": self.count,
            "original": number(self.original),
            "means": {f"{scale:g}": number(mean) for scale, mean in self.means.items()},
            "undefined": {f"{scale:g}": n for scale, n in self.undefined.items()},
        }


def _nanmean(values: torch.Tensor) -> float:
    return values.nanmean().item() if len(values) else math.nan


@torch.no_grad()
def attribute_shift(
    model: torch.nn.Module,
    images: torch.Tensor,
    vector: torch.Tensor,
    attribute: Attribute,
    scales: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    temperature: float = 0.0,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> AttributeShift:
    """Measure an attribute vector: add `scale * vector` to the latents of (held-out) inputs (B, ...), decode them
    (greedily unless `temperature` > 0), and take the mean attribute of the decoded inputs at each scale. Scale 0
    (the plain reconstructions) is always measured; the scales come back in increasing order."""
    images = _as_batch(model, images, "images")
    if len(images) == 0:
        raise UsageError("attribute_shift: no inputs to measure")
    if not isinstance(scales, Sequence) or not scales:
        raise UsageError(f"attribute_shift: `scales` must be a non-empty sequence of numbers, got {scales!r}")
    for scale in scales:
        check_float("scales", scale)
    latents = _encode_all(model, images, batch_size)
    _check_vector(vector, latents)
    vector = vector.to(latents)
    length = _sequence_length(model, images)
    means, undefined = {}, {}
    for scale in sorted({float(scale) for scale in scales} | {0.0}):
        moved = latents + scale * vector  # (B, ...)
        decoded = torch.cat(
            [decode_latents(model, batch, length, temperature, generator) for batch in moved.split(batch_size)]
        )
        values = attribute_values(decoded, attribute)
        means[scale] = _nanmean(values)
        undefined[scale] = int(torch.isnan(values).sum())
    original = _nanmean(attribute_values(images, attribute))
    return AttributeShift(original=original, means=means, undefined=undefined, count=len(images))
