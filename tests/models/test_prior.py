import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

import hf_vq
from hf_vq.metrics import bits_per_dim, discretized_gaussian_log_likelihood
from hf_vq.models.prior.modeling_prior import PairedGuidanceSampler

from ..conftest import assert_state_dicts_equal, vqgan

K, CLASSES, GRID = 32, 3, (8, 8)  # the tiny VQ-GAN: 32 codes, 16x16 images -> 8x8 codes
TINY_PRIOR = dict(codebook_size=K, token_grid_size=GRID, num_classes=CLASSES, n_layer=2, n_head=2, n_embd=32)


def prior(**overrides) -> hf_vq.VQPriorForCausalLM:
    return hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(**{**TINY_PRIOR, **overrides})).eval()


def random_codes(n: int, grid=GRID, k: int = K) -> torch.Tensor:
    return torch.randint(0, k, (n, *grid), generator=torch.Generator().manual_seed(3))


# ----- config -----


def test_config_lays_out_the_vocabulary():
    config = hf_vq.VQPriorConfig(**TINY_PRIOR)
    assert config.vocab_size == K + CLASSES + 2
    assert (config.bos_token_id, config.pad_token_id, config.eos_token_id) == (K + CLASSES, K + CLASSES + 1, None)
    assert config.class_token_id(2) == K + 2
    assert config.n_positions == config.sequence_length == 1 + 64
    assert isinstance(AutoConfig.for_model("hf_vq_prior"), hf_vq.VQPriorConfig)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"vocab_size": 100}, "vocab_size"),
        ({"pad_token_id": 0}, "pad_token_id"),
        ({"eos_token_id": 3}, "eos_token_id"),
        ({"n_positions": 10}, "n_positions"),
        ({"token_grid_size": [4, 4, 4]}, "token_grid_size"),
        ({"codebook_size": 1}, "codebook_size"),
        ({"num_classes": -1}, "num_classes"),
        ({"n_embd": 30, "n_head": 4}, "n_embd"),
    ],
)
def test_config_rejects_inconsistent_fields(overrides, field):
    with pytest.raises(ValueError, match=field):
        hf_vq.VQPriorConfig(**{**TINY_PRIOR, **overrides})


# ----- the model -----


def test_logits_shape_and_loss_on_a_known_sequence():
    model = prior()
    codes = random_codes(2)
    input_ids = model.build_inputs(codes, torch.tensor([0, 2]))
    assert input_ids.shape == (2, 65)
    assert input_ids[:, 0].tolist() == [K, K + 2]
    assert torch.equal(input_ids[:, 1:], codes.flatten(1))
    output = model(input_ids, labels=input_ids)
    assert output.logits.shape == (2, 65, K + CLASSES + 2)
    # The next-token loss by hand: position t predicts token t + 1, the prefix is never a target.
    expected = F.cross_entropy(output.logits[:, :-1].reshape(-1, K + CLASSES + 2), input_ids[:, 1:].reshape(-1))
    torch.testing.assert_close(output.loss, expected)
    # log_prob_codes renormalizes over the codes only.
    log_probs = F.log_softmax(output.logits[:, :-1, :K], dim=-1).gather(-1, input_ids[:, 1:, None]).sum(dim=(1, 2))
    torch.testing.assert_close(model.log_prob_codes(codes, [0, 2]), log_probs)


def test_build_inputs_uses_bos_for_dropped_and_unconditional_classes():
    model = prior()
    codes = random_codes(2)
    labels = torch.tensor([-1, 1])
    assert model.build_inputs(codes, labels)[:, 0].tolist() == [K + CLASSES, K + 1]
    assert model.build_inputs(codes)[:, 0].tolist() == [K + CLASSES] * 2
    # The training loop's unchecked path (its data was checked record by record) builds the same inputs.
    assert torch.equal(model.build_inputs(codes, labels, check_values=False), model.build_inputs(codes, labels))


@pytest.mark.parametrize(
    "codes, labels, message",
    [
        (torch.zeros(1, 4, 4, dtype=torch.long), None, "64 codes per image"),
        (torch.full((1, 8, 8), K), None, r"\[0, 32\)"),
        (torch.zeros(1, 8, 8, dtype=torch.long), [3], r"class labels must be in \[0, 3\)"),
        (torch.zeros(2, 8, 8, dtype=torch.long), [0], "1 class labels for 2"),
    ],
)
def test_build_inputs_rejects_bad_codes_and_labels(codes, labels, message):
    with pytest.raises(ValueError, match=message):
        prior().build_inputs(codes, labels)


def _push_logits_towards(model, token_ids: list[int], amount: float = 50.0) -> None:
    """Make the model all but certain to emit one of `token_ids` by adding `amount` to their logits."""
    bias = torch.zeros(model.config.vocab_size)
    bias[token_ids] = amount
    model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)


def test_generate_yields_exactly_the_grid_of_codes_and_nothing_else():
    model = prior()
    # Even a model that would rather emit class, BOS and pad tokens produces only codes.
    _push_logits_towards(model, list(range(K, K + CLASSES + 2)))
    codes = model.sample_codes([0, 2], num_samples=3, top_k=8, top_p=0.9, temperature=1.5)
    assert codes.shape == (6, *GRID) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < K
    # A plain generate() from a prefix does the same, from the generation config saved with the model.
    sequences = model.generate(model.prefix_ids(torch.tensor([1, 1]), 2))
    assert sequences.shape == (2, 65)
    assert sequences[:, 1:].max() < K


def test_guided_sampling_matches_the_classifier_free_guidance_distribution():
    """One-token images: the sampled distribution must be softmax(log p(x|c) + (s - 1)(log p(x|c) - log p(x)))."""
    model = prior(token_grid_size=(1, 1), codebook_size=4, num_classes=2, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 3.0)  # distinct conditional and unconditional distributions
    logits = model(torch.tensor([[4], [6]])).logits[:, -1]  # prefix: class 0 token, BOS
    log_cond, log_uncond = F.log_softmax(logits, dim=-1)
    for scale in (1.0, 3.0):
        expected = F.softmax((scale * (log_cond - log_uncond) + log_uncond)[:4], dim=-1)
        torch.manual_seed(0)
        draws = model.sample_codes([0], num_samples=4000, guidance_scale=scale).flatten()
        observed = torch.bincount(draws, minlength=4).float() / len(draws)
        torch.testing.assert_close(observed, expected, atol=0.03, rtol=0)
    # The guided distribution differs from the unguided one by more than the tolerance.
    assert (F.softmax(log_cond[:4], -1) - F.softmax((3 * log_cond - 2 * log_uncond)[:4], -1)).abs().max() > 0.1


def test_guided_greedy_sampling_follows_the_formula_at_every_step():
    """top-k 1 under guidance: each code is the argmax of the guided scores of the whole prefix so far, computed here
    without a cache, for the conditional and the unconditional (BOS) sequence separately."""
    model = prior(token_grid_size=(3, 3), tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 1.0)  # well-separated scores: no near-ties for float noise to flip
    codes = model.sample_codes([1, 2], guidance_scale=2.5, top_k=1).flatten(1)
    for row, label in enumerate([1, 2]):
        conditional, unconditional = model.prefix_ids(torch.tensor([label]), 1), model.prefix_ids(None, 1)
        for step in range(9):
            with torch.no_grad():
                cond = F.log_softmax(model(conditional).logits[0, -1, :K], dim=-1)
                uncond = F.log_softmax(model(unconditional).logits[0, -1, :K], dim=-1)
            expected = (uncond + 2.5 * (cond - uncond)).argmax()
            assert codes[row, step] == expected, (row, step)
            conditional = torch.cat([conditional, expected.view(1, 1)], dim=1)
            unconditional = torch.cat([unconditional, expected.view(1, 1)], dim=1)


def test_paired_guidance_sampler_keeps_both_halves_on_the_same_code():
    sampler = PairedGuidanceSampler(3.0, num_codes=4, top_k=2)
    scores = torch.randn(6, 7)
    scores[:, 4:] = float("-inf")  # non-codes, as suppressed by the generation config
    chosen = sampler(torch.zeros(6, 1, dtype=torch.long), scores)
    picks = chosen.argmax(dim=-1)
    assert torch.equal(picks[:3], picks[3:]) and (picks < 4).all()
    assert torch.isinf(chosen).sum() == 6 * 6  # one finite score per row
    guided = sampler.guided_log_probs(scores)
    cond, uncond = F.log_softmax(scores[:3, :4], -1), F.log_softmax(scores[3:, :4], -1)
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond))
    assert all(guided[i].topk(2).indices.tolist().count(picks[i].item()) == 1 for i in range(3))  # top-k applied


def test_sampling_rejects_bad_arguments():
    conditional, unconditional = prior(), prior(num_classes=0)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        conditional.sample_codes([5])
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.sample_codes(guidance_scale=2.0)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.sample_codes([0])
    with pytest.raises(ValueError, match="needs class labels"):
        conditional.sample_codes(guidance_scale=2.0)
    with pytest.raises(ValueError, match="top_p"):
        conditional.sample_codes([0], top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        conditional.sample_codes([0], temperature=0)


def raster_prefix_masks(grid) -> torch.Tensor:
    """(h*w, h, w): mask n knows the first n codes in raster order, for every n in [0, h*w)."""
    count = grid[0] * grid[1]
    return (torch.arange(count)[None] < torch.arange(count)[:, None]).reshape(count, *grid)


@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_completion_keeps_a_raster_prefix_of_every_length(guidance_scale):
    grid = (3, 4)
    model = prior(token_grid_size=grid)
    masks = raster_prefix_masks(grid)  # one grid per prefix length 0..11, in one call (one generate() per length)
    prompt = random_codes(len(masks), grid)
    labels = torch.arange(len(masks)) % CLASSES
    codes = model.sample_codes(labels, top_k=4, guidance_scale=guidance_scale, prompt=prompt, prompt_mask=masks)
    assert codes.shape == prompt.shape and codes.min() >= 0 and codes.max() < K
    assert torch.equal(codes[masks], prompt[masks])
    # what is unknown is sampled: with a model pushed to code 0, the unknown codes are 0 (the prompt has few)
    _push_logits_towards(model, [0])
    codes = model.sample_codes(labels, prompt=prompt, prompt_mask=masks)
    assert torch.equal(codes[masks], prompt[masks]) and (codes[~masks] == 0).all()


def test_plain_generate_completes_a_prompt_of_every_length():
    grid = (3, 4)
    model = prior(token_grid_size=grid)
    codes = random_codes(1, grid).reshape(1, -1)
    for length in range(12):  # a fixed max_new_tokens of h*w ran past the last position (an IndexError)
        prompt = torch.cat([model.prefix_ids(torch.tensor([1]), 1), codes[:, :length]], dim=1)
        sequences = model.generate(prompt)
        assert sequences.shape == (1, 13) and torch.equal(sequences[:, : 1 + length], prompt)
    with pytest.raises(ValueError, match="leave a code to sample"):
        model.generate(torch.cat([model.prefix_ids(None, 1), codes], dim=1))


def test_completion_refuses_a_mask_that_is_not_a_raster_prefix():
    model = prior(token_grid_size=(3, 4))
    prompt, mask = random_codes(1, (3, 4)), torch.zeros(1, 3, 4, dtype=torch.bool)
    mask[0, :, 0] = True  # the left column: not the first codes in raster order
    with pytest.raises(ValueError, match="completes only a raster prefix .* PixelCNNPriorModel"):
        model.sample_codes(num_samples=1, prompt=prompt, prompt_mask=mask)
    with pytest.raises(ValueError, match="prompt_mask. must be a bool tensor"):
        model.sample_codes(num_samples=1, prompt=prompt, prompt_mask=mask.long())
    with pytest.raises(ValueError, match="`prompt` and `prompt_mask` go together"):
        model.sample_codes(num_samples=1, prompt=prompt)
    with pytest.raises(ValueError, match="got 1 prompt grids for 2 samples"):
        model.sample_codes(num_samples=2, prompt=prompt, prompt_mask=torch.ones_like(mask))


def test_prior_round_trips_through_auto_model_for_causal_lm(tmp_path):
    model = prior()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, hf_vq.VQPriorForCausalLM)
    assert_state_dicts_equal(model, loaded)
    assert loaded.generation_config.suppress_tokens == list(range(K, K + CLASSES + 2))


# ----- the pipeline -----


def test_pipeline_samples_images_and_round_trips(tmp_path):
    pipe = hf_vq.VQImageGenerationPipeline(vqgan(), prior())
    state = torch.random.get_rng_state()
    images = pipe(class_labels=[0, 2], num_images=2, top_k=5, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # a seeded call leaves the global generator alone
    assert len(images) == 4 and images[0].size == (16, 16) and images[0].mode == "RGB"
    tensors = pipe(class_labels=[0, 2], num_images=2, top_k=5, seed=7, output_type="pt", batch_size=3)
    assert tensors.shape == (4, 3, 16, 16)

    pipe.save_pretrained(tmp_path, model_card="# card\n")
    assert json.loads((tmp_path / "pipeline_config.json").read_text())["prior"] == "VQPriorForCausalLM"
    assert (tmp_path / "README.md").read_text() == "# card\n"
    assert not list(tmp_path.rglob("*.bin"))
    loaded = hf_vq.VQImageGenerationPipeline.from_pretrained(tmp_path)
    assert_state_dicts_equal(pipe.prior, loaded.prior)
    assert_state_dicts_equal(pipe.vq_model, loaded.vq_model)
    again = loaded(class_labels=[0, 2], num_images=2, top_k=5, seed=7, output_type="pt", batch_size=3)
    torch.testing.assert_close(again, tensors)


def test_pipeline_rejects_a_prior_of_another_codebook_and_bad_labels():
    with pytest.raises(ValueError, match="codebook_size"):
        hf_vq.VQImageGenerationPipeline(vqgan(), prior(codebook_size=64))
    pipe = hf_vq.VQImageGenerationPipeline(vqgan(), prior())
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        pipe(class_labels=[-1])
    with pytest.raises(ValueError, match="num_images"):
        pipe(class_labels=[0], num_images=0)
    unconditional = hf_vq.VQImageGenerationPipeline(vqgan(), prior(num_classes=0))
    with pytest.raises(ValueError, match="guidance_scale"):
        unconditional(guidance_scale=3.0)


# ----- bits per dimension -----


def test_discretized_likelihood_is_a_distribution_over_the_256_levels():
    levels = torch.arange(256, dtype=torch.float32) / 127.5 - 1  # every 8-bit value, in [-1, 1]
    images = levels.view(256, 1, 1, 1)
    for mean, scale in ((0.3, 0.05), (-1.0, 0.5), (0.999, 1e-3)):
        log_p = discretized_gaussian_log_likelihood(images, torch.full_like(images, mean), scale)
        torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0), atol=1e-5, rtol=0)
    # A bin far from a narrow Gaussian: the mass is tiny but finite, and matches the difference of the CDFs.
    level = 128 / 127.5 - 1  # the 8-bit value 128 in [-1, 1]
    log_p = discretized_gaussian_log_likelihood(torch.tensor([[level]]), torch.tensor([[-0.1]]), 0.02)
    normal = torch.distributions.Normal(torch.tensor(-0.1, dtype=torch.float64), 0.02)
    edges = torch.tensor([level + 1 / 255, level - 1 / 255], dtype=torch.float64)
    exact = math.log(normal.cdf(edges[0]) - normal.cdf(edges[1]))
    assert log_p.item() == pytest.approx(exact, rel=1e-4)


def test_bits_per_dim_of_the_uniform_prior_is_the_closed_form():
    model = vqgan().eval()
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = bits_per_dim(model, images, decoder_scale=0.1)
    dims = 3 * 16 * 16
    assert result["prior_bits_per_dim"] == pytest.approx(64 * math.log2(K) / dims)
    # The reconstruction part is the discretized Gaussian by hand.
    with torch.no_grad():
        reconstruction = model.decode_indices(model.encode_indices(images))
    by_hand = -discretized_gaussian_log_likelihood(images, reconstruction, 0.1).mean().item() / (dims * math.log(2))
    assert result["reconstruction_bits_per_dim"] == pytest.approx(by_hand, rel=1e-5)
    assert result["bits_per_dim"] == pytest.approx(by_hand + 64 * math.log2(K) / dims, rel=1e-6)
    # A fitted scale is never worse than a fixed one, and is the root mean squared error.
    fitted = bits_per_dim(model, images)
    assert fitted["decoder_scale"] == pytest.approx((reconstruction - images).pow(2).mean().sqrt().item(), rel=1e-5)
    assert fitted["bits_per_dim"] < result["bits_per_dim"]


def test_bits_per_dim_with_a_flat_learned_prior_equals_the_uniform_prior():
    model, flat = vqgan().eval(), prior()
    with torch.no_grad():
        flat.transformer.wte.weight.zero_()  # tied output layer: every logit 0
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    labels = torch.tensor([0, 1, 2])
    learned = bits_per_dim(model, images, flat, class_labels=labels, decoder_scale=0.2)
    uniform = bits_per_dim(model, images, "uniform", decoder_scale=0.2)
    assert learned["bits_per_dim"] == pytest.approx(uniform["bits_per_dim"], rel=1e-6)


def test_bits_per_dim_rejects_mismatched_inputs():
    model = vqgan().eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match="class_labels"):
        bits_per_dim(model, images, prior())
    with pytest.raises(ValueError, match="codebook_size"):
        bits_per_dim(model, images, prior(codebook_size=16), class_labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="a VQ model or a VAE"):
        bits_per_dim(hf_vq.AutoencoderModel(hf_vq.AutoencoderConfig()), images)
    with pytest.raises(ValueError, match="uniform"):
        bits_per_dim(model, images, "flat")
