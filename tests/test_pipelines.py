"""The pipeline's checks of what it is given (a prior of another code grid, guidance scales, missing paths), and
sampling, completion, saving and loading with either prior (the GPT prior alone: tests/models/test_prior.py)."""

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


# ----- either prior: sampling, completion, saving and loading -----


def pixelcnn(grid=(8, 8), **overrides) -> hf_vq.PixelCNNPriorModel:
    config = hf_vq.PixelCNNPriorConfig(codebook_size=32, num_classes=3, token_grid_size=grid, num_layers=3,
                                       hidden_channels=8, output_channels=16, **overrides)  # fmt: skip
    return hf_vq.PixelCNNPriorModel(config).eval()


PRIORS = {"gpt": prior, "pixelcnn": pixelcnn}


@pytest.mark.parametrize("kind", sorted(PRIORS))
def test_the_pipeline_round_trips_with_either_prior(kind, tmp_path):
    pipe = hf_vq.VQImageGenerationPipeline(vqgan(), PRIORS[kind]())
    images = pipe(class_labels=[0, 2], num_images=2, top_k=5, guidance_scale=1.5, seed=3, output_type="pt")
    assert images.shape == (4, 3, 16, 16)
    pipe.save_pretrained(tmp_path)
    loaded = hf_vq.VQImageGenerationPipeline.from_pretrained(tmp_path)  # AutoModel resolves either prior
    assert type(loaded.prior) is type(pipe.prior)
    again = loaded(class_labels=[0, 2], num_images=2, top_k=5, guidance_scale=1.5, seed=3, output_type="pt")
    torch.testing.assert_close(again, images)


@pytest.mark.parametrize("kind", sorted(PRIORS))
def test_completion_keeps_the_known_codes_of_images_and_of_grids(kind):
    vq_model = vqgan().eval()
    pipe = hf_vq.VQImageGenerationPipeline(vq_model, PRIORS[kind]())
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = vq_model.encode_indices(images)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:3] = True  # the first three rows: a raster prefix, which both priors complete
    completed = pipe.complete(images, mask, class_labels=[1, 2], top_k=4, seed=0, output_type="codes")
    assert completed.shape == (2, 8, 8) and torch.equal(completed[:, :3], codes[:, :3])
    assert torch.equal(
        pipe.complete(codes, mask, class_labels=[1, 2], top_k=4, seed=0, output_type="codes"), completed
    )
    decoded = pipe.complete(codes, mask, class_labels=[1, 2], seed=0, output_type="pt")
    assert decoded.shape == (2, 3, 16, 16)
    assert len(pipe.complete(codes, mask, class_labels=[1, 2], seed=0)) == 2  # PIL images
    with pytest.raises(UsageError, match="one label a grid"):
        pipe.complete(codes, mask, class_labels=[1])


def test_only_the_pixelcnn_completes_any_mask():
    vq_model = vqgan().eval()
    codes = torch.randint(0, 32, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5  # any mask, per grid
    completed = hf_vq.VQImageGenerationPipeline(vq_model, pixelcnn()).complete(
        codes, mask, [0, 1], output_type="codes"
    )
    assert torch.equal(completed[mask], codes[mask])
    with pytest.raises(UsageError, match="completes only a raster prefix"):
        hf_vq.VQImageGenerationPipeline(vq_model, prior()).complete(codes, mask, [0, 1])


def test_a_pipeline_refuses_what_is_no_prior():
    with pytest.raises(UsageError, match="must be a prior over codes"):
        hf_vq.VQImageGenerationPipeline(vqgan(), vqgan())


@pytest.mark.parametrize("kind", sorted(PRIORS))
def test_unknown_prompt_positions_may_hold_anything_but_known_ones_must_be_codes(kind):
    model = PRIORS[kind]()
    prompt = torch.full((1, 8, 8), -1)
    prompt[0, 0] = torch.arange(8)  # the first row known
    mask = prompt >= 0
    codes = model.sample_codes([1], prompt=prompt, prompt_mask=mask)
    assert torch.equal(codes[0, 0], torch.arange(8)) and codes.min() >= 0
    with pytest.raises(UsageError, match=r"`prompt` must be code indices in \[0, 32\)"):
        model.sample_codes([1], prompt=prompt.clamp(min=40), prompt_mask=mask)


@pytest.mark.parametrize("kind", sorted(PRIORS))
@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": math.nan}, "guidance_scale"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_k": 2.5}, "top_k"),
        ({"num_samples": True}, "num_samples"),
    ],
)
def test_every_prior_checks_its_sampling_arguments(kind, arguments, message):
    with pytest.raises(UsageError, match=message):
        PRIORS[kind]().sample_codes([0], **arguments)


def test_a_residual_vq_model_pairs_with_a_gpt_prior_of_its_depth_only():
    vq_model = vqgan(quantizer_type="residual", residual_depth=3).eval()  # 16x16 images -> 8x8x3 codes
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    deep = prior(codes_per_position=3)
    pipe = hf_vq.VQImageGenerationPipeline(vq_model, deep)
    assert pipe(class_labels=[1], num_images=2, output_type="pt").shape == (2, 3, 16, 16)
    uniform = bits_per_dim(vq_model, images, "uniform")
    learned = bits_per_dim(vq_model, images, deep, class_labels=torch.tensor([0, 1]))
    # every one of the 8 * 8 * 3 codes costs log K nats under the uniform prior
    assert uniform["prior_bits_per_dim"] == pytest.approx(8 * 8 * 3 * math.log2(32) / (3 * 16 * 16))
    assert learned["bits_per_dim"] > 0
    with pytest.raises(UsageError, match="prior models 1 codes per position .* gives 3"):
        hf_vq.VQImageGenerationPipeline(vq_model, prior())
    with pytest.raises(UsageError, match="PixelCNNPriorModel models one code per grid position"):
        hf_vq.VQImageGenerationPipeline(vq_model, pixelcnn())
    with pytest.raises(UsageError, match="completion takes one code per grid position"):
        pipe.complete(vq_model.encode_indices(images), torch.ones(8, 8, dtype=torch.bool), [0, 1])
