"""What the VQ models share (`VQPreTrainedModel`): output fields, the index round trip, exact save/load with the
quantizer's state, training, and input checks, for the VQ-GAN and the VQ-VAE alike."""

import pytest
import torch
from transformers import AutoModel

from hf_vq.losses import reconstruction_loss

from ..conftest import QUANTIZER_VARIANTS, assert_state_dicts_equal, vqgan, vqvae

FAMILIES = {"vqgan": vqgan, "vqvae": vqvae}


@pytest.mark.parametrize("family", FAMILIES)
def test_output_fields_shapes_and_dtypes(family, images):
    model = FAMILIES[family]().eval()
    out = model(images)
    grid = (4, 8, 8) if family == "vqgan" else (4, 4, 4)
    assert out.reconstruction.shape == images.shape and out.reconstruction.dtype == torch.float32
    assert out.indices.shape == grid and out.indices.dtype == torch.int64
    assert out.quantized.shape == (grid[0], model.config.vq_embed_dim, *grid[1:])
    for name in ("codebook_loss", "commitment_loss", "quantizer_loss", "perplexity", "usage"):
        assert getattr(out, name).shape == (), name
    assert 0 < out.usage <= 1 and 1 <= out.perplexity <= model.config.num_vq_embeddings


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", QUANTIZER_VARIANTS)
def test_decode_indices_of_encode_indices_is_exactly_the_forward_reconstruction(family, variant, images):
    model = FAMILIES[family](**QUANTIZER_VARIANTS[variant])
    model.train()
    model(images)  # one training step's codebook maintenance (k-means, EMA, restarts) first
    model.eval()
    indices = model.encode_indices(images)
    torch.testing.assert_close(model.decode_indices(indices), model(images).reconstruction, rtol=0, atol=0)
    torch.testing.assert_close(model.decode(model.encode(images)), model(images).reconstruction, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", ["plain", "ema", "fsq"])
def test_save_and_load_are_exact_including_quantizer_state(tmp_path, family, variant, images):
    model = FAMILIES[family](**QUANTIZER_VARIANTS[variant]).train()
    model(images)  # moves EMA statistics away from their initial values
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is type(model)
    assert_state_dicts_equal(loaded, model)
    model.eval()
    torch.testing.assert_close(loaded(images).reconstruction, model(images).reconstruction, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_optimizer_steps_lower_the_loss(family, smooth_images):
    model = FAMILIES[family](vq_kmeans_init=True, vq_dead_code_threshold=2).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        out = model(smooth_images)
        loss = reconstruction_loss(out.reconstruction, smooth_images) + out.quantizer_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_indices_raise(family):
    model = FAMILIES[family]()
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        model.decode_indices(torch.full((1, 4, 4), 32))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        model.decode_indices(torch.full((1, 4, 4), -1))
    with pytest.raises(ValueError, match="batch, height, width"):
        model.decode_indices(torch.zeros(1, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.decode_indices(torch.zeros(1, 4, 4))


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_images_raise(family):
    model = FAMILIES[family]()
    with pytest.raises(ValueError, match="in_channels=3"):
        model(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="not divisible"):
        model.encode_indices(torch.zeros(1, 3, 15, 16))
