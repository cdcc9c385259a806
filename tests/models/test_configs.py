import json
import logging

import pytest
from transformers import AutoConfig, AutoModel

import hf_vq
from hf_vq.utils.configuration_utils import check_config_keys

from ..conftest import TINY_BACKBONE, TINY_VQGAN, TINY_VQVAE

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


# ----- unknown keys (issue 16, item 5) -----

# (config class, tiny keyword arguments, a typo, the field it should suggest), one per family.
TINY_FAMILY_CONFIGS = [
    (hf_vq.AutoencoderConfig, TINY_BACKBONE, "norm_num_group", "norm_num_groups"),
    (hf_vq.VAEConfig, TINY_BACKBONE, "free_bit", "free_bits"),
    (hf_vq.VQVAEConfig, TINY_VQVAE, "num_embeddings", "num_vq_embeddings"),
    (hf_vq.VQGANConfig, TINY_VQGAN, "norm_num_group", "norm_num_groups"),
    (hf_vq.PatchDiscriminatorConfig, {"num_filters": 8, "num_layers": 1}, "n_layers", "num_layers"),
    (hf_vq.VQPriorConfig, {"codebook_size": 16, "token_grid_size": (2, 2), "n_layer": 1, "n_head": 2, "n_embd": 8},
     "n_embed", "n_embd"),
]  # fmt: skip
FAMILY_IDS = [config_class.__name__ for config_class, *_ in TINY_FAMILY_CONFIGS]


@pytest.mark.parametrize(("config_class", "kwargs", "typo", "suggestion"), TINY_FAMILY_CONFIGS, ids=FAMILY_IDS)
def test_a_keyword_typo_is_an_error_naming_the_class_and_the_closest_field(config_class, kwargs, typo, suggestion):
    with pytest.raises(hf_vq.UsageError) as error:
        config_class(**kwargs, **{typo: 8})
    assert str(error.value) == f"unknown key {typo!r} in {config_class.__name__} (did you mean {suggestion!r}?)"


def test_every_unknown_key_is_named_with_its_suggestion_if_any():
    with pytest.raises(hf_vq.UsageError) as error:
        hf_vq.VQGANConfig(**TINY_VQGAN, vq_bta=0.5, zzz=1)
    assert str(error.value) == (
        "unknown keys in VQGANConfig 'vq_bta' (did you mean 'vq_beta'?), 'zzz' (no field of VQGANConfig is close)"
    )


def test_check_config_keys_names_the_recipe_section():
    check_config_keys(hf_vq.VQGANConfig, TINY_VQGAN, where="model:")
    with pytest.raises(
        hf_vq.UsageError, match=r"^unknown key 'norm_num_group' in model: \(did you mean 'norm_num_groups'\?\)$"
    ):
        check_config_keys(hf_vq.VQGANConfig, {**TINY_VQGAN, "norm_num_group": 8}, where="model:")


@pytest.mark.parametrize(("config_class", "kwargs", "typo", "suggestion"), TINY_FAMILY_CONFIGS, ids=FAMILY_IDS)
def test_keys_that_transformers_writes_or_passes_are_accepted(config_class, kwargs, typo, suggestion):
    transformers_keys = {
        "model_type": config_class.model_type,
        "transformers_version": "5.0.0",
        "architectures": ["SomeModel"],
        "dtype": "float32",
        "torch_dtype": "float32",
        "auto_map": {"AutoConfig": "configuration_x.XConfig"},
        "_name_or_path": "some/model",
        "return_dict": True,
        "output_hidden_states": False,
        "output_attentions": False,
        "chunk_size_feed_forward": 0,
        "id2label": {"0": "a", "1": "b"},
    }
    config = config_class(**kwargs, **transformers_keys)
    assert config.architectures == ["SomeModel"] and config.auto_map == transformers_keys["auto_map"]


def test_the_priors_gpt2_aliases_keep_working():
    config = hf_vq.VQPriorConfig(
        codebook_size=16, token_grid_size=(2, 2), hidden_size=8, num_hidden_layers=1, num_attention_heads=2
    )
    assert (config.n_embd, config.n_layer, config.n_head) == (8, 1, 2)
    assert config.hidden_size == 8 and config.max_position_embeddings == config.n_positions == 5


@pytest.mark.parametrize(("config_class", "kwargs", "typo", "suggestion"), TINY_FAMILY_CONFIGS, ids=FAMILY_IDS)
def test_a_saved_config_round_trips_and_builds_from_its_json(tmp_path, config_class, kwargs, typo, suggestion):
    config = config_class(**kwargs)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is config_class
    assert {**loaded.to_dict(), "_name_or_path": ""} == config.to_dict()
    # What `--model_config config.json` does: the saved keys, transformers' own included, as keyword arguments.
    rebuilt = config_class(**json.loads((tmp_path / "config.json").read_text()))
    assert rebuilt.to_diff_dict() == config.to_diff_dict()


def test_a_saved_model_with_an_unknown_key_loads_and_warns_once(tmp_path, caplog):
    hf_vq.VQGANModel(hf_vq.VQGANConfig(**TINY_VQGAN)).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "codebook_from_the_future": 3}))
    with caplog.at_level(logging.WARNING, logger="hf_vq"):
        model = AutoModel.from_pretrained(tmp_path)
        again = hf_vq.VQGANConfig.from_pretrained(tmp_path)
        from_json = hf_vq.VQGANConfig.from_json_file(path)
    assert type(model) is hf_vq.VQGANModel
    assert model.config.codebook_from_the_future == again.codebook_from_the_future == 3
    assert from_json.codebook_from_the_future == 3
    warnings = [record.getMessage() for record in caplog.records if "codebook_from_the_future" in record.getMessage()]
    assert len(warnings) == 1 and "unknown key 'codebook_from_the_future' in the saved VQGANConfig" in warnings[0]
    # Loading does not relax the check for configs built in code afterwards.
    with pytest.raises(hf_vq.UsageError, match="codebook_from_the_future"):
        hf_vq.VQGANConfig(**TINY_VQGAN, codebook_from_the_future=3)
