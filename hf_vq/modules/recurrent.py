"""The recurrent blocks of the sequence VAE (MusicVAE, Roberts et al. 2018): a bidirectional LSTM encoder, the flat
LSTM decoder and the hierarchical (conductor) decoder, over sequences of token ids (B, T).

Both decoders take a latent z (B, latent_size) and have the same two entry points: `forward(z, input_ids, ...)`
gives the logits (B, T, V) of the tokens with the true previous tokens as inputs (teacher forcing) or, with a
`sampling_probability`, the model's own samples mixed in (scheduled sampling, Bengio et al. 2015); `sample(z,
length, ...)` draws tokens autoregressively. The start input is a vector of zeros, as magenta's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.errors import UsageError


def init_recurrent_weights(module: nn.Module) -> None:
    """PyTorch's default initialization, for a PreTrainedModel's `_init_weights`.

    transformers would otherwise draw every linear weight from N(0, 0.02) and the LSTM weights from Xavier with zero
    biases. Inside transformers' init context the torch init functions skip parameters already loaded from a
    checkpoint, so this never overwrites loaded weights.
    """
    if isinstance(module, (nn.Linear, nn.LSTM, nn.Embedding)):
        module.reset_parameters()


def sample_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids (N,) drawn from logits (N, V) at `temperature`; temperature 0 takes the argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _log_softplus(x: torch.Tensor) -> torch.Tensor:
    """log(softplus(x)), finite for every x: below -20, softplus(x) = exp(x) to float precision, so the log is x.
    The clamp keeps the unused branch (and its gradient) finite; `torch.where` would otherwise pass on a NaN."""
    return torch.where(x < -20.0, x, torch.log(F.softplus(x.clamp(min=-20.0))))


def _lstm(input_size: int, hidden_size: int, num_layers: int, dropout: float, **kwargs) -> nn.LSTM:
    # nn.LSTM's dropout acts between layers only (and warns with one layer): with the input dropout of the blocks
    # below, every layer's input is dropped, as magenta's DropoutWrapper(input_keep_prob) on each cell does.
    return nn.LSTM(
        input_size, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0, **kwargs
    )


class TokenInputs(nn.Module):
    """Token ids -> the vectors an LSTM reads.

    Args:
        vocab_size: number of token classes V.
        embedding_size: size of a learned embedding; `None` feeds one-hot vectors of size V, as magenta does (the
            LSTM's input weights then act as the embedding).
    """

    def __init__(self, vocab_size: int, embedding_size: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = None if embedding_size is None else nn.Embedding(vocab_size, embedding_size)
        self.output_size = vocab_size if embedding_size is None else embedding_size

    def forward(self, input_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(...) ids -> (..., output_size) vectors of `dtype`."""
        if self.embedding is None:
            return F.one_hot(input_ids, self.vocab_size).to(dtype)
        return self.embedding(input_ids).to(dtype)


class InitialState(nn.Module):
    """An LSTM's initial state (h and c of every layer) from an embedding by one dense layer and tanh (magenta's
    `initial_cell_state_from_embedding`).

    Args:
        embedding_size: size of the embedding (z, or a conductor output).
        hidden_size: the LSTM's hidden size H.
        num_layers: the LSTM's layers.
    """

    def __init__(self, embedding_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dense = nn.Linear(embedding_size, 2 * num_layers * hidden_size)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, embedding_size) -> (h, c), each (num_layers, N, H) as nn.LSTM takes them."""
        n = embedding.shape[0]
        state = torch.tanh(self.dense(embedding)).view(n, 2, self.num_layers, self.hidden_size)
        state = state.permute(1, 2, 0, 3).contiguous()  # (2, num_layers, N, H); nn.LSTM wants contiguous states
        return state[0], state[1]


class LstmEncoder(nn.Module):
    """Bidirectional LSTM over the tokens; the final forward and backward states of the top layer, concatenated,
    give the posterior's mean (a dense layer) and standard deviation (softplus of a dense layer), as in MusicVAE.

    Args:
        vocab_size: number of token classes V.
        embedding_size: learned embedding size, or `None` for one-hot inputs.
        hidden_size: units per direction and layer.
        num_layers: stacked bidirectional layers (each reads both directions' outputs of the one below).
        latent_size: size of z.
        dropout: dropout on every layer's input.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int | None,
        hidden_size: int,
        num_layers: int,
        latent_size: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.inputs = TokenInputs(vocab_size, embedding_size)
        self.dropout = nn.Dropout(dropout)
        self.lstm = _lstm(self.inputs.output_size, hidden_size, num_layers, dropout, bidirectional=True)
        self.to_mean = nn.Linear(2 * hidden_size, latent_size)
        self.to_scale = nn.Linear(2 * hidden_size, latent_size)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, T) -> the posterior's mean and log-variance, each (B, latent_size)."""
        x = self.dropout(self.inputs(input_ids, self.to_mean.weight.dtype))  # (B, T, E)
        _, (h_n, _) = self.lstm(x)  # h_n: (num_layers * 2, B, H), the top layer's forward then backward state last
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, 2H)
        # sigma = softplus(dense); logvar = 2 log sigma, computed without taking the log of an underflowed 0.
        return self.to_mean(final), 2.0 * _log_softplus(self.to_scale(final))


class LstmDecoder(nn.Module):
    """Autoregressive LSTM decoder conditioned on an embedding: MusicVAE's flat decoder (the embedding is z) and the
    bar decoder of the hierarchical one (the embedding is a conductor output).

    The embedding sets the initial state (`InitialState`) and is concatenated to the input at every step; the input
    is the previous token (zeros, or `first_input`, at the first step).

    Args:
        vocab_size: number of token classes V.
        embedding_size: learned embedding size, or `None` for one-hot inputs.
        hidden_size: units per layer.
        num_layers: stacked layers.
        condition_size: size of the conditioning embedding.
        dropout: dropout on every layer's input.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int | None,
        hidden_size: int,
        num_layers: int,
        condition_size: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.inputs = TokenInputs(vocab_size, embedding_size)
        self.initial_state = InitialState(condition_size, hidden_size, num_layers)
        self.dropout = nn.Dropout(dropout)
        self.lstm = _lstm(self.inputs.output_size + condition_size, hidden_size, num_layers, dropout)
        self.output_projection = nn.Linear(hidden_size, vocab_size)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(...) ids -> (..., E) input vectors."""
        return self.inputs(input_ids, self.output_projection.weight.dtype)

    def start_input(self, condition: torch.Tensor) -> torch.Tensor:
        """The input of the first step: zeros (N, E), magenta's start token."""
        return condition.new_zeros(condition.shape[0], self.inputs.output_size)

    def _run(
        self, inputs: torch.Tensor, condition: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Inputs (N, L, E) and condition (N, C) from `state` -> logits (N, L, V) and the final state."""
        x = torch.cat([inputs, condition[:, None].expand(-1, inputs.shape[1], -1)], dim=-1)  # (N, L, E + C)
        output, state = self.lstm(self.dropout(x), state)  # (N, L, H)
        return self.output_projection(output), state

    def decode(
        self,
        condition: torch.Tensor,
        first_input: torch.Tensor,
        target_ids: torch.Tensor,
        sampling_probability: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits (N, L, V) of the tokens `target_ids` (N, L), the input at step t being token t - 1 and
        `first_input` (N, E) at step 0. With `sampling_probability` > 0, the input after each step is instead, with
        that probability and independently per sequence, a token drawn from that step's logits (a step loop)."""
        state = self.initial_state(condition)
        if sampling_probability == 0:
            # Teacher forcing, one LSTM call: the targets shifted right by one step.
            previous = torch.cat([first_input[:, None], self.embed(target_ids[:, :-1])], dim=1)  # (N, L, E)
            return self._run(previous, condition, state)[0]
        logits, step_input = [], first_input
        for t in range(target_ids.shape[1]):
            step_logits, state = self._run(step_input[:, None], condition, state)
            logits.append(step_logits[:, 0])  # (N, V)
            if t + 1 < target_ids.shape[1]:
                sampled = sample_tokens(step_logits[:, 0].detach(), 1.0, generator)
                coin = torch.rand(sampled.shape, generator=generator, device=sampled.device)
                step_input = self.embed(torch.where(coin < sampling_probability, sampled, target_ids[:, t]))
        return torch.stack(logits, dim=1)

    def generate(
        self,
        condition: torch.Tensor,
        first_input: torch.Tensor,
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`length` tokens (N, length) drawn one at a time, each fed back as the next input."""
        state = self.initial_state(condition)
        tokens, step_input = [], first_input
        for _ in range(length):
            logits, state = self._run(step_input[:, None], condition, state)
            token = sample_tokens(logits[:, 0], temperature, generator)  # (N,)
            tokens.append(token)
            step_input = self.embed(token)
        return torch.stack(tokens, dim=1)

    def forward(
        self,
        z: torch.Tensor,
        input_ids: torch.Tensor,
        sampling_probability: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """As the flat decoder: logits (B, T, V) of `input_ids` (B, T) given z (B, latent_size)."""
        return self.decode(z, self.start_input(z), input_ids, sampling_probability, generator)

    def sample(
        self, z: torch.Tensor, length: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """As the flat decoder: tokens (B, length) given z (B, latent_size)."""
        return self.generate(z, self.start_input(z), length, temperature, generator)


class HierarchicalLstmDecoder(nn.Module):
    """MusicVAE's hierarchical decoder: a conductor LSTM, its state set from z (dense + tanh) and its inputs zeros,
    gives one embedding per bar; an `LstmDecoder` decodes each bar from its embedding, its state reset from it (one
    dense + tanh shared by all bars) and nothing carried over from the previous bar but the first input, the
    previous bar's last token (zeros for the first bar). With teacher forcing the bars are independent given their
    embeddings, so they are decoded as one batch (B * bars, bar_length).

    Args:
        vocab_size: number of token classes V.
        embedding_size: learned embedding size, or `None` for one-hot inputs.
        bar_length: tokens per bar; sequence lengths must be multiples of it.
        latent_size: size of z.
        conductor_hidden_size, conductor_num_layers: the conductor LSTM.
        conductor_output_size: size of the bar embeddings: `None` takes the conductor's top-layer output as it is
            (magenta), an int adds a linear layer to that size.
        hidden_size, num_layers: the bar decoder LSTM.
        dropout: dropout on every layer's input (the conductor's: between its layers).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int | None,
        bar_length: int,
        latent_size: int,
        conductor_hidden_size: int,
        conductor_num_layers: int,
        conductor_output_size: int | None,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.bar_length = bar_length
        self.conductor_initial_state = InitialState(latent_size, conductor_hidden_size, conductor_num_layers)
        # Input size 1 for the zero inputs (magenta's `disable_autoregression` conductor, as in hierdec-mel_16bar).
        self.conductor = _lstm(1, conductor_hidden_size, conductor_num_layers, dropout)
        self.conductor_projection = (
            None if conductor_output_size is None else nn.Linear(conductor_hidden_size, conductor_output_size)
        )
        bar_embedding_size = conductor_hidden_size if conductor_output_size is None else conductor_output_size
        self.bar_decoder = LstmDecoder(
            vocab_size, embedding_size, hidden_size, num_layers, bar_embedding_size, dropout
        )

    def _num_bars(self, length: int) -> int:
        if length % self.bar_length:
            raise UsageError(
                f"the sequence length ({length}) must be a multiple of bar_length ({self.bar_length}): the "
                "hierarchical decoder decodes whole bars"
            )
        return length // self.bar_length

    def conduct(self, z: torch.Tensor, num_bars: int) -> torch.Tensor:
        """z (B, latent_size) -> one embedding per bar (B, num_bars, bar_embedding_size)."""
        zeros = z.new_zeros(z.shape[0], num_bars, 1)
        output, _ = self.conductor(zeros, self.conductor_initial_state(z))  # (B, num_bars, conductor_hidden_size)
        return output if self.conductor_projection is None else self.conductor_projection(output)

    def forward(
        self,
        z: torch.Tensor,
        input_ids: torch.Tensor,
        sampling_probability: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) of `input_ids` (B, T) given z (B, latent_size). Scheduled sampling acts within bars;
        each bar's first input is the true last token of the previous bar, as in magenta."""
        batch, length = input_ids.shape
        num_bars, bar = self._num_bars(length), self.bar_length
        embeddings = self.conduct(z, num_bars).reshape(batch * num_bars, -1)  # (B*U, C)
        decoder = self.bar_decoder
        last_tokens = decoder.embed(input_ids[:, bar - 1 :: bar][:, :-1])  # (B, U-1, E): bars 0..U-2 end with these
        start = decoder.start_input(z)[:, None]  # (B, 1, E)
        first_inputs = torch.cat([start, last_tokens], dim=1).reshape(batch * num_bars, -1)  # (B*U, E)
        bars = input_ids.reshape(batch * num_bars, bar)  # (B*U, L)
        logits = decoder.decode(embeddings, first_inputs, bars, sampling_probability, generator)  # (B*U, L, V)
        return logits.reshape(batch, length, -1)

    def sample(
        self, z: torch.Tensor, length: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Tokens (B, length) given z (B, latent_size), bar after bar."""
        embeddings = self.conduct(z, self._num_bars(length))  # (B, U, C)
        decoder = self.bar_decoder
        bars, first_input = [], decoder.start_input(z)
        for u in range(embeddings.shape[1]):
            bars.append(decoder.generate(embeddings[:, u], first_input, self.bar_length, temperature, generator))
            first_input = decoder.embed(bars[-1][:, -1])
        return torch.cat(bars, dim=1)


__all__ = [
    "HierarchicalLstmDecoder",
    "InitialState",
    "LstmDecoder",
    "LstmEncoder",
    "TokenInputs",
    "init_recurrent_weights",
    "sample_tokens",
]
