import pytest
import torch
from diffusers import AutoencoderKL
from transformers import AutoModel

import hf_vq
from hf_vq.losses import reconstruction_loss

from ..conftest import TINY_BACKBONE, assert_state_dicts_equal


def make(**overrides) -> hf_vq.VAEModel:
    return hf_vq.VAEModel(hf_vq.VAEConfig(**{**TINY_BACKBONE, **overrides}))


def test_output_shapes_and_dtypes(tiny_vae, images):
    output = tiny_vae(images)
    assert output.reconstruction.shape == (4, 3, 16, 16)
    for name in ("latents", "latent_mean", "latent_logvar"):
        assert getattr(output, name).shape == (4, 4, 8, 8), name
    assert output.kl.shape == (4,) and output.kl_loss.shape == ()
    assert all(t.dtype == torch.float32 for t in output.values())


def test_kl_is_per_sample_in_nats(tiny_vae, images):
    output = tiny_vae(images)
    mean, logvar = output.latent_mean, output.latent_logvar
    by_hand = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))
    torch.testing.assert_close(output.kl, by_hand)
    torch.testing.assert_close(output.kl_loss, output.kl.mean())  # beta 1, no free bits


def test_beta_scales_the_kl_term(images):
    vae = make(beta=1.0).eval()
    weighted = make(beta=0.3).eval()
    weighted.load_state_dict(vae.state_dict())
    torch.testing.assert_close(weighted(images).kl_loss, 0.3 * vae(images).kl_loss)


def test_free_bits_hinge_per_latent_channel_against_hand_computation():
    vae = make(free_bits=3.0, beta=2.0)
    # channel 0: KL 0.5 * 4 = 2 nats per position, 8 positions -> 16 nats, over the budget
    # channel 1: KL 0.5 * (0.25 + 1 - 1 - 0) = 0.125 per position, 8 positions -> 1 nat, under the 3-nat budget
    mean = torch.zeros(2, 2, 2, 4)
    mean[:, 0] = 2.0
    mean[:, 1] = 0.5
    posterior = hf_vq.DiagonalGaussian(mean.requires_grad_(True), torch.zeros(2, 2, 2, 4))
    loss = vae.kl_loss(posterior)
    torch.testing.assert_close(loss, torch.tensor(2.0 * (16.0 + 3.0)))
    loss.backward()
    assert mean.grad[:, 1].abs().sum() == 0  # no push towards the prior under the budget
    assert mean.grad[:, 0].abs().sum() > 0


def test_posterior_sampling_in_training_mean_in_eval(images):
    vae = make()
    vae.eval()
    first, second = vae(images), vae(images)
    torch.testing.assert_close(first.latents, first.latent_mean, rtol=0, atol=0)
    torch.testing.assert_close(first.reconstruction, second.reconstruction, rtol=0, atol=0)
    vae.train()
    sampled = vae(images, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(sampled.latents, sampled.latent_mean)
    again = vae(images, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sampled.latents, again.latents, rtol=0, atol=0)
    vae.eval()
    forced = vae(images, sample_posterior=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(forced.latents, forced.latent_mean)


def test_the_two_halves_compose_to_forward(tiny_vae, images):
    posterior = tiny_vae.encode(images)
    torch.testing.assert_close(tiny_vae.decode(posterior.mode()), tiny_vae(images).reconstruction, rtol=0, atol=0)


def test_sample_from_the_prior(tiny_vae):
    samples = tiny_vae.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 3, 16, 16) and not samples.requires_grad
    again = tiny_vae.sample(5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, again, rtol=0, atol=0)
    latents = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, tiny_vae.decode(latents), rtol=0, atol=0)
    assert tiny_vae.sample(1, latent_size=4).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("bad", [0, -2, 2.0, True])
def test_sample_rejects_bad_counts(tiny_vae, bad):
    with pytest.raises(ValueError, match="num_samples"):
        tiny_vae.sample(bad)


def test_save_and_load_are_exact(tmp_path, tiny_vae, images):
    tiny_vae.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is hf_vq.VAEModel
    assert_state_dicts_equal(loaded, tiny_vae)
    loaded.eval()
    torch.testing.assert_close(loaded(images).reconstruction, tiny_vae(images).reconstruction, rtol=0, atol=0)


def diffusers_kl(**overrides) -> AutoencoderKL:
    kwargs = dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=16,
    )
    return AutoencoderKL(**{**kwargs, **overrides}).eval()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"use_quant_conv": False, "use_post_quant_conv": False, "scaling_factor": 0.3611, "shift_factor": 0.1159},
        {"mid_block_add_attention": False, "layers_per_block": 2, "act_fn": "mish"},
        {
            "down_block_types": ("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
            "up_block_types": ("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
        },
    ],
)
def test_from_diffusers_gives_the_same_posterior_and_decode(images, overrides):
    torch.manual_seed(0)
    reference = diffusers_kl(**overrides)
    vae = hf_vq.VAEModel.from_diffusers(reference, beta=0.5).eval()
    assert vae.config.beta == 0.5
    assert vae.state_dict().keys() == reference.state_dict().keys()
    with torch.no_grad():
        expected = reference.encode(images).latent_dist
        posterior = vae.encode(images)
        torch.testing.assert_close(posterior.mean, expected.mean, rtol=0, atol=1e-5)
        torch.testing.assert_close(posterior.logvar, expected.logvar, rtol=0, atol=1e-5)
        decoded = reference.decode(expected.mean).sample
        torch.testing.assert_close(vae.decode(posterior.mean), decoded, rtol=0, atol=1e-5)
        torch.testing.assert_close(vae(images).reconstruction, reference(images).sample, rtol=0, atol=1e-5)

    back = vae.to_diffusers()
    assert_state_dicts_equal(back, reference)
    for key in ("scaling_factor", "shift_factor", "use_quant_conv", "down_block_types", "act_fn"):
        assert back.config[key] == reference.config[key], key


def test_to_diffusers_of_a_trained_like_model_matches_outputs(tiny_vae, images):
    with torch.no_grad():
        for p in tiny_vae.parameters():
            p.add_(0.01 * torch.randn_like(p))
        kl = tiny_vae.to_diffusers().eval()
        torch.testing.assert_close(kl(images).sample, tiny_vae(images).reconstruction, rtol=0, atol=1e-5)


def test_a_few_optimizer_steps_lower_the_loss(images):
    vae = make(beta=0.01).train()
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        output = vae(images, generator=torch.Generator().manual_seed(step))
        loss = reconstruction_loss(output.reconstruction, images, reduction="sum") + output.kl_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_wrong_inputs_raise_clear_value_errors(tiny_vae):
    with pytest.raises(ValueError, match="in_channels=3"):
        tiny_vae(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="not divisible"):
        tiny_vae.encode(torch.zeros(1, 3, 16, 13))
    with pytest.raises(ValueError, match="4 channels"):
        tiny_vae.decode(torch.zeros(1, 8, 8, 8))
