"""The diffusers mappings (`hf_vq.conversion.diffusers`): config fields both ways, state-dict keys, refusals. The
models' `from_diffusers` / `to_diffusers`, output for output, are tested in tests/models/test_vqgan.py and
test_vae.py."""

import pytest
from diffusers import AutoencoderKL, VQModel

import hf_vq
from hf_vq.conversion.diffusers import (
    autoencoder_kl_config_from_vae,
    vae_config_from_autoencoder_kl,
    vq_model_config_from_vqgan,
    vq_model_state_dict,
    vqgan_config_from_vq_model,
)
from hf_vq.modules.quantizers import QUANTIZER_STATE_KEYS

from ..conftest import QUANTIZER_VARIANTS, TINY_VQGAN, vqgan

TINY_DIFFUSERS = dict(
    block_out_channels=(16, 32),
    down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
    up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=16,
)


def test_vq_model_config_round_trips_through_vqgan_config():
    vq_model = VQModel(**TINY_DIFFUSERS, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=32)
    kwargs = vqgan_config_from_vq_model(vq_model.config)
    assert kwargs["block_out_channels"] == (16, 32) and kwargs["num_vq_embeddings"] == 32
    assert "force_upcast" not in kwargs  # a VQModel field that VQGANConfig does not carry
    back = vq_model_config_from_vqgan(hf_vq.VQGANConfig(**kwargs))
    assert back == kwargs
    assert VQModel(**back).state_dict().keys() == vq_model.state_dict().keys()


def test_vq_model_config_refuses_movq_and_quantizers_diffusers_lacks():
    with pytest.raises(ValueError, match="MoVQ"):
        vqgan_config_from_vq_model({**TINY_DIFFUSERS, "norm_type": "spatial"})
    for variant in ("cosine-factorized", "fsq"):
        with pytest.raises(ValueError, match="diffusers' VQModel"):
            vq_model_config_from_vqgan(hf_vq.VQGANConfig(**{**TINY_VQGAN, **QUANTIZER_VARIANTS[variant]}))


def test_vq_model_state_dict_drops_exactly_the_quantizers_training_state():
    state_dict = vqgan(vq_codebook_update="ema", vq_dead_code_threshold=2).state_dict()
    converted = vq_model_state_dict(state_dict)
    assert state_dict.keys() - converted.keys() == set(QUANTIZER_STATE_KEYS)
    assert all(converted[key] is state_dict[key] for key in converted)  # the same tensors, key for key


def test_autoencoder_kl_config_round_trips_through_vae_config():
    autoencoder_kl = AutoencoderKL(**TINY_DIFFUSERS, latent_channels=4, shift_factor=0.1)
    kwargs = vae_config_from_autoencoder_kl(autoencoder_kl.config)
    assert kwargs["shift_factor"] == 0.1 and kwargs["latent_channels"] == 4
    back = autoencoder_kl_config_from_vae(hf_vq.VAEConfig(**kwargs))
    assert back == kwargs
    assert AutoencoderKL(**back).state_dict().keys() == hf_vq.VAEModel(hf_vq.VAEConfig(**kwargs)).state_dict().keys()
