import json

import pytest
from transformers import AutoConfig

import hf_vq

from ..conftest import TINY_BACKBONE

CONFIG_CLASSES = [hf_vq.AutoencoderConfig, hf_vq.VAEConfig]

# (field overrides, text the error must contain)
BAD_BACKBONES = [
    ({"sample_size": 17}, "sample_size"),  # not divisible by the downsampling factor 2
    ({"sample_size": 0}, "sample_size"),
    ({"in_channels": 0}, "in_channels"),
    ({"out_channels": 2.5}, "out_channels"),
    ({"latent_channels": -1}, "latent_channels"),
    ({"layers_per_block": 0}, "layers_per_block"),
    ({"block_out_channels": []}, "block_out_channels"),
    ({"block_out_channels": [16, 0]}, "block_out_channels[1]"),
    ({"block_out_channels": 16}, "block_out_channels"),
    ({"block_out_channels": [16, 36]}, "norm_num_groups"),  # 36 channels in 8 groups
    ({"norm_num_groups": 0}, "norm_num_groups"),
    ({"act_fn": "tanh"}, "act_fn"),
    ({"down_block_types": ["DownEncoderBlock2D"]}, "down_block_types"),  # one entry for two levels
    ({"down_block_types": ["DownEncoderBlock2D", "DownBlock2D"]}, "down_block_types[1]"),
    ({"up_block_types": ["UpDecoderBlock2D", "UpBlock2D"]}, "up_block_types[1]"),
    ({"mid_block_add_attention": "yes"}, "mid_block_add_attention"),
]

BAD_FAMILY_FIELDS = [
    (hf_vq.AutoencoderConfig, {"corruption": "salt"}, "corruption"),
    (hf_vq.AutoencoderConfig, {"corruption": "gaussian", "noise_std": 0.0}, "noise_std"),
    (hf_vq.AutoencoderConfig, {"corruption": "mask", "mask_ratio": 1.0}, "mask_ratio"),
    (hf_vq.AutoencoderConfig, {"mask_ratio": 0.0}, "mask_ratio"),
    (hf_vq.AutoencoderConfig, {"sparsity_k": 0}, "sparsity_k"),
    (hf_vq.AutoencoderConfig, {"sparsity_k": 4 * 8 * 8 + 1}, "sparsity_k"),  # larger than the 4x8x8 latent
    (hf_vq.AutoencoderConfig, {"sparsity_k": 3.0}, "sparsity_k"),
    (hf_vq.VAEConfig, {"beta": -0.1}, "beta"),
    (hf_vq.VAEConfig, {"beta": float("nan")}, "beta"),
    (hf_vq.VAEConfig, {"free_bits": -1.0}, "free_bits"),
    (hf_vq.VAEConfig, {"use_quant_conv": 1}, "use_quant_conv"),
]


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
@pytest.mark.parametrize(("overrides", "field"), BAD_BACKBONES)
def test_bad_backbone_fields_raise_value_error_naming_the_field(config_class, overrides, field):
    with pytest.raises(ValueError) as error:
        config_class(**{**TINY_BACKBONE, **overrides})
    assert field in str(error.value)


@pytest.mark.parametrize(("config_class", "overrides", "field"), BAD_FAMILY_FIELDS)
def test_bad_family_fields_raise_value_error_naming_the_field(config_class, overrides, field):
    with pytest.raises(ValueError) as error:
        config_class(**{**TINY_BACKBONE, **overrides})
    assert field in str(error.value)


def test_sparsity_k_may_equal_the_latent_size():
    config = hf_vq.AutoencoderConfig(**TINY_BACKBONE, sparsity_k=4 * 8 * 8)
    assert config.latent_size == 8 and config.downsample_factor == 2


def test_block_types_default_to_plain_blocks_one_per_level():
    config = hf_vq.VAEConfig(**TINY_BACKBONE)
    assert config.down_block_types == ["DownEncoderBlock2D"] * 2
    assert config.up_block_types == ["UpDecoderBlock2D"] * 2


@pytest.mark.parametrize("config_class", CONFIG_CLASSES)
def test_config_json_round_trip_through_auto_config(tmp_path, config_class):
    config = config_class(**TINY_BACKBONE)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == config_class.model_type
    assert saved["model_type"].startswith("hf_vq_")
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is config_class
    assert {**loaded.to_dict(), "_name_or_path": ""} == config.to_dict()


def test_defaults_are_stable_diffusions_kl_f8_backbone():
    config = hf_vq.VAEConfig()
    assert config.block_out_channels == [128, 256, 512, 512]
    assert config.layers_per_block == 2 and config.latent_channels == 4 and config.downsample_factor == 8
