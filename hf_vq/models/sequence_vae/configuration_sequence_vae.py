"""Configuration of the sequence VAE (MusicVAE: a recurrent VAE over token sequences, with a flat or hierarchical
decoder)."""

from __future__ import annotations

import math

from transformers import PreTrainedConfig

from ...utils.configuration_utils import CheckedKeysMixin, check_choice, check_float, check_int
from ...utils.errors import UsageError

DECODER_TYPES = ("flat", "hierarchical")
SAMPLING_SCHEDULES = ("constant", "inverse_sigmoid")


class SequenceVAEConfig(CheckedKeysMixin, PreTrainedConfig):
    r"""
    MusicVAE (Roberts et al. 2018, magenta's `music_vae`) over sequences of `num_bars` bars of `bar_length` tokens: a
    bidirectional LSTM encoder, a Gaussian latent z with a N(0, I) prior, and a flat or hierarchical LSTM decoder.
    The loss is magenta's: the batch mean of the cross-entropy summed over time, plus `beta` times the batch mean of
    `max(KL - free_bits, 0)`, the hinge taken on each sequence's total KL.

    The defaults are the hierdec-mel_16bar model (16 bars of 16 steps, 90 melody classes, its free bits and beta)
    scaled down to train on a CPU: LSTMs of 256-512 units and z of 256, against the paper's 2048-unit encoder,
    1024-unit decoders and z of 512. The weights keep PyTorch's initialization: the LSTMs' forget gates start
    without the +1 bias of magenta's LSTMBlockCell, and the dense layers to (mean, sigma) and to the initial states
    are not drawn from magenta's N(0, 0.001).

    Args:
        vocab_size (`int`, defaults to 90): token classes (magenta's melody encoding: 0 hold, 1 note-off,
            2..89 note-on of MIDI 21..108).
        decoder_type (`str`, defaults to `"hierarchical"`): `"flat"` (one LSTM over the whole sequence) or
            `"hierarchical"` (a conductor LSTM giving one embedding per bar, each bar decoded from its own).
        bar_length (`int`, defaults to 16): tokens per bar (16th notes in 4/4). Every sequence length the model takes
            is a multiple of it.
        num_bars (`int`, defaults to 16): bars per training sequence; `sequence_length` = bar_length * num_bars.
        embedding_size (`int`, *optional*): size of a learned token embedding at the encoder's and decoder's inputs;
            unset feeds one-hot vectors of size vocab_size, as magenta does (the first LSTM layer's input weights are
            then the embedding).
        encoder_hidden_size (`int`, defaults to 512), encoder_num_layers (`int`, defaults to 1): the bidirectional
            encoder LSTM (units per direction).
        decoder_hidden_size (`int`, defaults to 256), decoder_num_layers (`int`, defaults to 2): the decoder LSTM (the
            flat decoder, or the hierarchical decoder's bar decoder).
        conductor_hidden_size (`int`, defaults to 256), conductor_num_layers (`int`, defaults to 2): the conductor
            LSTM of the hierarchical decoder (unused by the flat one).
        conductor_output_size (`int`, *optional*): size of the bar embeddings; unset takes the conductor's output as
            it is (magenta), a value adds a linear layer to that size.
        latent_size (`int`, defaults to 256): size of z.
        free_bits (`float`, defaults to 177.4): free information of the whole latent, in NATS: the KL term is
            `max(KL - free_bits, 0)` on each sequence's total KL (not per dimension). magenta's configs give it in
            bits: hierdec-mel_16bar's 256 bits are 256 * ln 2 = 177.4 nats, the default. >= 0; 0 turns it off.
        max_beta (`float`, defaults to 0.2): the KL weight `forward` uses when given none; the training objective
            anneals to it with `beta_schedule`. >= 0.
        beta_rate (`float`, defaults to 0.0): the annealing rate, beta = `(1 - beta_rate ** step) * max_beta`; 0 is
            a constant max_beta (from step 1 on), magenta's 2-bar models use 0.99999. In [0, 1].
        sampling_schedule (`str`, defaults to `"constant"`): scheduled sampling, the probability that a decoder input
            is the model's own sample: `"constant"` (`sampling_rate` in [0, 1]; 0 is teacher forcing) or
            `"inverse_sigmoid"` (`1 - k / (k + exp(step / k))` with k = `sampling_rate` >= 1; magenta's 2-bar
            models use 1000). The training objective computes it (`sampling_probability`).
        sampling_rate (`float`, defaults to 0.0): the schedule's rate (see `sampling_schedule`).
        dropout (`float`, defaults to 0.0): dropout on every LSTM layer's input, in [0, 1).
    """

    model_type = "hf_vq_sequence_vae"

    vocab_size: int = 90
    decoder_type: str = "hierarchical"
    bar_length: int = 16
    num_bars: int = 16
    embedding_size: int | None = None
    encoder_hidden_size: int = 512
    encoder_num_layers: int = 1
    decoder_hidden_size: int = 256
    decoder_num_layers: int = 2
    conductor_hidden_size: int = 256
    conductor_num_layers: int = 2
    conductor_output_size: int | None = None
    latent_size: int = 256
    free_bits: float = 256 * math.log(2)
    max_beta: float = 0.2
    beta_rate: float = 0.0
    sampling_schedule: str = "constant"
    sampling_rate: float = 0.0
    dropout: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("vocab_size", self.vocab_size, minimum=2)
        check_choice("decoder_type", self.decoder_type, DECODER_TYPES)
        for name in (
            "bar_length",
            "num_bars",
            "encoder_hidden_size",
            "encoder_num_layers",
            "decoder_hidden_size",
            "decoder_num_layers",
            "conductor_hidden_size",
            "conductor_num_layers",
            "latent_size",
        ):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("embedding_size", "conductor_output_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        check_float("free_bits", self.free_bits, minimum=0.0)
        check_float("max_beta", self.max_beta, minimum=0.0)
        check_float("beta_rate", self.beta_rate, 0.0, 1.0)
        check_choice("sampling_schedule", self.sampling_schedule, SAMPLING_SCHEDULES)
        check_float("sampling_rate", self.sampling_rate)
        if self.sampling_schedule == "constant" and not 0.0 <= self.sampling_rate <= 1.0:
            raise UsageError(
                f"`sampling_rate` must be in [0, 1] with sampling_schedule='constant' (it is the probability), got "
                f"{self.sampling_rate}"
            )
        if self.sampling_schedule == "inverse_sigmoid" and self.sampling_rate < 1.0:
            raise UsageError(
                f"`sampling_rate` must be >= 1 with sampling_schedule='inverse_sigmoid' (k in 1 - k / (k + "
                f"exp(step / k))), got {self.sampling_rate}"
            )
        check_float("dropout", self.dropout, 0.0, 1.0, exclusive_maximum=True)

    @property
    def sequence_length(self) -> int:
        """Tokens per training sequence: bar_length * num_bars."""
        return self.bar_length * self.num_bars
