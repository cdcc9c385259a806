import math

import pytest
import torch

from hf_vq.models.sequence_vae import (
    SequenceVAEConfig,
    SequenceVAEModel,
    SequenceVAEOutput,
    beta_schedule,
    sampling_probability,
)
from hf_vq.modules.distributions import DiagonalGaussian

# 3 bars of 4 tokens over 7 classes.
TINY = dict(
    vocab_size=7,
    bar_length=4,
    num_bars=3,
    encoder_hidden_size=16,
    decoder_hidden_size=16,
    conductor_hidden_size=12,
    conductor_num_layers=1,
    latent_size=8,
    free_bits=0.0,
)
DECODERS = ["flat", "hierarchical"]


def make(decoder_type: str = "hierarchical", seed: int = 0, **overrides) -> SequenceVAEModel:
    torch.manual_seed(seed)
    return SequenceVAEModel(SequenceVAEConfig(**{**TINY, "decoder_type": decoder_type, **overrides}))


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 7, (5, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("embedding_size", [None, 5])
@pytest.mark.parametrize("decoder_type", DECODERS)
def test_shapes_of_forward_encode_decode_and_sample(decoder_type, embedding_size, tokens):
    model = make(decoder_type, embedding_size=embedding_size)
    output = model(tokens)
    assert isinstance(output, SequenceVAEOutput)
    assert output.logits.shape == (5, 12, 7)
    assert output.kl.shape == (5,)
    for name in ("loss", "reconstruction_loss", "kl_loss", "accuracy"):
        assert getattr(output, name).shape == (), name
    for name in ("latents", "latent_mean", "latent_logvar"):
        assert getattr(output, name).shape == (5, 8), name
    posterior = model.encode(tokens)
    assert isinstance(posterior, DiagonalGaussian) and posterior.mean.shape == (5, 8)
    decoded = model.decode(torch.randn(2, 8), length=8)
    assert decoded.shape == (2, 8) and decoded.dtype == torch.long
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 12)  # config.sequence_length
    assert samples.min() >= 0 and samples.max() < 7
    assert model.sample(2, length=20).shape == (2, 20)  # longer than training: more bars
    assert model.reconstruct(tokens).shape == (5, 12)
    assert model.training  # decode ran in eval mode and restored the mode


def test_weights_keep_pytorchs_default_initialization():
    model = make("flat")
    # transformers' default would draw linear weights from N(0, 0.02) and zero the LSTM biases
    projection = model.decoder.output_projection.weight  # U(-1/sqrt(16), 1/sqrt(16))
    assert 0.2 < projection.abs().max() <= 0.25
    assert model.decoder.lstm.bias_ih_l0.abs().min() > 0
    assert model.encoder.lstm.weight_hh_l0_reverse.abs().max() <= 0.25


def test_config_defaults_and_sequence_length():
    config = SequenceVAEConfig()
    assert config.sequence_length == 256 and config.decoder_type == "hierarchical"
    assert config.free_bits == pytest.approx(177.445678, abs=1e-5)  # 256 bits in nats
    assert SequenceVAEConfig(bar_length=8, num_bars=2).sequence_length == 16


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_kl_is_the_total_kl_of_each_sequence_in_nats(decoder_type, tokens):
    model = make(decoder_type, max_beta=0.7)
    output = model(tokens)
    mean, logvar = output.latent_mean, output.latent_logvar
    by_hand = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=1)
    torch.testing.assert_close(output.kl, by_hand)
    torch.testing.assert_close(output.kl_loss, 0.7 * output.kl.mean())  # no free bits, beta = max_beta
    torch.testing.assert_close(model(tokens, beta=0.0).kl_loss, torch.tensor(0.0))


def test_free_bits_are_a_hinge_on_each_sequences_total_kl_then_the_batch_mean():
    model = make(free_bits=3.0, max_beta=2.0)
    kl = torch.tensor([10.0, 1.0, 3.5], requires_grad=True)  # over, under and just over the 3-nat budget
    loss = model.kl_loss(kl)
    torch.testing.assert_close(loss, torch.tensor(2.0 * (7.0 + 0.0 + 0.5) / 3))
    loss.backward()
    torch.testing.assert_close(kl.grad, torch.tensor([2.0 / 3, 0.0, 2.0 / 3]))  # no push under the budget
    # the hinge is per sequence, not on the batch mean (4.83 nats, over the budget, would give 2 * 1.83)
    torch.testing.assert_close(model.kl_loss(kl.detach(), beta=1.0), torch.tensor(7.5 / 3))


def test_beta_schedule_values():
    assert beta_schedule(0, 0.5, 0.99) == 0.0
    assert beta_schedule(10, 0.5, 0.99) == pytest.approx((1 - 0.99**10) * 0.5)
    assert beta_schedule(1, 0.2, 0.0) == pytest.approx(0.2)  # beta_rate 0: constant from step 1
    assert beta_schedule(10**7, 0.2, 0.99999) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="step"):
        beta_schedule(-1, 0.2, 0.0)


def test_sampling_probability_schedules():
    assert sampling_probability(123, "constant", 0.25) == 0.25
    k = 1000.0
    assert sampling_probability(0, "inverse_sigmoid", k) == pytest.approx(1 - k / (k + 1))
    for step in (1000, 5000, 10000):
        assert sampling_probability(step, "inverse_sigmoid", k) == pytest.approx(1 - k / (k + math.exp(step / k)))
    assert sampling_probability(10**9, "inverse_sigmoid", k) == 1.0  # no overflow
    with pytest.raises(ValueError, match="rate"):
        sampling_probability(0, "inverse_sigmoid", 0.5)
    with pytest.raises(ValueError, match="schedule"):
        sampling_probability(0, "exponential", 0.5)


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_teacher_forced_loss_and_accuracy_against_hand_computation(decoder_type, tokens):
    model = make(decoder_type, max_beta=0.3, free_bits=0.5).eval()
    output = model(tokens)
    torch.testing.assert_close(output.latents, output.latent_mean, rtol=0, atol=0)  # eval: z is the mean
    logits = model.decoder(output.latent_mean, tokens)
    torch.testing.assert_close(output.logits, logits, rtol=0, atol=0)
    log_probs = logits.log_softmax(dim=-1).gather(-1, tokens[..., None])[..., 0]  # (B, T)
    reconstruction = -log_probs.sum(dim=1).mean()
    kl_loss = 0.3 * (output.kl - 0.5).clamp(min=0).mean()
    torch.testing.assert_close(output.reconstruction_loss, reconstruction)
    torch.testing.assert_close(output.loss, reconstruction + kl_loss)
    accuracy = (logits.argmax(-1) == tokens).float().mean()
    torch.testing.assert_close(output.accuracy, accuracy)
    loss, *_ = model(tokens, return_dict=False)
    torch.testing.assert_close(loss, output.loss)


def test_posterior_sampled_in_training_mean_in_eval(tokens):
    model = make()
    train = model(tokens, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(train.latents, train.latent_mean)
    std = (0.5 * train.latent_logvar).exp()
    eps = torch.randn(train.latent_mean.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(train.latents, train.latent_mean + std * eps)
    evaluated = model.eval()(tokens)
    torch.testing.assert_close(evaluated.latents, evaluated.latent_mean, rtol=0, atol=0)


def test_flat_decoder_is_causal_the_logits_at_t_do_not_depend_on_token_t(tokens):
    model = make("flat").eval()
    z = torch.randn(5, 8)
    logits = model.decoder(z, tokens)
    for t in (0, 5, 11):
        perturbed = tokens.clone()
        perturbed[:, t] = (perturbed[:, t] + 1) % 7
        changed = model.decoder(z, perturbed)
        torch.testing.assert_close(changed[:, : t + 1], logits[:, : t + 1], rtol=0, atol=0)
        if t < 11:  # a flat LSTM carries token t into every later step
            assert (changed[:, t + 1 :] - logits[:, t + 1 :]).abs().amax(dim=(0, 2)).min() > 0


def test_hierarchical_decoder_bars_see_only_the_previous_bars_last_token(tokens):
    model = make("hierarchical").eval()
    z = torch.randn(5, 8)
    logits = model.decoder(z, tokens)

    def changed_steps(position: int) -> list[int]:
        perturbed = tokens.clone()
        perturbed[:, position] = (perturbed[:, position] + 1) % 7
        difference = (model.decoder(z, perturbed) - logits).abs().amax(dim=(0, 2))  # (T,)
        return difference.nonzero().flatten().tolist()

    # a token inside bar 1 (steps 4..7) reaches only the later steps of that bar: no state is carried across bars
    assert changed_steps(5) == [6, 7]
    # the last token of bar 0 is bar 1's first input: it changes all of bar 1 and nothing of bar 2
    assert changed_steps(3) == [4, 5, 6, 7]
    assert changed_steps(7) == [8, 9, 10, 11]
    assert changed_steps(11) == []  # the last token is no input


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_greedy_decoding_agrees_with_the_teacher_forced_logits(decoder_type):
    # The step loop and the batched teacher-forced path are the same network: decoding greedily and then scoring
    # the result with teacher forcing must give back the argmax at every step.
    model = make(decoder_type).eval()
    z = torch.randn(4, 8) * 3
    tokens = model.decode(z, length=12, temperature=0.0)
    with torch.no_grad():
        logits = model.decoder(z, tokens)
    torch.testing.assert_close(logits.argmax(-1), tokens, rtol=0, atol=0)
    torch.testing.assert_close(model.decode(z, 12, temperature=0.0), tokens, rtol=0, atol=0)


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_sampling_is_reproducible_with_a_generator_and_yields_valid_tokens(decoder_type):
    model = make(decoder_type)
    first = model.sample(6, length=8, temperature=1.5, generator=torch.Generator().manual_seed(4))
    second = model.sample(6, length=8, temperature=1.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert first.shape == (6, 8) and first.min() >= 0 and first.max() < 7


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_lengths_that_are_not_whole_bars_raise_naming_bar_length(decoder_type):
    model = make(decoder_type)
    with pytest.raises(ValueError, match="bar_length"):
        model.sample(2, length=10)
    with pytest.raises(ValueError, match="bar_length"):
        model.decode(torch.randn(2, 8), length=6)
    with pytest.raises(ValueError, match="bar_length"):
        model(torch.zeros(2, 10, dtype=torch.long))


def test_bad_inputs_raise_naming_the_argument():
    model = make()
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(2, 12))  # float
    with pytest.raises(ValueError, match="vocab_size"):
        model(torch.full((2, 12), 7))
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(12, dtype=torch.long))
    with pytest.raises(ValueError, match="latent_size"):
        model.decode(torch.randn(2, 9))
    with pytest.raises(ValueError, match="temperature"):
        model.decode(torch.randn(2, 8), temperature=-1.0)
    with pytest.raises(ValueError, match="sampling_probability"):
        model(torch.zeros(2, 12, dtype=torch.long), sampling_probability=1.5)
    with pytest.raises(ValueError, match="beta"):
        model(torch.zeros(2, 12, dtype=torch.long), beta=-1.0)
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(0)


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_save_and_load_give_identical_logits(decoder_type, tokens, tmp_path):
    model = make(decoder_type, embedding_size=5, conductor_output_size=6).eval()
    model.save_pretrained(tmp_path)
    loaded = SequenceVAEModel.from_pretrained(tmp_path)
    assert not loaded.training
    saved, original = loaded.config.to_dict(), model.config.to_dict()
    saved.pop("_name_or_path"), original.pop("_name_or_path")
    assert saved == original
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, rtol=0, atol=0)


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_scheduled_sampling_runs_reproducibly(decoder_type, tokens):
    model = make(decoder_type)
    first = model(tokens, sampling_probability=0.5, generator=torch.Generator().manual_seed(2))
    second = model(tokens, sampling_probability=0.5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(first.logits, second.logits, rtol=0, atol=0)
    first.loss.backward()
    assert all(p.grad is not None for p in model.decoder.parameters())
    model.eval()
    teacher_forced = model(tokens).logits
    # a probability that never fires: the step loop computes the teacher-forced logits
    torch.testing.assert_close(model(tokens, sampling_probability=1e-12).logits, teacher_forced)
    always = model(tokens, sampling_probability=1.0, generator=torch.Generator().manual_seed(2)).logits
    assert not torch.allclose(always, teacher_forced)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"vocab_size": 1}, "vocab_size"),
        ({"decoder_type": "transformer"}, "decoder_type"),
        ({"bar_length": 0}, "bar_length"),
        ({"num_bars": 2.0}, "num_bars"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"encoder_hidden_size": 0}, "encoder_hidden_size"),
        ({"encoder_num_layers": 0}, "encoder_num_layers"),
        ({"decoder_hidden_size": -1}, "decoder_hidden_size"),
        ({"decoder_num_layers": 0}, "decoder_num_layers"),
        ({"conductor_hidden_size": 0}, "conductor_hidden_size"),
        ({"conductor_num_layers": 0}, "conductor_num_layers"),
        ({"conductor_output_size": 0}, "conductor_output_size"),
        ({"latent_size": 0}, "latent_size"),
        ({"free_bits": -1.0}, "free_bits"),
        ({"max_beta": float("nan")}, "max_beta"),
        ({"beta_rate": 1.5}, "beta_rate"),
        ({"sampling_schedule": "exponential"}, "sampling_schedule"),
        ({"sampling_rate": 2.0}, "sampling_rate"),  # constant: a probability
        ({"sampling_schedule": "inverse_sigmoid", "sampling_rate": 0.5}, "sampling_rate"),
        ({"dropout": 1.0}, "dropout"),
        ({"latent_sizes": 8}, "latent_size"),  # unknown key, with the closest name
    ],
)
def test_bad_config_fields_raise_usage_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError) as error:
        SequenceVAEConfig(**{**TINY, **overrides})
    assert field in str(error.value)
    assert "\n" not in str(error.value)


def test_dropout_is_active_in_training_only(tokens):
    model = make(dropout=0.5, decoder_num_layers=2)
    assert not torch.equal(model(tokens, sample_posterior=False).logits, model(tokens, sample_posterior=False).logits)
    model.eval()
    torch.testing.assert_close(model(tokens).logits, model(tokens).logits, rtol=0, atol=0)


@pytest.mark.parametrize("decoder_type", DECODERS)
def test_a_few_dozen_adam_steps_overfit_four_sequences(decoder_type):
    model = make(decoder_type, max_beta=0.01)
    data = torch.randint(0, 7, (4, 12), generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    first = model(data, sample_posterior=False).reconstruction_loss.item()  # ~ 12 * ln 7 = 23 nats
    for _ in range(80):
        optimizer.zero_grad()
        model(data).loss.backward()
        optimizer.step()
    model.eval()
    last = model(data)
    assert last.reconstruction_loss.item() < 0.1 * first
    assert last.accuracy.item() > 0.9
