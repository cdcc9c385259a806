"""Sequence VAE (MusicVAE, Roberts et al. 2018): a recurrent VAE over token sequences with magenta's loss (free bits
on the total KL, an annealed beta, scheduled sampling), and the schedules its training objective uses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...modules.distributions import DiagonalGaussian
from ...modules.recurrent import HierarchicalLstmDecoder, LstmDecoder, LstmEncoder, init_recurrent_weights
from ...utils.configuration_utils import check_choice, check_float, check_int
from ...utils.errors import UsageError
from ...utils.torch_utils import evaluating
from ..modeling_utils import HubMixin
from .configuration_sequence_vae import SAMPLING_SCHEDULES, SequenceVAEConfig

# The posterior is over (B, latent_size): its KL is summed over dim 1 into one total per sequence.
LATENT_DIMS = (1,)


def beta_schedule(step: int, max_beta: float, beta_rate: float) -> float:
    """MusicVAE's KL weight at a training step: `(1 - beta_rate ** step) * max_beta`. It rises from 0 at step 0
    towards `max_beta`; with beta_rate 0 it is max_beta from step 1 on."""
    check_int("step", step, minimum=0)
    return (1.0 - beta_rate**step) * max_beta


def sampling_probability(step: int, schedule: str, rate: float) -> float:
    """The scheduled-sampling probability (that a decoder input is the model's own sample) at a training step:
    `rate` for `"constant"`, magenta's `1 - k / (k + exp(step / k))` with k = `rate` for `"inverse_sigmoid"` (1 / (k +
    1) at step 0, rising to 1; evaluated as a sigmoid, which cannot overflow)."""
    check_int("step", step, minimum=0)
    check_choice("schedule", schedule, SAMPLING_SCHEDULES)
    if schedule == "constant":
        check_float("rate", rate, 0.0, 1.0)
        return float(rate)
    check_float("rate", rate, minimum=1.0)
    # 1 - k / (k + e^(s/k)) = 1 / (1 + k e^(-s/k)) = sigmoid(s/k - ln k)
    return 1.0 / (1.0 + math.exp(math.log(rate) - step / rate))


@dataclass
class SequenceVAEOutput(ModelOutput):
    """
    Args:
        loss: () `reconstruction_loss + kl_loss`.
        logits: (B, T, V) logits of every token given the previous ones (teacher forced unless a
            `sampling_probability` mixed in the model's samples) and z.
        reconstruction_loss: () the batch mean of each sequence's cross-entropy summed over time, in nats.
        kl: (B,) KL(q(z|x) || N(0, I)) of each sequence's whole latent, in nats.
        kl_loss: () `beta` times the batch mean of `max(kl - free_bits, 0)`.
        accuracy: () the fraction of tokens whose argmax logit is the true token.
        latents: (B, latent_size) the z that was decoded (a posterior sample or its mean).
        latent_mean: (B, latent_size) posterior mean.
        latent_logvar: (B, latent_size) posterior log-variance, 2 log sigma.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    latent_mean: torch.Tensor | None = None
    latent_logvar: torch.Tensor | None = None


class SequenceVAEPreTrainedModel(HubMixin, PreTrainedModel):
    config_class = SequenceVAEConfig
    base_model_prefix = "sequence_vae"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        init_recurrent_weights(module)


class SequenceVAEModel(SequenceVAEPreTrainedModel):
    """MusicVAE: a bidirectional LSTM encoder, a diagonal Gaussian posterior over z with a N(0, I) prior, and a flat
    or hierarchical LSTM decoder (`config.decoder_type`).

    Training on a CPU in your own loop: call `torch.set_flush_denormal(True)` first (the training loop does). The
    gradients carried back through hundreds of LSTM steps decay into subnormal floats, which the CPU handles ~60x
    slower (measured: 34 s against 0.5 s a step at the 16-bar recipes' size).

    Args:
        config: the model's `SequenceVAEConfig`.
    """

    def __init__(self, config: SequenceVAEConfig):
        super().__init__(config)
        self.encoder = LstmEncoder(
            config.vocab_size,
            config.embedding_size,
            config.encoder_hidden_size,
            config.encoder_num_layers,
            config.latent_size,
            config.dropout,
        )
        if config.decoder_type == "flat":
            self.decoder = LstmDecoder(
                config.vocab_size,
                config.embedding_size,
                config.decoder_hidden_size,
                config.decoder_num_layers,
                config.latent_size,
                config.dropout,
            )
        else:
            self.decoder = HierarchicalLstmDecoder(
                config.vocab_size,
                config.embedding_size,
                config.bar_length,
                config.latent_size,
                config.conductor_hidden_size,
                config.conductor_num_layers,
                config.conductor_output_size,
                config.decoder_hidden_size,
                config.decoder_num_layers,
                config.dropout,
            )
        self.post_init()

    def _check_length(self, length: Any, name: str) -> None:
        check_int(name, length, minimum=1)
        if length % self.config.bar_length:
            raise UsageError(
                f"`{name}` ({length}) must be a multiple of bar_length ({self.config.bar_length}): the model decodes "
                "whole bars"
            )

    def _check_input_ids(self, input_ids: Any) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise UsageError(f"`input_ids` must be a (batch, length) tensor of token ids, got {shape}")
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise UsageError(f"`input_ids` must be an integer tensor, got dtype {input_ids.dtype}")
        self._check_length(input_ids.shape[1], "input_ids.shape[1]")
        vocab_size = self.config.vocab_size
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab_size):
            raise UsageError(
                f"`input_ids` must lie in [0, {vocab_size}) (vocab_size), got values in "
                f"[{input_ids.min().item()}, {input_ids.max().item()}]"
            )

    def encode(self, input_ids: torch.Tensor) -> DiagonalGaussian:
        """Tokens (B, T) -> the posterior q(z | x) over (B, latent_size); T a multiple of bar_length."""
        self._check_input_ids(input_ids)
        mean, logvar = self.encoder(input_ids)
        return DiagonalGaussian(mean, logvar)

    def kl_loss(self, kl: torch.Tensor, beta: float | None = None) -> torch.Tensor:
        """`beta * mean_b max(kl_b - free_bits, 0)` from per-sequence KLs (B,) in nats: magenta's hinge on each
        sequence's total KL, then the batch mean. `beta` defaults to `config.max_beta`."""
        beta = self.config.max_beta if beta is None else beta
        return beta * (kl - self.config.free_bits).clamp(min=0.0).mean()

    def forward(
        self,
        input_ids: torch.Tensor,
        beta: float | None = None,
        sampling_probability: float = 0.0,
        generator: torch.Generator | None = None,
        sample_posterior: bool | None = None,
        return_dict: bool = True,
    ) -> SequenceVAEOutput | tuple[torch.Tensor, ...]:
        """Encode, draw z (or take the posterior mean), decode the sequence, and compute magenta's loss.

        Args:
            input_ids: (B, T) token ids in [0, vocab_size), T a multiple of bar_length.
            beta: the KL weight; defaults to `config.max_beta` (the objective passes `beta_schedule(step, ...)`).
            sampling_probability: the probability that a decoder input is the model's own sample rather than the
                true previous token (scheduled sampling; the objective passes `sampling_probability(step, ...)`);
                0 is teacher forcing, in one LSTM call per level, anything else a loop over the steps.
            generator: optional random generator (on the model's device) for z and the scheduled samples.
            sample_posterior: decode a reparameterized sample of z (`True`) or the mean (`False`); defaults to
                sampling in training mode and the mean in evaluation mode.
            return_dict: a `SequenceVAEOutput`, or its tuple of values.
        """
        if beta is not None:
            check_float("beta", beta, minimum=0.0)
        check_float("sampling_probability", sampling_probability, 0.0, 1.0)
        posterior = self.encode(input_ids)
        if sample_posterior is None:
            sample_posterior = self.training
        z = posterior.sample(generator) if sample_posterior else posterior.mode()  # (B, latent_size)
        logits = self.decoder(z, input_ids, sampling_probability, generator)  # (B, T, V)
        token_losses = F.cross_entropy(logits.transpose(1, 2).float(), input_ids, reduction="none")  # (B, T)
        reconstruction_loss = token_losses.sum(dim=1).mean()
        kl = posterior.kl(dims=LATENT_DIMS)  # (B,)
        kl_loss = self.kl_loss(kl, beta)
        output = SequenceVAEOutput(
            loss=reconstruction_loss + kl_loss,
            logits=logits,
            reconstruction_loss=reconstruction_loss,
            kl=kl,
            kl_loss=kl_loss,
            accuracy=(logits.argmax(dim=-1) == input_ids).float().mean(),
            latents=z,
            latent_mean=posterior.mean,
            latent_logvar=posterior.logvar,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        length: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Latents (B, latent_size) -> sampled tokens (B, length), one step at a time, in eval mode (no dropout).

        Args:
            z: (B, latent_size) latents.
            length: tokens per sequence, a multiple of bar_length; defaults to `config.sequence_length`.
            temperature: softmax temperature of the draws; 0 takes the most likely token at every step (greedy).
            generator: optional random generator (on the model's device).
        """
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.config.latent_size:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise UsageError(f"`z` must be a (batch, {self.config.latent_size}) tensor (latent_size), got {shape}")
        length = self.config.sequence_length if length is None else length
        self._check_length(length, "length")
        check_float("temperature", temperature, minimum=0.0)
        with evaluating(self):
            return self.decoder.sample(z.to(self.device, self.dtype), length, temperature, generator)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        length: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Decode `num_samples` draws of z from the N(0, I) prior into tokens (num_samples, length).

        Args:
            num_samples: how many sequences.
            length: tokens per sequence, a multiple of bar_length; defaults to `config.sequence_length`.
            temperature: softmax temperature; 0 is greedy.
            generator: optional random generator (on the model's device), for z and the tokens.
        """
        check_int("num_samples", num_samples, minimum=1)
        shape = (num_samples, self.config.latent_size)
        z = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        return self.decode(z, length, temperature, generator)

    @torch.no_grad()
    def reconstruct(
        self, input_ids: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Tokens (B, T) -> tokens (B, T) decoded from the posterior mean without teacher forcing (the paper's
        sampled reconstruction); temperature 0 is greedy."""
        with evaluating(self):
            z = self.encode(input_ids).mode()
        return self.decode(z, input_ids.shape[1], temperature, generator)
