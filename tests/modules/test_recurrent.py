import pytest
import torch
import torch.nn.functional as F

from hf_vq.modules.recurrent import (
    HierarchicalLstmDecoder,
    InitialState,
    LstmDecoder,
    LstmEncoder,
    TokenInputs,
    sample_tokens,
)

V, H, Z = 7, 16, 8


def test_token_inputs_one_hot_or_learned_embedding():
    ids = torch.tensor([[0, 3, 6]])
    one_hot = TokenInputs(V)
    assert one_hot.output_size == V
    torch.testing.assert_close(one_hot(ids, torch.float32), F.one_hot(ids, V).float(), rtol=0, atol=0)
    learned = TokenInputs(V, embedding_size=5)
    assert learned.output_size == 5
    torch.testing.assert_close(learned(ids, torch.float32), learned.embedding.weight[ids], rtol=0, atol=0)


def test_initial_state_is_tanh_of_one_dense_layer_split_into_h_and_c_per_layer():
    block = InitialState(Z, H, num_layers=3)
    z = torch.randn(4, Z) * 10
    h, c = block(z)
    assert h.shape == c.shape == (3, 4, H)
    flat = torch.tanh(block.dense(z)).view(4, 2, 3, H)  # (N, h|c, layer, H)
    torch.testing.assert_close(h[1], flat[:, 0, 1], rtol=0, atol=0)
    torch.testing.assert_close(c[2], flat[:, 1, 2], rtol=0, atol=0)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_reads_the_final_forward_and_backward_states_of_the_top_layer(num_layers):
    torch.manual_seed(0)
    encoder = LstmEncoder(V, None, H, num_layers, Z)
    ids = torch.randint(0, V, (3, 10))
    mean, logvar = encoder(ids)
    assert mean.shape == logvar.shape == (3, Z)
    output, _ = encoder.lstm(F.one_hot(ids, V).float())  # (B, T, 2H): forward outputs, then backward ones
    final = torch.cat([output[:, -1, :H], output[:, 0, H:]], dim=-1)  # forward ends at T-1, backward at 0
    torch.testing.assert_close(mean, encoder.to_mean(final))
    sigma = F.softplus(encoder.to_scale(final))
    torch.testing.assert_close(logvar, 2 * sigma.log())


def test_encoder_log_sigma_is_finite_with_finite_gradients_where_softplus_underflows():
    encoder = LstmEncoder(V, None, H, 1, Z)
    with torch.no_grad():
        encoder.to_scale.weight.zero_()
        encoder.to_scale.bias.copy_(torch.tensor([-200.0, -30.0, -20.0, -1.0, 0.0, 1.0, 30.0, 200.0]))
    _, logvar = encoder(torch.randint(0, V, (2, 5)))
    assert torch.isfinite(logvar).all()
    torch.testing.assert_close(logvar[0, :2], torch.tensor([-400.0, -60.0]))  # 2 log softplus(x) = 2x down there
    logvar.sum().backward()
    assert torch.isfinite(encoder.to_scale.bias.grad).all()


def test_sample_tokens_greedy_at_temperature_zero_and_reproducible_with_a_generator():
    logits = torch.randn(50, V)
    torch.testing.assert_close(sample_tokens(logits, 0.0), logits.argmax(-1), rtol=0, atol=0)
    first = sample_tokens(logits, 1.0, torch.Generator().manual_seed(3))
    second = sample_tokens(logits, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(first, second) and first.min() >= 0 and first.max() < V
    # a very low temperature is the argmax too
    torch.testing.assert_close(sample_tokens(logits, 1e-4), logits.argmax(-1), rtol=0, atol=0)


def test_flat_decoder_teacher_forcing_against_a_step_by_step_hand_computation():
    torch.manual_seed(0)
    decoder = LstmDecoder(V, None, H, 2, Z)
    z = torch.randn(3, Z)
    ids = torch.randint(0, V, (3, 6))
    logits = decoder(z, ids)  # (B, T, V)
    state = decoder.initial_state(z)
    previous = torch.zeros(3, V)  # the start input: zeros
    for t in range(6):
        step_input = torch.cat([previous, z], dim=-1)[:, None]  # previous token and z
        output, state = decoder.lstm(step_input, state)
        torch.testing.assert_close(logits[:, t], decoder.output_projection(output[:, 0]))
        previous = F.one_hot(ids[:, t], V).float()


def test_hierarchical_decoder_bars_against_the_bar_decoder_by_hand():
    torch.manual_seed(0)
    decoder = HierarchicalLstmDecoder(V, None, 4, Z, 12, 2, None, H, 1)
    z = torch.randn(2, Z)
    ids = torch.randint(0, V, (2, 12))
    logits = decoder(z, ids)
    embeddings = decoder.conduct(z, 3)  # (B, 3, 12)
    conductor_output, _ = decoder.conductor(torch.zeros(2, 3, 1), decoder.conductor_initial_state(z))
    torch.testing.assert_close(embeddings, conductor_output, rtol=0, atol=0)
    bar_decoder = decoder.bar_decoder
    for bar in range(3):
        first = torch.zeros(2, V) if bar == 0 else F.one_hot(ids[:, 4 * bar - 1], V).float()
        expected = bar_decoder.decode(embeddings[:, bar], first, ids[:, 4 * bar : 4 * bar + 4])
        torch.testing.assert_close(logits[:, 4 * bar : 4 * bar + 4], expected)


def test_conductor_output_size_adds_a_projection():
    decoder = HierarchicalLstmDecoder(V, 5, 4, Z, 12, 1, 6, H, 1)
    assert decoder.conduct(torch.randn(2, Z), 3).shape == (2, 3, 6)
    assert decoder.bar_decoder.initial_state.dense.in_features == 6
    assert decoder.bar_decoder.lstm.input_size == 5 + 6


def test_hierarchical_decoder_rejects_lengths_that_are_not_whole_bars():
    decoder = HierarchicalLstmDecoder(V, None, 4, Z, 12, 1, None, H, 1)
    with pytest.raises(ValueError, match="bar_length"):
        decoder(torch.randn(1, Z), torch.zeros(1, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="bar_length"):
        decoder.sample(torch.randn(1, Z), 6)
