import pytest
import torch

import hf_vq

# Tiny backbone shared by the model tests: 16x16 inputs, two levels (f = 2), 8x8 latents.
TINY_BACKBONE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=[16, 32],
    layers_per_block=1,
    norm_num_groups=8,
    latent_channels=4,
    sample_size=16,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def images() -> torch.Tensor:
    """(4, 3, 16, 16) images in [-1, 1]."""
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture
def smooth_images() -> torch.Tensor:
    """(4, 3, 16, 16) low-frequency images in [-1, 1] (upsampled 4x4 noise): learnable through a small bottleneck."""
    coarse = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=16, mode="bilinear", align_corners=False)


@pytest.fixture
def tiny_vae() -> hf_vq.VAEModel:
    return hf_vq.VAEModel(hf_vq.VAEConfig(**TINY_BACKBONE)).eval()


@pytest.fixture
def tiny_autoencoder() -> hf_vq.AutoencoderModel:
    return hf_vq.AutoencoderModel(hf_vq.AutoencoderConfig(**TINY_BACKBONE)).eval()


def assert_state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)
