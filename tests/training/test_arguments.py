"""Training arguments: recipes and the command line, parsed and checked."""

import pytest

import hf_vq
from hf_vq.training import parse_arguments

from ..conftest import ROOT
from .test_trainer import write_recipe


def test_command_line_overrides_the_recipe_and_bad_arguments_fail(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", "vqgan")
    parsed = parse_arguments(
        with_gan=True, argv=["--config", str(recipe), "--output_dir", "x", "--disc_weight", "0.5"]
    )
    assert parsed.gan.disc_weight == 0.5 and parsed.training.max_train_steps == 4
    assert parsed.model_config["num_vq_embeddings"] == 16 and parsed.discriminator_config["num_filters"] == 8
    with pytest.raises(ValueError, match="output_dir"):
        parse_arguments(argv=["--max_train_steps", "3"])
    with pytest.raises(ValueError, match="max_train_steps"):
        parse_arguments(argv=["--output_dir", "x", "--max_train_steps", "0"])
    with pytest.raises(ValueError, match="mixed_precision"):
        parse_arguments(argv=["--output_dir", "x", "--mixed_precision", "fp8"])
    (tmp_path / "bad.yaml").write_text("output_dir: x\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_arguments(argv=["--config", str(tmp_path / "bad.yaml")])


@pytest.mark.parametrize("recipe", sorted((ROOT / "training" / "configs").glob("vqgan_*.yaml")), ids=lambda p: p.stem)
def test_vqgan_recipes_parse_and_build_their_configs(recipe):
    parsed = parse_arguments(with_gan=True, argv=["--config", str(recipe), "--output_dir", "unused"])
    config = hf_vq.VQGANConfig(**parsed.model_config)
    assert config.sample_size == parsed.training.resolution
    from hf_vq.models.discriminator import PatchDiscriminatorConfig

    PatchDiscriminatorConfig(**parsed.discriminator_config)


def test_vae_and_prior_recipes_parse_and_build_their_configs():
    parsed = parse_arguments(argv=["--config", str(ROOT / "training/configs/vae_digits.yaml"), "--output_dir", "x"])
    hf_vq.VAEConfig(**parsed.model_config)
    parsed = parse_arguments(
        with_prior=True, argv=["--config", str(ROOT / "training/configs/prior_digits.yaml"), "--output_dir", "x"]
    )
    assert parsed.prior.class_dropout_prob == 0.1 and parsed.training.label_column == "label"
    hf_vq.VQPriorConfig(**parsed.model_config, codebook_size=64, token_grid_size=(4, 4), num_classes=10)


def test_tamings_f16_recipe_is_tamings_config():
    parsed = parse_arguments(
        with_gan=True,
        argv=["--config", str(ROOT / "training/configs/vqgan_f16_imagenet.yaml"), "--output_dir", "unused"],
    )
    training, gan = parsed.training, parsed.gan
    assert (training.adam_beta1, training.adam_beta2, training.learning_rate, training.scale_lr) == (
        0.5,
        0.9,
        4.5e-6,
        True,
    )
    assert (gan.disc_weight, gan.disc_loss, training.codebook_weight) == (0.8, "hinge", 1.0)
    config = hf_vq.VQGANConfig(**parsed.model_config)
    assert config.to_dict() == hf_vq.VQGANConfig().to_dict()  # our defaults are taming's f16 model
    assert parsed.discriminator_config == {"num_layers": 3, "num_filters": 64, "norm_type": "batch"}
