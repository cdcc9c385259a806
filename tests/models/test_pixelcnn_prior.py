import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hf_vq.models.modeling_code_prior import guided_log_probs
from hf_vq.models.pixelcnn_prior import PixelCNNPriorConfig, PixelCNNPriorModel, PixelCNNPriorOutput
from hf_vq.utils.errors import UsageError

K, CLASSES, GRID = 7, 3, (4, 5)
# Receptive field R = 5 // 2 + (3 - 1) * (3 // 2) = 4 = width - 1 >= height - 2: the whole 4x5 grid is covered.
TINY = dict(
    codebook_size=K,
    token_grid_size=GRID,
    num_classes=CLASSES,
    num_layers=3,
    hidden_channels=8,
    first_kernel_size=5,
    kernel_size=3,
    output_channels=16,
)
N = GRID[0] * GRID[1]


def prior(**overrides) -> PixelCNNPriorModel:
    torch.manual_seed(0)
    return PixelCNNPriorModel(PixelCNNPriorConfig(**{**TINY, **overrides})).eval()


def randomized(model: PixelCNNPriorModel, std: float = 1.0, seed: int = 0) -> PixelCNNPriorModel:
    """Every weight redrawn (class biases included): masks applied only at init would not survive this."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        parameter.data = torch.randn(parameter.shape, generator=generator) * std
    return model


def random_codes(n: int, seed: int = 3, grid=GRID) -> torch.Tensor:
    return torch.randint(0, K, (n, *grid), generator=torch.Generator().manual_seed(seed))


def dependence(logits_of, grid=GRID, seed: int = 1) -> torch.Tensor:
    """(N, N) bool, [q, p]: some change of the code at raster position q changes the logits at position p (more than
    rounding). `logits_of`: (B, h, w) codes -> (B, C, h, w)."""
    n = grid[0] * grid[1]
    base = random_codes(1, seed, grid)
    result = torch.zeros(n, n, dtype=torch.bool)
    for q in range(n):
        variants = base.repeat(K, 1, 1).reshape(K, n)
        variants[:, q] = torch.arange(K)  # every code at q, the rest fixed
        logits = logits_of(variants.reshape(K, *grid)).reshape(K, -1, n).double()  # (K, C, N)
        change = (logits - logits[:1]).abs().amax(dim=(0, 1))  # (N,)
        result[q] = change > 1e-5 * (1 + logits.abs().amax(dim=(0, 1)))
    return result


# ----- config -----


def test_config_defaults_and_round_trip():
    config = PixelCNNPriorConfig()
    assert config.embedding_dim == config.hidden_channels == 128
    assert config.receptive_field == 3 + 14 >= 16 - 1  # the defaults cover a 16x16 grid
    assert (config.num_image_tokens, config.is_class_conditional) == (256, False)
    config = PixelCNNPriorConfig(**TINY, embedding_dim=6, vq_model_name_or_path="some/vq", dropout=0.1)
    again = PixelCNNPriorConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    assert again.token_grid_size == GRID and isinstance(again.token_grid_size, tuple)
    assert (again.embedding_dim, again.vq_model_name_or_path, again.dropout) == (6, "some/vq", 0.1)
    assert again.is_class_conditional and again.num_image_tokens == N


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"codebook_size": 1}, "codebook_size"),
        ({"token_grid_size": [4, 4, 4]}, "token_grid_size"),
        ({"token_grid_size": [4, 0]}, "token_grid_size"),
        ({"num_classes": -1}, "num_classes"),
        ({"vq_model_name_or_path": 3}, "vq_model_name_or_path"),
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_channels": 0}, "hidden_channels"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"first_kernel_size": 4}, "first_kernel_size"),
        ({"first_kernel_size": 1}, "first_kernel_size"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"output_channels": 0}, "output_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": "0.1"}, "dropout"),
        ({"hiden_channels": 8}, "hidden_channels"),  # unknown key: the closest field is named
    ],
)
def test_config_rejects_bad_fields(overrides, field):
    with pytest.raises(UsageError, match=field):
        PixelCNNPriorConfig(**{**TINY, **overrides})


def test_init_keeps_pytorch_defaults():
    model = prior()
    conv = model.layers[1].vertical  # fan-in scaled uniform, not transformers' N(0, 0.02)
    bound = 1 / conv.weight[0].numel() ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.std() > 0.5 * bound / 3**0.5
    assert 0.5 < model.code_embedding.weight.std() < 2  # N(0, 1)
    assert all(layer.class_bias.weight.abs().max() == 0 for layer in model.layers)  # zero: starts unconditional


# ----- causality and receptive field -----


@pytest.mark.parametrize("std", [1.0, 0.2])
@pytest.mark.parametrize("class_labels", [None, [2] * K])
def test_causal_for_any_weights(std, class_labels):
    model = randomized(prior(), std)
    depends = dependence(lambda codes: model(codes, class_labels).logits)
    # Changing the code at q never changes the logits at q or before it.
    assert not depends.tril().any(), depends.tril().nonzero().tolist()


def test_no_blind_spot():
    model = randomized(prior(), 0.3)
    depends = dependence(lambda codes: model(codes, [1] * K).logits)
    # ... and always changes some logits at every later position: each position sees every code before it.
    assert torch.equal(depends, torch.ones(N, N, dtype=torch.bool).triu(1))


def expected_dependence(grid, reach: int) -> torch.Tensor:
    """The class docstring's receptive field: (i, j) sees (i, j - R .. j - 1) and rows i - 1 - R .. i - 1 between
    columns j - R and j + R."""
    height, width = grid
    rows, cols = torch.arange(height).repeat_interleave(width), torch.arange(width).repeat(height)
    q_row, q_col, p_row, p_col = rows[:, None], cols[:, None], rows[None], cols[None]  # [q, p]
    same_row = (q_row == p_row) & (q_col < p_col) & (p_col - q_col <= reach)
    above = (q_row < p_row) & (p_row - 1 - q_row <= reach) & ((p_col - q_col).abs() <= reach)
    return same_row | above


@pytest.mark.parametrize(
    "overrides, reach",
    [
        ({}, 4),  # the whole 4x5 grid
        ({"first_kernel_size": 3}, 3),  # (i, 0) no longer sees (i - 1, 4), (i, 4) not (i, 0)
        ({"first_kernel_size": 3, "num_layers": 2, "token_grid_size": (5, 5)}, 2),  # nor row 4 row 0
        ({"first_kernel_size": 7, "kernel_size": 1, "token_grid_size": (5, 5)}, 3),  # 1x1 layers add nothing
    ],
)
def test_receptive_field_is_as_documented(overrides, reach):
    model = randomized(prior(**overrides), 0.3)
    grid = model.config.token_grid_size
    assert model.config.receptive_field == reach
    depends = dependence(lambda codes: model(codes, [0] * K).logits, grid)
    assert torch.equal(depends, expected_dependence(grid, reach))
    if reach == 4:
        assert torch.equal(depends, torch.ones(N, N, dtype=torch.bool).triu(1))


class MaskedConv(nn.Conv2d):
    """A 3x3 conv of a plain PixelCNN (van den Oord et al. 2016a): the weights below and right of the centre
    masked out (and the centre for mask A)."""

    def __init__(self, in_channels: int, out_channels: int, mask_a: bool):
        super().__init__(in_channels, out_channels, 3, padding=1)
        mask = torch.ones(3, 3)
        mask[1, 1 if mask_a else 2 :] = 0
        mask[2] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)


def test_the_blind_spot_check_fails_a_plain_masked_stack():
    torch.manual_seed(0)
    embedding = nn.Embedding(K, 8)
    layers = [MaskedConv(8, 8, mask_a=True)] + [MaskedConv(8, 8, mask_a=False) for _ in range(5)]
    stack = nn.Sequential(*[module for layer in layers for module in (layer, nn.Tanh())])
    with torch.no_grad():
        depends = dependence(lambda codes: stack(embedding(codes).permute(0, 3, 1, 2)))
    assert not depends.tril().any()  # causal ...
    assert not depends[7, 10]  # ... but (2, 0) never sees (1, 2): the blind spot above right
    assert not torch.equal(depends, torch.ones(N, N, dtype=torch.bool).triu(1))


def test_row_cropped_logits_equal_the_full_forward():
    model = randomized(prior(), 0.3)
    codes, index = random_codes(4), model.class_index(torch.tensor([0, 1, 2, -1]), 4)
    full = model.compute_logits(codes, index)
    for i in range(GRID[0]):
        cropped = model.compute_logits(codes[:, : i + 1], index)  # (B, K, i + 1, w)
        # Equal up to float rounding: a one-row input may take another conv kernel (1e-7 here, for logits ~1).
        torch.testing.assert_close(cropped[:, :, i], full[:, :, i], rtol=0, atol=1e-6)


# ----- forward, loss, likelihood -----


def test_loss_and_log_prob_by_hand():
    model = randomized(prior(), 0.3)
    codes, targets, labels = random_codes(3), random_codes(3, seed=5), torch.tensor([0, -1, 2])
    output = model(codes, labels, labels=targets)
    assert isinstance(output, PixelCNNPriorOutput)
    assert output.logits.shape == (3, K, *GRID)
    expected = F.cross_entropy(output.logits.permute(0, 2, 3, 1).reshape(-1, K), targets.reshape(-1))
    torch.testing.assert_close(output.loss, expected)
    # The fast path and flat sequences give the same.
    fast = model(codes.reshape(3, -1), labels, labels=targets.reshape(3, -1), check_values=False)
    assert torch.equal(fast.logits, output.logits) and torch.equal(fast.loss, output.loss)
    loss, logits = model(codes, labels, labels=targets, return_dict=False)
    assert torch.equal(logits, output.logits) and torch.equal(loss, output.loss)

    logits = model(codes, labels).logits
    log_probs = F.log_softmax(logits, dim=1).gather(1, codes[:, None]).squeeze(1)  # (B, h, w)
    torch.testing.assert_close(model.log_prob_codes(codes, labels), log_probs.sum(dim=(1, 2)))
    per_grid = F.cross_entropy(logits, codes, reduction="none").sum(dim=(1, 2))
    torch.testing.assert_close(model.log_prob_codes(codes.reshape(3, -1), labels), -per_grid)


def test_class_conditioning():
    model = randomized(prior(), 0.3)
    codes = random_codes(1).repeat(4, 1, 1)
    logits = model(codes, [0, 1, 2, -1]).logits
    for a in range(4):
        for b in range(a + 1, 4):
            assert not torch.allclose(logits[a], logits[b])
    assert torch.equal(model(codes[:1], [-1]).logits, model(codes[:1]).logits)  # -1 is no class
    assert torch.equal(model(codes[:2], torch.tensor([-1, -1])).logits, model(codes[:2], None).logits)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(random_codes(2).reshape(2, -1)[:, :-1]), "20 codes per image \\(4x5"),
        (lambda m: m(random_codes(2) + K), r"\[0, 7\)"),
        (lambda m: m(random_codes(2), [0, 3]), "class labels"),
        (lambda m: m(random_codes(2), [0, -2]), "class labels"),
        (lambda m: m(random_codes(2), [0]), "1 class labels for 2"),
        (lambda m: m(random_codes(2), labels=random_codes(2) - 1), "labels"),
        (lambda m: m.log_prob_codes(random_codes(2), [5, 0]), "class labels"),
    ],
)
def test_input_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call(prior())


def test_unconditional_prior_refuses_class_labels():
    model = prior(num_classes=0)
    assert model.layers[0].class_bias is None
    assert model(random_codes(2)).logits.shape == (2, K, *GRID)
    for call in (
        lambda: model(random_codes(2), [0, 0]),
        lambda: model.sample_codes([0]),
        lambda: model.generate(1, [0]),
    ):
        with pytest.raises(UsageError, match="unconditional"):
            call()
    with pytest.raises(UsageError, match="guidance_scale"):
        model.sample_codes(num_samples=2, guidance_scale=2.0)


# ----- sampling -----


def test_sample_shapes_ranges_and_seeds():
    model = randomized(prior(), 0.3)
    samples = model.sample_codes([0, 2], num_samples=3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, *GRID) and samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() < K
    again = model.sample_codes([0, 2], num_samples=3, generator=torch.Generator().manual_seed(0))
    other = model.sample_codes([0, 2], num_samples=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, again) and not torch.equal(samples, other)
    assert model.sample_codes(num_samples=2).shape == (2, *GRID)
    generated = model.generate(4, [0, 1, 2, 0], generator=torch.Generator().manual_seed(0))
    assert generated.shape == (4, *GRID) and generated.min() >= 0 and generated.max() < K
    for options in ({"top_k": 2}, {"top_p": 0.5}, {"guidance_scale": 3.0, "top_k": 3, "top_p": 0.9}):
        drawn = model.generate(2, [1, 2], temperature=0.7, generator=torch.Generator().manual_seed(0), **options)
        assert drawn.shape == (2, *GRID) and drawn.min() >= 0 and drawn.max() < K


def greedy_expected(model, codes, labels, guidance_scale=1.0) -> torch.Tensor:
    """The argmax code at every position of the full forward on `codes`: what greedy sampling must have drawn."""
    logits = model(codes, labels).logits.permute(0, 2, 3, 1)  # (B, h, w, K)
    if guidance_scale != 1.0:
        logits = guided_log_probs(logits, model(codes, None).logits.permute(0, 2, 3, 1), guidance_scale)
    return logits.argmax(dim=-1)


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_greedy_samples_are_the_argmax_given_everything_before(guidance_scale):
    # top_k = 1: each drawn code must be the argmax given the grid's final codes before it (causality means the
    # later draws do not change it), whatever the mask of known codes.
    model = randomized(prior(), 0.3)
    prompt = random_codes(4, seed=7)
    mask = torch.rand(4, *GRID, generator=torch.Generator().manual_seed(2)) < 0.4  # not raster prefixes
    mask[0] = False
    labels = [0, 1, 2, 1]
    codes = model.generate(4, labels, top_k=1, guidance_scale=guidance_scale, prompt=prompt, prompt_mask=mask)
    assert torch.equal(codes[mask], prompt[mask])  # known codes kept
    expected = greedy_expected(model, codes, labels, guidance_scale)
    assert torch.equal(codes[~mask], expected[~mask])
    assert not torch.equal(codes, expected)  # the known codes are not what the model would have drawn


def test_sample_codes_takes_labels_label_by_label():
    model = randomized(prior(), 0.3)
    by_label = model.sample_codes([2, 0], num_samples=2, top_k=1)
    per_sample = model.generate(4, [2, 2, 0, 0], top_k=1)
    assert torch.equal(by_label, per_sample)
    assert torch.equal(by_label[0], by_label[1]) and not torch.equal(by_label[0], by_label[2])


def test_prompt_keeps_codes_and_skips_known_positions(monkeypatch):
    model = randomized(prior(), 0.3)
    prompt = random_codes(3, seed=4)
    mask = torch.rand(3, *GRID, generator=torch.Generator().manual_seed(5)) < 0.5
    mask[:, 0, 1] = True  # known in every grid: no pass for it
    passes = []
    compute_logits = model.compute_logits
    monkeypatch.setattr(
        model, "compute_logits", lambda codes, index: passes.append(codes.shape) or compute_logits(codes, index)
    )
    codes = model.sample_codes(
        num_samples=3, prompt=prompt, prompt_mask=mask, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(codes[mask], prompt[mask])
    assert len(passes) == int((~mask).any(dim=0).sum())  # one pass per position unknown in some grid
    # Each pass runs on the rows up to the position's and on the grids that draw it.
    unknown = [(i, j) for i in range(GRID[0]) for j in range(GRID[1]) if (~mask[:, i, j]).any()]
    assert passes == [(int((~mask[:, i, j]).sum()), i + 1, GRID[1]) for i, j in unknown]
    passes.clear()
    full = torch.ones_like(mask)
    assert torch.equal(model.sample_codes(num_samples=3, prompt=prompt, prompt_mask=full), prompt) and not passes


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.sample_codes([0, 3]), "class labels"),
        (lambda m: m.sample_codes([-1]), "class labels"),
        (lambda m: m.generate(2, [0, 5]), "class labels"),
        (lambda m: m.generate(2, [0, 1, 2]), "one label per sample"),
        (lambda m: m.generate(2, prompt=random_codes(2)), "prompt_mask"),
        (lambda m: m.generate(2, prompt=random_codes(2), prompt_mask=torch.ones(2, *GRID)), "bool"),
        (lambda m: m.generate(2, prompt=random_codes(2), prompt_mask=torch.ones(2, 4, 4, dtype=torch.bool)), "bool"),
        (lambda m: m.generate(3, prompt=random_codes(2), prompt_mask=torch.ones(2, *GRID, dtype=torch.bool)), "3"),
        (
            lambda m: m.generate(1, prompt=random_codes(1) + K, prompt_mask=torch.ones(1, *GRID, dtype=torch.bool)),
            "prompt",
        ),
        (lambda m: m.generate(0), "num_samples"),
        (lambda m: m.generate(1, temperature=0.0), "temperature"),
        (lambda m: m.generate(1, top_k=0), "top_k"),
        (lambda m: m.generate(1, top_p=0.0), "top_p"),
        (lambda m: m.generate(1, guidance_scale=2.0), "guidance_scale"),
    ],
)
def test_sampling_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call(prior())


# ----- save / load -----


def test_save_and_load_give_identical_logits(tmp_path):
    model = randomized(prior(dropout=0.1, embedding_dim=6), 0.3)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = PixelCNNPriorModel.from_pretrained(tmp_path).eval()
    assert {**loaded.config.to_dict(), "_name_or_path": ""} == model.config.to_dict()
    assert loaded.config.token_grid_size == GRID
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    codes = random_codes(2)
    assert torch.equal(loaded(codes, [0, -1]).logits, model(codes, [0, -1]).logits)
