"""Recipes: a key of the `model:` or `discriminator:` section that the config does not have fails before the run
starts, with the closest valid name; a saved `config.json` given as `--model_config` is a valid model config."""

import pytest

import hf_vq
from hf_vq.training import main, parse_arguments
from hf_vq.utils.configuration_utils import check_config_keys

from .test_trainer import TINY_MODELS, write_recipe


def test_a_recipe_typo_is_named_with_its_suggestion_and_nothing_is_written(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "vqgan", model={**TINY_MODELS["vqgan"], "norm_num_group": 8})
    output_dir = tmp_path / "run"
    with pytest.raises(hf_vq.UsageError) as error:
        main("vqgan", ["--config", str(recipe), "--output_dir", str(output_dir)])
    assert str(error.value) == "unknown key 'norm_num_group' in model: (did you mean 'norm_num_groups'?)"
    assert not output_dir.exists()


def test_a_discriminator_typo_is_named_with_its_suggestion(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "vqgan", discriminator={"num_filters": 8, "n_layers": 1})
    output_dir = tmp_path / "run"
    with pytest.raises(hf_vq.UsageError) as error:
        main("vqgan", ["--config", str(recipe), "--output_dir", str(output_dir)])
    assert str(error.value) == "unknown key 'n_layers' in discriminator: (did you mean 'num_layers'?)"
    assert not output_dir.exists()


def test_a_saved_models_config_json_is_a_valid_model_config(tmp_path):
    saved = hf_vq.VQGANConfig(**TINY_MODELS["vqgan"])
    hf_vq.VQGANModel(saved).save_pretrained(tmp_path / "saved")
    recipe = write_recipe(tmp_path / "r.yaml", "vqgan", model={})
    parsed = parse_arguments(
        with_gan=True,
        argv=[
            "--config",
            str(recipe),
            "--output_dir",
            "unused",
            "--model_config",
            str(tmp_path / "saved/config.json"),
        ],
    )
    assert {"model_type", "transformers_version", "architectures", "dtype"} <= set(parsed.model_config)
    # What `main` checks, then what the trainer builds.
    check_config_keys(hf_vq.VQGANConfig, parsed.model_config, where="model:")
    config = hf_vq.VQGANConfig(**parsed.model_config)
    assert config.to_diff_dict() == saved.to_diff_dict()
