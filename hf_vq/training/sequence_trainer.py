"""Training on token sequences: the sequence VAE (MusicVAE) over melodies, on the same loop as the image families.

The data is a dataset of tunes (rows of token lists, as `builtin:folk-melodies`), cut by `SequenceStream` into
windows of the model's `num_bars` bars of `bar_length` steps with a hop of one bar (all-rest windows dropped,
optionally transposed); the held-out metrics are `hf_vq.metrics.sequence_metrics` over fixed windows of the eval
split; the sample grids are piano rolls of held-out windows, their reconstructions (greedy, without teacher forcing)
and samples from the prior.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel

from ..data import SequenceStream, image_dataloader, load_code_dataset, melody_windows
from ..metrics import sequence_metrics
from ..music import piano_roll
from .arguments import ParsedArguments
from .trainer import Trainer

logger = logging.getLogger(__name__)


class SequenceTrainer(Trainer):
    """`Trainer` for models of token sequences (every family whose `data` is "sequences")."""

    uses_sequence_arguments = True

    def __init__(self, family, parsed: ParsedArguments):
        super().__init__(family, parsed)
        self.eval_windows: torch.Tensor | None = None  # (N, T) held-out windows, when there is an eval split

    def run(self) -> dict[str, Any]:
        # The gradients an LSTM carries back through hundreds of steps decay into subnormal floats, which the CPU
        # computes ~60x slower: measured 34 s against 0.5 s a step for the 16-bar recipes. Flushing them to zero
        # loses nothing a float32 gradient step could use (they are < 1.2e-38). torch has no getter for the
        # setting: it goes back to torch's default (off) after the run.
        torch.set_flush_denormal(True)
        try:
            return super().run()
        finally:
            torch.set_flush_denormal(False)

    def build_model(self) -> PreTrainedModel:
        return self.new_model()

    def _windows(self, config) -> dict[str, Any]:
        """How the tunes are cut: the model's bars, the sequence arguments' columns and meter rule."""
        sequence = self.sequence_args
        return {
            "num_bars": config.num_bars,
            "bar_length": config.bar_length,
            "match_meter": sequence.match_meter,
            "tokens_column": sequence.tokens_column,
        }

    def build_data(self) -> None:
        args, accelerator = self.args, self.accelerator
        config = accelerator.unwrap_model(self.model).config
        # The main process first: on a fresh machine a builtin is built (the folk corpus: minutes) and cached once.
        with accelerator.main_process_first():
            train = load_code_dataset(args.dataset, args.dataset_split)
            held_out = load_code_dataset(args.dataset, args.eval_split) if args.eval_split is not None else None
        self.stream = SequenceStream(
            train,
            transpose=self.sequence_args.transpose,
            shuffle_buffer=args.shuffle_buffer,
            seed=args.seed,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            **self._windows(config),
        )
        logger.info("training windows of %s: %s", args.dataset, self.stream.window_stats)
        self.loader = image_dataloader(self.stream, args.train_batch_size)
        if held_out is not None:
            self.eval_windows = melody_windows(held_out, max_windows=args.max_eval_images, **self._windows(config))

    def sample_grid(self, model: PreTrainedModel) -> Image.Image:
        """Piano rolls, top to bottom: held-out windows (or the first training batch), each over its reconstruction
        (from the posterior mean, greedy, without teacher forcing); then samples from the prior."""
        count = self.args.num_validation_images
        inputs = self.eval_windows if self.eval_windows is not None else self.first_batch["input_ids"]
        inputs = inputs[:count].to(self.accelerator.device)
        generator = torch.Generator(self.accelerator.device).manual_seed(self.args.seed)
        reconstructions = model.reconstruct(inputs)
        samples = model.sample(len(inputs), temperature=self.sequence_args.sample_temperature, generator=generator)
        rows = [row for pair in zip(inputs, reconstructions, strict=True) for row in pair] + list(samples)
        return piano_roll([row.cpu().numpy() for row in rows], bar_length=model.config.bar_length)

    def evaluate(self, model: PreTrainedModel) -> dict[str, Any]:
        if self.eval_windows is None:
            return {}
        metrics = sequence_metrics(model, self.eval_windows, self.args.eval_batch_size, seed=self.args.seed)
        logger.info(
            "held-out windows: accuracy %.3f (teacher forced), %.3f (sampled), KL %.1f nats",
            metrics["accuracy"], metrics["sampled_accuracy"], metrics["kl"],
        )  # fmt: skip
        return {f"eval_{name}": value for name, value in metrics.items()}
