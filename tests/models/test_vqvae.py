"""The VQ-VAE: the paper's architecture and config checks (the shared VQ behaviour is in test_modeling_vq.py)."""

import pytest
import torch

import hf_vq

from ..conftest import TINY_VQVAE


def test_vqvae_defaults_are_the_papers_cifar10_model():
    config = hf_vq.VQVAEConfig()
    assert (config.hidden_channels, config.num_vq_embeddings, config.vq_embed_dim) == (256, 512, 64)
    model = hf_vq.VQVAEModel(config)
    convs = model.encoder.downsamplers
    assert len(convs) == 2 and all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert len(model.encoder.residual_stack.layers) == 2
    assert model.encode_indices(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_channels": 33}, "hidden_channels"),
        ({"sample_size": 18}, "sample_size"),
        ({"num_downsamples": 0}, "num_downsamples"),
        ({"vq_codebook_dim": 8}, "vq_codebook_dim"),
    ],
)
def test_bad_vqvae_configs_raise_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        hf_vq.VQVAEConfig(**{**TINY_VQVAE, **overrides})
