"""Every VQ-GAN recipe names the line that selects each other quantizer, and each such line gives a valid config
(with the codebook options the recipe's comment says to delete)."""

import re

import pytest
import yaml

import hf_vq

from ..conftest import ROOT

RECIPES = sorted((ROOT / "training" / "configs").glob("vqgan_*.yaml"))
CODEBOOK_OPTIONS = ("vq_codebook_update", "vq_kmeans_init", "vq_dead_code_threshold", "vq_use_l2_norm",
                    "vq_codebook_dim")  # fmt: skip
# What the comment says to delete (or add) with each line.
ENTROPY = ("vq_entropy_weight", "vq_entropy_decay_steps")
DELETED = {"simvq": (*CODEBOOK_OPTIONS, *ENTROPY),
           "lfq": (*CODEBOOK_OPTIONS, *ENTROPY, "vq_gradient"),
           "fsq": (*CODEBOOK_OPTIONS, *ENTROPY, "vq_gradient"),
           "residual": ("vq_use_l2_norm", "vq_codebook_dim", *ENTROPY)}  # fmt: skip
ADDED = {"residual": {"residual_depth": 2}, "fsq": {"fsq_levels": [8, 5, 5, 5], "num_vq_embeddings": None}}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_each_commented_quantizer_line_of_a_vqgan_recipe_selects_a_valid_quantizer(recipe):
    model = yaml.safe_load(recipe.read_text())["model"]
    lines = re.findall(r"^  # (quantizer_type|vq_gradient): (\w+)", recipe.read_text(), flags=re.M)
    # the other gradient: the rotation trick, or the straight-through copy where the recipe uses the rotation trick
    other_gradient = "ste" if model.get("vq_gradient") == "rotation" else "rotation"
    assert {value for _, value in lines} == {"simvq", other_gradient, "lfq", "residual", "fsq"}
    for key, value in lines:
        config = {name: v for name, v in model.items() if name not in DELETED.get(value, ())}
        config = {**config, key: value, **ADDED.get(value, {})}
        built = hf_vq.VQGANConfig(**config)
        assert getattr(built, key) == value
