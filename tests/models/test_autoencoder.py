import pytest
import torch
from transformers import AutoModel

import hf_vq
from hf_vq.losses import reconstruction_loss

from ..conftest import TINY_BACKBONE, assert_state_dicts_equal


def make(**overrides) -> hf_vq.AutoencoderModel:
    return hf_vq.AutoencoderModel(hf_vq.AutoencoderConfig(**{**TINY_BACKBONE, **overrides}))


def test_shapes_dtypes_and_the_two_halves(tiny_autoencoder, images):
    output = tiny_autoencoder(images)
    assert output.reconstruction.shape == (4, 3, 16, 16) and output.reconstruction.dtype == torch.float32
    assert output.latents.shape == (4, 4, 8, 8)
    latents = tiny_autoencoder.encode(images)
    torch.testing.assert_close(latents, output.latents, rtol=0, atol=0)
    torch.testing.assert_close(tiny_autoencoder.decode(latents), output.reconstruction, rtol=0, atol=0)


def test_convolutions_get_pytorch_default_init_not_transformers_normal(tiny_autoencoder):
    # transformers would draw N(0, 0.02); the fan-in scaled default for conv_in (fan_in 27) has std ~0.11.
    std = tiny_autoencoder.encoder.conv_in.weight.std().item()
    assert 0.08 < std < 0.14
    assert tiny_autoencoder.encoder.conv_norm_out.weight.eq(1).all()


def test_save_and_load_are_exact(tmp_path, tiny_autoencoder, images):
    tiny_autoencoder.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is hf_vq.AutoencoderModel
    assert_state_dicts_equal(loaded, tiny_autoencoder)
    loaded.eval()
    torch.testing.assert_close(loaded(images).reconstruction, tiny_autoencoder(images).reconstruction, rtol=0, atol=0)


def test_auto_model_from_config():
    model = AutoModel.from_config(hf_vq.AutoencoderConfig(**TINY_BACKBONE))
    assert type(model) is hf_vq.AutoencoderModel


@pytest.mark.parametrize("corruption", ["gaussian", "mask"])
def test_denoising_corrupts_only_in_training_mode(images, corruption):
    model = make(corruption=corruption, noise_std=0.3, mask_ratio=0.5)
    clean = images.clone()
    model.eval()
    torch.testing.assert_close(model(images).reconstruction, model.decode(model.encode(images)), rtol=0, atol=0)
    model.train()
    trained = model(images, generator=torch.Generator().manual_seed(7))
    corrupted = model.corrupt(images, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(corrupted, images)
    torch.testing.assert_close(trained.latents, model.encode(corrupted), rtol=0, atol=0)
    # the clean image stays untouched, to serve as the target
    torch.testing.assert_close(images, clean, rtol=0, atol=0)


def test_gaussian_corruption_has_the_configured_std():
    model = make(corruption="gaussian", noise_std=0.3)
    images = torch.zeros(64, 3, 16, 16)
    noise = model.corrupt(images, generator=torch.Generator().manual_seed(0))
    assert abs(noise.std().item() - 0.3) < 0.01 and abs(noise.mean().item()) < 0.01


def test_mask_corruption_masks_the_configured_ratio_of_pixels_across_channels():
    model = make(corruption="mask", mask_ratio=0.25)
    images = torch.ones(64, 3, 16, 16)
    masked = model.corrupt(images, generator=torch.Generator().manual_seed(0)) == -1.0  # (B, C, H, W)
    assert torch.equal(masked.all(dim=1), masked.any(dim=1))  # all channels of a pixel together
    assert abs(masked[:, 0].float().mean().item() - 0.25) < 0.02


def test_plain_autoencoder_does_not_corrupt(images):
    model = make().train()
    assert model.corrupt(images) is images


def test_k_sparse_keeps_exactly_the_k_largest_activations(images):
    k = 20
    model = make(sparsity_k=k).eval()
    dense = model.encoder(images).flatten(1)  # (B, 256)
    sparse = model.encode(images).flatten(1)
    assert (sparse != 0).sum(dim=1).tolist() == [k] * len(images)
    kept = sparse != 0
    threshold = dense.topk(k, dim=1).values[:, -1:]
    assert torch.equal(kept, dense >= threshold)
    torch.testing.assert_close(sparse[kept], dense[kept], rtol=0, atol=0)


def test_k_sparse_gradients_reach_only_the_kept_units(images):
    model = make(sparsity_k=10)
    dense = model.encoder(images).detach().requires_grad_(True)
    model.sparsify(dense).sum().backward()
    assert (dense.grad != 0).flatten(1).sum(dim=1).tolist() == [10] * len(images)


def test_k_sparse_larger_than_a_small_inputs_latent_raises():
    model = make(sparsity_k=100)  # 4x8x8 = 256 activations at 16x16; 4x4x4 = 64 at 8x8
    with pytest.raises(ValueError, match="sparsity_k"):
        model(torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize(
    ("shape", "message"),
    [((2, 1, 16, 16), "in_channels=3"), ((2, 3, 15, 16), "not divisible"), ((3, 16, 16), "shape")],
)
def test_wrong_inputs_raise_clear_value_errors(tiny_autoencoder, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_autoencoder(torch.zeros(shape))


def test_wrong_latents_raise_clear_value_errors(tiny_autoencoder):
    with pytest.raises(ValueError, match="latent_channels"):
        tiny_autoencoder.decode(torch.zeros(1, 3, 8, 8))


def test_integer_images_are_rejected(tiny_autoencoder):
    with pytest.raises(ValueError, match="float"):
        tiny_autoencoder(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))


def test_any_size_divisible_by_the_factor_is_accepted(tiny_autoencoder):
    assert tiny_autoencoder(torch.zeros(1, 3, 24, 32)).reconstruction.shape == (1, 3, 24, 32)


@pytest.mark.parametrize("overrides", [{}, {"corruption": "gaussian"}, {"sparsity_k": 64}])
def test_a_few_optimizer_steps_lower_the_loss(images, overrides):
    model = make(**overrides).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = reconstruction_loss(model(images).reconstruction, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gradient_checkpointing_gives_the_same_gradients(images):
    model = make()
    reference = make()
    reference.load_state_dict(model.state_dict())
    model.activation_checkpointing_enable()
    assert model.encoder.gradient_checkpointing and model.decoder.gradient_checkpointing
    model.train(), reference.train()
    for m in (model, reference):
        reconstruction_loss(m(images).reconstruction, images).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
