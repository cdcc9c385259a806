"""The VQ-GAN: conversion from and to diffusers' `VQModel`, taming's defaults, config checks, float32 group norms."""

import copy

import pytest
import torch
from diffusers import VQModel

import hf_vq

from ..conftest import QUANTIZER_VARIANTS, TINY_VQGAN, assert_state_dicts_equal, vqgan


def diffusers_vq_model(attention: bool) -> VQModel:
    return VQModel(
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D" if attention else "DownEncoderBlock2D"),
        up_block_types=("AttnUpDecoderBlock2D" if attention else "UpDecoderBlock2D", "UpDecoderBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=8,
        vq_embed_dim=4,
        num_vq_embeddings=32,
        sample_size=16,
        mid_block_add_attention=attention,
    ).eval()


@pytest.mark.parametrize("attention", [True, False])
def test_from_diffusers_is_key_for_key_and_output_for_output(attention, images):
    reference = diffusers_vq_model(attention)
    with torch.no_grad():  # a spread-out codebook, so that many codes are in play
        reference.quantize.embedding.weight.normal_()
    model = hf_vq.VQGANModel.from_diffusers(reference).eval()
    assert model.config.down_block_types == list(reference.config.down_block_types)
    with torch.no_grad():
        latents = reference.encode(images).latents
        torch.testing.assert_close(model.encode(images), latents, rtol=0, atol=1e-5)
        _, _, (_, _, expected_indices) = reference.quantize(latents)
        assert torch.equal(model.encode_indices(images).flatten(), expected_indices.flatten())
        torch.testing.assert_close(model(images).reconstruction, reference(images).sample, rtol=0, atol=1e-5)
    back = model.to_diffusers()
    assert_state_dicts_equal(back, reference)
    assert back.config.down_block_types == reference.config.down_block_types


def test_to_diffusers_keeps_an_ema_codebook_and_drops_its_statistics(images):
    model = vqgan(vq_codebook_update="ema").train()
    model(images)
    converted = model.to_diffusers().eval()
    assert "quantize.ema_cluster_size" not in converted.state_dict()
    torch.testing.assert_close(converted.quantize.embedding.weight, model.quantize.embedding.weight, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(converted(images).sample, model(images).reconstruction, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["cosine-factorized", "fsq"])
def test_to_diffusers_refuses_quantizers_diffusers_does_not_have(variant):
    with pytest.raises(ValueError, match="diffusers' VQModel"):
        vqgan(**QUANTIZER_VARIANTS[variant]).to_diffusers()


def test_from_diffusers_takes_quantizer_options_and_keeps_the_codebook():
    reference = diffusers_vq_model(attention=False)
    model = hf_vq.VQGANModel.from_diffusers(reference, vq_codebook_update="ema", vq_kmeans_init=True)
    assert bool(model.quantize.initialized)  # a converted codebook is not re-initialized by k-means
    torch.testing.assert_close(model.quantize.ema_embed_sum, reference.quantize.embedding.weight, rtol=0, atol=0)


def test_vqgan_defaults_are_tamings_f16_model():
    config = hf_vq.VQGANConfig()
    assert config.block_out_channels == [128, 128, 256, 256, 512] and config.downsample_factor == 16
    assert config.down_block_types[-1] == "AttnDownEncoderBlock2D"
    assert config.up_block_types[0] == "AttnUpDecoderBlock2D"
    assert config.num_vq_embeddings == 1024 and config.vq_embed_dim == 256 and config.vq_beta == 0.25
    taming = hf_vq.VQGANConfig.from_taming(
        ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], resolution=256,
        z_channels=256, n_embed=1024, embed_dim=256,
    )  # fmt: skip
    assert taming.to_dict() == config.to_dict()


BAD_QUANTIZER_CONFIGS = [
    ({"quantizer_type": "fsq", "fsq_levels": [4, 4], "num_vq_embeddings": 32}, "num_vq_embeddings"),
    ({"quantizer_type": "fsq", "num_vq_embeddings": None}, "fsq_levels"),
    ({"quantizer_type": "fsq", "fsq_levels": [4, 4], "num_vq_embeddings": None, "vq_codebook_update": "ema"}, "FSQ"),
    ({"quantizer_type": "fsq", "fsq_levels": [4, 4], "num_vq_embeddings": None, "vq_use_l2_norm": True}, "FSQ"),
    ({"quantizer_type": "fsq", "fsq_levels": [4, 1], "num_vq_embeddings": None}, "fsq_levels"),
    ({"fsq_levels": [4, 4]}, "fsq_levels"),
    ({"quantizer_type": "rvq"}, "quantizer_type"),
    ({"vq_codebook_dim": 4}, "vq_codebook_dim"),  # not smaller than vq_embed_dim 4
    ({"vq_codebook_update": "kmeans"}, "vq_codebook_update"),
    ({"vq_ema_decay": 1.0}, "vq_ema_decay"),
    ({"vq_beta": -0.25}, "vq_beta"),
    ({"num_vq_embeddings": 1}, "num_vq_embeddings"),
    ({"vq_dead_code_threshold": 0}, "vq_dead_code_threshold"),
    ({"norm_type": "spatial"}, "norm_type"),
    ({"sample_size": 17}, "sample_size"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_QUANTIZER_CONFIGS)
def test_bad_vqgan_configs_raise_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        hf_vq.VQGANConfig(**{**TINY_VQGAN, **overrides})


def test_fsq_config_fills_in_its_codebook_size_and_round_trips(tmp_path):
    config = hf_vq.VQGANConfig(**{**TINY_VQGAN, **QUANTIZER_VARIANTS["fsq"]})
    assert config.num_vq_embeddings == 36
    config.save_pretrained(tmp_path)
    assert hf_vq.VQGANConfig.from_pretrained(tmp_path).num_vq_embeddings == 36


@pytest.mark.parametrize(
    ("overrides", "field"), [({"ch_mult": [2, 4]}, "ch_mult"), ({"attn_resolutions": [24]}, "attn_resolutions")]
)
def test_from_taming_rejects_layouts_diffusers_cannot_express(overrides, field):
    taming = dict(ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[], resolution=16, z_channels=8)
    with pytest.raises(ValueError, match=field):
        hf_vq.VQGANConfig.from_taming(**{**taming, **overrides}, n_embed=16, embed_dim=4)


def test_group_norms_normalize_in_float32_under_bf16_autocast(images):
    from hf_vq.modules.backbone import Float32GroupNorm

    model = vqgan().train()
    norms = [module for module in model.modules() if isinstance(module, torch.nn.GroupNorm)]
    assert norms and all(type(norm) is Float32GroupNorm for norm in norms)  # encoder, decoder, attention
    norm = norms[0]
    plain = torch.nn.GroupNorm(norm.num_groups, norm.num_channels, eps=norm.eps)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    plain.load_state_dict(norm.state_dict())  # the same keys
    x = torch.randn(2, norm.num_channels, 4, 4)
    assert torch.equal(norm(x), plain(x))  # float32: exactly nn.GroupNorm
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, plain(x.bfloat16().float()).bfloat16())  # normalized in float32, rounded once
    bf16_norm = copy.deepcopy(norm).to(torch.bfloat16)
    assert bf16_norm(x.bfloat16()).dtype == torch.bfloat16  # a bf16 model without autocast works too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(images)
    (output.reconstruction.float().square().mean() + output.quantizer_loss).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.encoder.parameters())
