"""Latent-space tools: lerp / slerp against their definitions, interpolation between images for each family and
between melodies through the sequence VAE, attribute vectors (from groups, or from an attribute function), and how
far a trained model's note-density vector moves the decoded density."""

import json
import math
import re

import pytest
import torch
from torch import nn

import hf_vq
from hf_vq.latents import (
    AttributeShift,
    apply_attribute,
    attribute_groups,
    attribute_shift,
    attribute_vector,
    attribute_vector_by,
    decode_latents,
    encode_latents,
    interpolate,
    is_sequence_model,
    lerp,
    slerp,
)
from hf_vq.music import NO_EVENT, VOCAB_SIZE, mean_pitch, note_density, pitch_to_token
from hf_vq.utils.errors import UsageError

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


# ----- sequence models: the same functions over token sequences -----

# A tiny untrained sequence VAE over the melody vocabulary: 2 bars of 4 steps.
TINY_SEQUENCE_VAE = dict(vocab_size=VOCAB_SIZE, decoder_type="flat", bar_length=4, num_bars=2, encoder_hidden_size=16,
                         decoder_hidden_size=16, decoder_num_layers=1, latent_size=4, free_bits=0.0)  # fmt: skip


def sequence_vae(**overrides) -> hf_vq.SequenceVAEModel:
    torch.manual_seed(0)
    return hf_vq.SequenceVAEModel(hf_vq.SequenceVAEConfig(**{**TINY_SEQUENCE_VAE, **overrides})).eval()


def random_melodies(n: int, length: int = 8, seed: int = 0) -> torch.Tensor:
    """(n, length) tokens: a note-on, a hold or a note-off at each step."""
    return torch.randint(0, VOCAB_SIZE, (n, length), generator=torch.Generator().manual_seed(seed))


def test_interpolating_a_sequence_vae_ends_at_the_greedy_reconstructions_of_both_melodies():
    model = sequence_vae()
    melodies = random_melodies(2, seed=1)
    strip = interpolate(model, melodies[0], melodies[1], steps=5)
    assert strip.shape == (5, 8) and strip.dtype == torch.long
    assert strip.min() >= 0 and strip.max() < VOCAB_SIZE
    assert torch.equal(strip[0], model.reconstruct(melodies[:1])[0])
    assert torch.equal(strip[-1], model.reconstruct(melodies[1:])[0])
    # The middle points decode the slerp path between the posterior means, greedily. Computed without autograd, as
    # `interpolate` does: with it the LSTM may take another CPU kernel, equal only to float rounding.
    with torch.no_grad():
        means = model.encode(melodies).mean
        path = slerp(means[0], means[1], torch.linspace(0, 1, 5, dtype=torch.float64))
        expected = model.decode(path, temperature=0.0)
    assert torch.equal(encode_latents(model, melodies), means)
    assert torch.equal(strip, expected)
    # Drawn at a temperature, the same generator gives the same tokens.
    drawn = [interpolate(model, melodies[0], melodies[1], steps=5, temperature=1.0,
                         generator=torch.Generator().manual_seed(3)) for _ in range(2)]  # fmt: skip
    assert torch.equal(drawn[0], drawn[1])


def test_a_sequence_attribute_vector_is_the_difference_of_the_groups_posterior_means():
    model = sequence_vae()
    with_, without = random_melodies(5, seed=2), random_melodies(3, length=12, seed=3)  # lengths may differ
    vector = attribute_vector(model, with_, without, batch_size=2)
    by_hand = model.encode(with_).mean.double().mean(0) - model.encode(without).mean.double().mean(0)
    assert vector.shape == (4,)
    assert torch.allclose(vector, by_hand.float(), atol=1e-6)
    edited = apply_attribute(model, with_, vector, scale=1.5)
    assert torch.equal(edited, model.decode(model.encode(with_).mean + 1.5 * vector, length=8, temperature=0.0))


def one_note_melodies(pitches: list[int | None], length: int = 8) -> torch.Tensor:
    """One melody a pitch: that note on the first step, then holds (None: silence throughout)."""
    melodies = torch.full((len(pitches), length), NO_EVENT)
    for i, pitch in enumerate(pitches):
        if pitch is not None:
            melodies[i, 0] = pitch_to_token(pitch)
    return melodies


def test_attribute_groups_take_the_top_and_bottom_quartiles_of_the_defined_values():
    # mean pitch of 9 melodies, one without notes (undefined, left out): 8 defined -> quartiles of 2
    pitches = [64, 60, None, 72, 67, 62, 71, 65, 69]
    melodies = one_note_melodies(pitches)
    groups = attribute_groups(melodies, mean_pitch)
    assert groups.values[2].isnan() and groups.values[0].item() == 64
    assert groups.bottom.tolist() == [1, 5]  # 60, 62
    assert groups.top.tolist() == [6, 3]  # 71, 72
    assert attribute_groups(melodies, mean_pitch, fraction=0.5).top.tolist() == [4, 8, 6, 3]
    model = sequence_vae()
    vector = attribute_vector_by(model, melodies, mean_pitch)
    assert torch.allclose(vector, attribute_vector(model, melodies[[6, 3]], melodies[[1, 5]]), atol=1e-6)


def test_attribute_shift_measures_every_scale_and_zero_is_the_reconstructions():
    model = sequence_vae()
    melodies = random_melodies(6, seed=4)
    vector = torch.randn(4, generator=torch.Generator().manual_seed(5))
    shift = attribute_shift(model, melodies, vector, note_density, scales=(2, -1), batch_size=4)
    assert isinstance(shift, AttributeShift) and shift.count == 6
    assert list(shift.means) == [-1.0, 0.0, 2.0]  # scale 0 always measured, in order
    density = lambda tokens: sum(note_density(t) for t in tokens) / len(tokens)  # noqa: E731
    assert shift.original == pytest.approx(density(melodies))
    assert shift.reconstruction == pytest.approx(density(model.reconstruct(melodies)))
    moved = model.decode(model.encode(melodies).mean + 2 * vector, length=8, temperature=0.0)
    assert shift.means[2.0] == pytest.approx(density(moved))
    assert shift.undefined == {-1.0: 0, 0.0: 0, 2.0: 0}
    # An attribute undefined everywhere: the means are NaN, counted, and null in JSON.
    silent = attribute_shift(model, one_note_melodies([None] * 3), vector, lambda tokens: math.nan, scales=[1])
    assert math.isnan(silent.reconstruction) and silent.undefined == {0.0: 3, 1.0: 3}
    assert json.loads(json.dumps(silent.to_dict())) == {
        "count": 3, "original": None, "means": {"0": None, "1": None}, "undefined": {"0": 3, "1": 3}
    }  # fmt: skip


def test_sequence_latent_tools_name_what_is_wrong_in_one_line():
    model, melodies = sequence_vae(), random_melodies(2)
    cases = [
        (lambda: encode_latents(model, melodies.float()), "takes integer token ids (T,) or (B, T), got a torch.float"),
        (lambda: encode_latents(model, melodies[None]), "expected a token sequence (T,) or sequences (B, T), got"),
        (lambda: encode_latents(model, melodies.tolist()), "expected a tensor, got list"),
        (lambda: interpolate(model, melodies[0], random_melodies(1, 12)[0]), "different lengths: (8,) and (12,)"),
        (lambda: interpolate(model, melodies, melodies[0]), "one sequence at each end, got 2 and 1"),
        (lambda: apply_attribute(model, melodies, torch.zeros(3)), "vector has shape (3,), the inputs' latents (4,)"),
        (lambda: attribute_groups(melodies, note_density), "2 of 2 inputs have a defined attribute; fraction 0.25"),
        (lambda: attribute_groups(one_note_melodies([60] * 4), mean_pitch), "the attribute is 60 for every input"),
        (lambda: attribute_groups(melodies, note_density, fraction=0.6), "`fraction` must be <= 0.5"),
        (lambda: attribute_shift(model, melodies, torch.zeros(4), note_density, scales=[]), "`scales` must be"),
        (lambda: encode_latents(IdentityAutoencoder(), melodies), "takes float images in [-1, 1], got a torch.int64"),
        (lambda: decode_latents(IdentityAutoencoder(), images(1), temperature=1.0), "are for sequence models"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)) as error:
            call()
        assert "\n" not in str(error.value)


def test_models_without_encode_and_decode_are_refused_in_one_line_even_if_they_take_input_ids(tmp_path):
    # The GPT prior takes input_ids as the sequence VAE does, but is no autoencoder: neither kind, refused by name.
    config = hf_vq.VQPriorConfig(codebook_size=8, token_grid_size=(2, 2), n_layer=1, n_head=1, n_embd=8)
    hf_vq.VQPriorForCausalLM(config).save_pretrained(tmp_path / "prior")
    prior = hf_vq.VQPriorForCausalLM.from_pretrained(tmp_path / "prior")
    assert prior.main_input_name == "input_ids" and not is_sequence_model(prior)
    assert is_sequence_model(sequence_vae()) and not is_sequence_model(IdentityAutoencoder())
    codes = torch.zeros(2, 4, dtype=torch.long)
    neither = "VQPriorForCausalLM is neither an image autoencoder nor a sequence VAE (it has no `encode` and `decode`)"
    calls = {
        "encode_latents": lambda: encode_latents(prior, codes),
        "decode_latents": lambda: decode_latents(prior, torch.zeros(2, 4)),
        "image_a": lambda: interpolate(prior, codes[0], codes[1]),
        "images_with": lambda: attribute_vector(prior, codes, codes),
        "images": lambda: apply_attribute(prior, codes, torch.zeros(4)),
    }
    for what, call in calls.items():
        with pytest.raises(UsageError, match=re.escape(f"{what}: {neither}")) as error:
            call()
        assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match=re.escape(f"images: {neither}")):
        attribute_vector_by(prior, codes, note_density)
    with pytest.raises(UsageError, match=re.escape(f"images: {neither}")):
        attribute_shift(prior, codes, torch.zeros(4), note_density)


# ----- a real measurement: MusicVAE's note-density vector on a tiny trained model -----


def density_melodies(n: int, seed: int, length: int = 16) -> torch.Tensor:
    """(n, length) melodies whose note density varies strongly: a note every 1, 2, 4 or 8 steps (one of four,
    at random), of random pitches of the C major scale, held until the next."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([60, 62, 64, 65, 67, 69, 71, 72])
    melodies = torch.full((n, length), NO_EVENT)
    for i in range(n):
        every = (1, 2, 4, 8)[torch.randint(0, 4, (), generator=generator)]
        for step in range(0, length, every):
            melodies[i, step] = pitch_to_token(int(scale[torch.randint(0, 8, (), generator=generator)]))
    return melodies


def test_adding_the_note_density_vector_of_a_trained_model_moves_the_decoded_density():
    torch.manual_seed(0)
    config = hf_vq.SequenceVAEConfig(vocab_size=VOCAB_SIZE, decoder_type="flat", bar_length=8, num_bars=2,
                                     encoder_hidden_size=32, decoder_hidden_size=32, decoder_num_layers=1,
                                     latent_size=8, free_bits=0.0, max_beta=0.1)  # fmt: skip
    model = hf_vq.SequenceVAEModel(config)
    train = density_melodies(512, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(400):
        batch = train[torch.randint(0, len(train), (64,), generator=generator)]
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    vector = attribute_vector_by(model, train, note_density)
    held_out = density_melodies(64, seed=5)
    shift = attribute_shift(model, held_out, vector, note_density, scales=(-2, -1, 0, 1, 2))
    means = shift.means
    assert abs(shift.reconstruction - shift.original) < 0.1  # the model reconstructs the density
    assert means[-2.0] < means[0.0] < means[2.0]
    assert means[-1.0] < means[0.0] < means[1.0]
    assert means[2.0] - means[-2.0] > 0.5  # a density goes from 1/8 to 1
