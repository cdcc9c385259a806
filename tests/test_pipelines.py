"""The pipeline's checks of what it is given: a prior of another code grid, guidance scales, missing paths.
(Sampling, saving and loading: tests/models/test_prior.py.)"""

import math

import pytest
import torch

import hf_vq
from hf_vq import UsageError
from hf_vq.metrics import bits_per_dim

from .conftest import vqgan

# The tiny VQ-GAN of tests/conftest.py: 32 codes, 16x16 images -> 8x8 codes (downsampling factor 2).
TINY_PRIOR = dict(codebook_size=32, num_classes=3, n_layer=1, n_head=2, n_embd=16)


def prior(grid=(8, 8), **overrides) -> hf_vq.VQPriorForCausalLM:
    return hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(**TINY_PRIOR, token_grid_size=grid, **overrides)).eval()


def test_a_prior_of_another_code_grid_is_refused_naming_both_grids():
    with pytest.raises(UsageError, match="prior models 4x4 code grids .* encodes 16x16 images into 8x8 grids"):
        hf_vq.VQImageGenerationPipeline(vqgan(), prior((4, 4)))
    with pytest.raises(UsageError, match="prior models 8x4 code grids"):
        hf_vq.VQImageGenerationPipeline(vqgan(), prior((8, 4)))
    hf_vq.VQImageGenerationPipeline(vqgan(), prior((8, 8)))
    # At another resolution, the grid is the VQ model's at that resolution: 8x8 images give 4x4 codes.
    prior((4, 4)).check_vq_model(vqgan(), resolution=8)
    with pytest.raises(UsageError, match="encodes 8x8 images into 4x4 grids"):
        prior((8, 8)).check_vq_model(vqgan(), resolution=8)


def test_bits_per_dim_with_a_learned_prior_checks_the_grid_at_the_images_size():
    model, images = vqgan().eval(), torch.rand(2, 3, 8, 8) * 2 - 1  # 8x8 images: 4x4 codes
    labels = torch.tensor([0, 1])
    with pytest.raises(UsageError, match="prior models 8x8 code grids .* into 4x4 grids"):
        bits_per_dim(model, images, prior((8, 8)), class_labels=labels)
    assert bits_per_dim(model, images, prior((4, 4)), class_labels=labels)["bits_per_dim"] > 0


@pytest.mark.parametrize("scale", [0, -1.0, math.nan, math.inf, -math.inf, "2", True, None])
def test_guidance_scale_must_be_a_finite_number_above_zero(scale):
    pipe = hf_vq.VQImageGenerationPipeline(vqgan(), prior())
    with pytest.raises(UsageError, match="`guidance_scale` must be a finite number > 0"):
        pipe(class_labels=[0], guidance_scale=scale)


def test_a_guidance_scale_below_or_above_one_samples():
    pipe = hf_vq.VQImageGenerationPipeline(vqgan(), prior())
    for scale in (0.5, 3):
        assert pipe(class_labels=[1], guidance_scale=scale, seed=0, output_type="pt").shape == (1, 3, 16, 16)


def test_a_missing_local_pipeline_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=f"no such file or directory: {tmp_path / 'pipe'}"):
        hf_vq.VQImageGenerationPipeline.from_pretrained(tmp_path / "pipe")
