"""The one training loop behind every script: Accelerate (multi-process, mixed precision, gradient accumulation),
atomic resumable checkpoints, a tracker, sample grids, non-finite losses caught, and the GAN part when the family has
one.

What differs between families is data on their `Family` entry (objective, discriminator, parameter groups, sample
rows); what differs between kinds of data is five hooks that a subclass implements: `build_model`, `build_data`,
`sample_grid`, `evaluate` and `save_outputs` (`ImageTrainer`, `PriorTrainer`, `SequenceTrainer`).

Data: each process reads its own shard of the stream (the streams shard with `split_dataset_by_node`), so the
DataLoader is deliberately not passed through `accelerator.prepare`, which would shard (or dispatch) a second time.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from PIL import Image
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_scheduler

from ..data import RecordStream
from ..utils.errors import UsageError
from ..utils.torch_utils import evaluating
from .adversarial import AdversarialPart
from .arguments import GANArguments, ParsedArguments, PriorArguments, SequenceArguments, TrainingArguments
from .checkpointing import (
    TRAINER_STATE_NAME,
    checkpoint_step,
    drop_tied_weights,
    find_damaged_file,
    latest_checkpoint,
    list_checkpoints,
    remove_incomplete_checkpoints,
    save_checkpoint,
)
from .objectives import LossTerms, ObjectiveContext
from .preflight import check_run, clear_run
from .publishing import MODEL_FOLDER, SAMPLES_FOLDER, push_training_outputs, render_run_card

if TYPE_CHECKING:
    from .families import Family

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after `max_nonfinite_steps` consecutive steps with a non-finite loss."""


class Trainer:
    """Trains one model family as `ParsedArguments` describe; `run()` returns the final metrics.

    Every attribute is declared here; those that `setup()` fills are None before it.
    """

    # Whether the scripts of the families this trainer serves take `PriorArguments` (`--vq_model`, ...) or
    # `SequenceArguments` (`--transpose`, ...).
    uses_prior_arguments = False
    uses_sequence_arguments = False

    def __init__(self, family: Family, parsed: ParsedArguments):
        self.family = family
        self.args: TrainingArguments = parsed.training
        self.gan: GANArguments | None = parsed.gan
        self.prior_args: PriorArguments | None = parsed.prior
        self.sequence_args: SequenceArguments | None = parsed.sequence
        self.model_config: dict[str, Any] = dict(parsed.model_config)
        self.discriminator_config: dict[str, Any] = dict(parsed.discriminator_config)
        self.output_dir = Path(self.args.output_dir)
        # progress, saved in every checkpoint
        self.run_id = uuid.uuid4().hex  # this run's identity, in every checkpoint; a resumed run keeps its own
        self.global_step = 0
        self.nonfinite_in_a_row = 0
        self.nonfinite_skipped = 0
        # filled by setup()
        self.accelerator: Accelerator | None = None
        self.model: torch.nn.Module | None = None  # as prepared by Accelerate (DDP-wrapped with several processes)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.adversarial: AdversarialPart | None = None  # the discriminator, for families that have one
        self.lpips: torch.nn.Module | None = None  # the perceptual loss, when LPIPS weights are given
        self.stream: RecordStream | None = None  # this process's shard of the training data
        self.loader: torch.utils.data.DataLoader | None = None
        # filled by the loop
        self.first_batch: dict[str, torch.Tensor] | None = None  # for sample grids when there is no held-out data
        self._batches: Iterator[dict[str, torch.Tensor]] | None = None

    # ----- the hooks a kind of data implements -----

    def build_model(self) -> PreTrainedModel:
        """The model to train (new from the model config, or `--pretrained_model`), checked against the data."""
        raise NotImplementedError

    def build_data(self) -> None:
        """Set `self.stream` and `self.loader` (this process's shard) and load the held-out data, if any."""
        raise NotImplementedError

    def sample_grid(self, model: PreTrainedModel) -> Image.Image:
        """The grid `validate()` writes (main process, model in eval mode, no gradients)."""
        raise NotImplementedError

    def evaluate(self, model: PreTrainedModel) -> dict[str, Any]:
        """Held-out metrics of the final model, named `eval_*` (empty without held-out data)."""
        raise NotImplementedError

    def save_outputs(self, model: PreTrainedModel) -> None:
        """`save_pretrained` of the final model (and discriminator) into `model/` (and `discriminator/`)."""
        model.save_pretrained(self.output_dir / MODEL_FOLDER)
        if self.adversarial is not None:
            self.adversarial.discriminator.save_pretrained(self.output_dir / "discriminator")

    # ----- set-up -----

    def new_model(self) -> PreTrainedModel:
        """`--pretrained_model`, or the family's model from `self.model_config` (which `build_model` may complete
        first, e.g. with fields derived from the data)."""
        if self.args.pretrained_model:
            if self.model_config:
                raise UsageError("give either --pretrained_model or a model config, not both")
            return self.family.model_class.from_pretrained(self.args.pretrained_model)
        return self.family.model_class(self.family.config_class(**self.model_config))

    def _scaled_lr(self, lr: float) -> float:
        """`lr`, times the total batch size with `--scale_lr` (taming's base learning rate)."""
        if not self.args.scale_lr:
            return lr
        return lr * self.args.train_batch_size * self.args.gradient_accumulation_steps * self.accelerator.num_processes

    def setup(self) -> None:
        args = self.args
        check_run(args, self.prior_args)  # before anything is written: a refused run leaves the disk as it was
        self.accelerator = accelerator = Accelerator(
            # On a machine without an accelerator, `accelerate launch --multi_gpu` starts the processes but Accelerate
            # only forms the (gloo) process group when told it runs on the CPU; otherwise each trains alone.
            cpu=not torch.accelerator.is_available(),
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision=args.mixed_precision,
            log_with=None if args.report_to == "none" else args.report_to,
            project_config=ProjectConfiguration(
                project_dir=str(self.output_dir), logging_dir=str(self.output_dir / "logs")
            ),
        )
        accelerator.register_save_state_pre_hook(drop_tied_weights)
        if accelerator.is_main_process:
            if args.overwrite_output_dir and self.output_dir.is_dir():
                removed = ", ".join(clear_run(self.output_dir)) or "nothing"
                logger.info("--overwrite_output_dir: removed %s from %s", removed, self.output_dir)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_incomplete_checkpoints(self.output_dir)
        accelerator.wait_for_everyone()
        set_seed(args.seed)

        model = self.build_model()
        optimizer = torch.optim.AdamW(
            self.family.parameter_groups(model),
            lr=self._scaled_lr(args.learning_rate),
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
        )
        # The prepared scheduler steps once per process for every optimizer step (diffusers' examples do the same).
        scheduler = get_scheduler(
            args.lr_scheduler,
            optimizer,
            num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
            num_training_steps=args.max_train_steps * accelerator.num_processes,
        )
        if self.family.adversarial:
            self.adversarial = AdversarialPart(
                accelerator,
                self.gan,
                args,
                self.discriminator_config,
                image_channels=model.config.out_channels,
                learning_rate=self._scaled_lr(self.gan.disc_learning_rate or args.learning_rate),
            )
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.build_data()

        if args.resume_from_checkpoint:
            self._resume(args.resume_from_checkpoint)
        if accelerator.is_main_process:
            config = {k: v for k, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers("hf_vq", config=config)

    # ----- checkpoints -----

    def _write_extra_state(self, directory: Path) -> None:
        rank = self.accelerator.process_index
        (directory / f"data_state_{rank}.json").write_text(json.dumps(self.stream.state_dict()))
        if not self.accelerator.is_main_process:
            return
        if self.adversarial is not None:
            self.adversarial.save(directory)
        state = {
            "run_id": self.run_id,
            "global_step": self.global_step,
            "epoch_of_process_0": self.stream.epoch,  # informational: each process's position is in data_state_*
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_skipped": self.nonfinite_skipped,
        }
        (directory / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2))

    def _resume(self, which: str) -> None:
        """Restore model, optimizers, schedulers, RNG, discriminator and data position from a checkpoint."""
        path = latest_checkpoint(self.output_dir) if which == "latest" else Path(which)  # check_run: it exists
        data_state = f"data_state_{self.accelerator.process_index}.json"
        written_by = len(list(path.glob("data_state_*.json")))  # one data position per process that wrote it
        if written_by and written_by != self.accelerator.num_processes:
            raise UsageError(
                f"--resume_from_checkpoint: {path} was written by {written_by} process(es), this run has "
                f"{self.accelerator.num_processes}: resume with --num_processes {written_by}"
            )
        try:
            self.accelerator.load_state(str(path))
            state = json.loads((path / TRAINER_STATE_NAME).read_text())
            self.global_step = state["global_step"]
            self.nonfinite_in_a_row, self.nonfinite_skipped = state["nonfinite_in_a_row"], state["nonfinite_skipped"]
            self.run_id = state.get("run_id") or self.run_id  # checkpoints written before run ids keep the new one
            if self.adversarial is not None:
                self.adversarial.load(path)
            self.stream.load_state_dict(json.loads((path / data_state).read_text()))
        except Exception as error:
            damaged = find_damaged_file(path, [TRAINER_STATE_NAME, data_state])
            if damaged is None:
                raise  # every file reads back: not a damaged checkpoint but a bug, which keeps its traceback
            step = checkpoint_step(path)
            older = [c for c in list_checkpoints(path.parent) if step is not None and checkpoint_step(c) < step]
            way_on = f"resume from {older[-1]} or delete it" if older else "delete it (there is no older checkpoint)"
            raise UsageError(
                f"--resume_from_checkpoint: {path} is incomplete or corrupt ({damaged}): {way_on}"
            ) from error
        logger.info("resumed from %s at step %d", path, self.global_step)

    # ----- one step -----

    def _all_finite(self, values: LossTerms) -> tuple[bool, list[str]]:
        """Whether every term is finite on every process (all processes must agree to skip together)."""
        bad = [name for name, value in values.items() if not torch.isfinite(value.detach()).all()]
        flag = torch.tensor([float(bool(bad))], device=self.accelerator.device)
        return self.accelerator.reduce(flag, reduction="sum").item() == 0, bad

    def _skip_nonfinite(self, bad: list[str], what: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_a_row += 1
        self.nonfinite_skipped += 1
        names = ", ".join(bad) if bad else "a term on another process"
        logger.warning("step %d: non-finite %s loss (%s); step skipped", self.global_step, what, names)
        if self.nonfinite_in_a_row >= self.args.max_nonfinite_steps:
            last = latest_checkpoint(self.output_dir)
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} consecutive steps with a non-finite {what} loss (term: {names}); "
                f"stopping. The last good checkpoint is {last or 'none (no checkpoint was written yet)'}"
            )

    def _generator_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], Any] | None:
        """One step of the trained model: its logs and its output, or None when a non-finite loss skipped it."""
        accelerator, adversarial = self.accelerator, self.adversarial
        module = accelerator.unwrap_model(self.model)
        context = ObjectiveContext(self.args, self.global_step, module, self.lpips)
        if adversarial is not None:
            adversarial.freeze()
        with accelerator.accumulate(self.model):
            with accelerator.autocast():
                terms, output = self.family.objective(self.model, batch, context)
                if adversarial is not None and adversarial.generator_active(self.global_step):
                    terms["adversarial"] = adversarial.generator_term(module, output, terms)
            finite, bad = self._all_finite(terms)
            if not finite:
                self._skip_nonfinite(bad, "generator")
                return None
            accelerator.backward(sum(terms.values()))
            if accelerator.sync_gradients and self.args.max_grad_norm is not None:
                accelerator.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        logs = {name: value.detach().float().item() for name, value in terms.items()}
        for name in ("perplexity", "usage", "accuracy", "kl"):  # what the model's output says besides the loss
            if getattr(output, name, None) is not None and name not in logs:
                logs[name] = output[name].detach().float().mean().item()  # the KL is per sample: its batch mean
        return logs, output

    def _discriminator_step(self, batch: dict[str, torch.Tensor], output: Any) -> dict[str, float] | None:
        adversarial = self.adversarial
        terms, logits_real, logits_fake = adversarial.discriminator_terms(batch, output)
        finite, bad = self._all_finite(terms)
        if not finite:
            adversarial.optimizer.zero_grad(set_to_none=True)
            self._skip_nonfinite(bad, "discriminator")
            return None
        terms = adversarial.step(terms, logits_real, logits_fake)
        return {name: value.detach().float().item() for name, value in terms.items()}

    def _next_batch(self) -> dict[str, torch.Tensor]:
        """The next batch of this process's shard. The stream keeps its own position: at the end of an epoch it
        moves to the next (reshuffled) one by itself, and after a resume it continues where the checkpoint was."""
        for _ in range(2):
            if self._batches is None:
                self._batches = iter(self.loader)
            try:
                return next(self._batches)
            except StopIteration:
                self._batches = None
        raise UsageError(
            f"the training split of {self.args.dataset!r} gives no full batch of {self.args.train_batch_size} records "
            f"on process {self.accelerator.process_index}; use a smaller --train_batch_size"
        )

    # ----- outputs -----

    @torch.no_grad()
    def validate(self) -> None:
        """Write `samples/step-<n>.png` (main process): the grid of `sample_grid`."""
        if not self.accelerator.is_main_process:
            return
        model = self.accelerator.unwrap_model(self.model)
        with evaluating(model):
            grid = self.sample_grid(model)
        samples_dir = self.output_dir / SAMPLES_FOLDER
        samples_dir.mkdir(exist_ok=True)
        grid.save(samples_dir / f"step-{self.global_step}.png")

    def finish(self, train_seconds: float, records_seen: int) -> dict[str, Any]:
        """Save the model (and discriminator), the metrics, the arguments and the card; push when asked."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        metrics: dict[str, Any] = {}
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(self.model)
            self.save_outputs(model)
            self.validate()
            metrics.update(self.evaluate(model))
            metrics.update(
                {
                    "step": self.global_step,
                    "train_images_per_second": records_seen / max(train_seconds, 1e-9),  # records: images or codes
                    "nonfinite_steps_skipped": self.nonfinite_skipped,
                    "data_skipped": dict(self.stream.skip_counts),
                }
            )
            (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            self._write_training_args(model)
            if self.args.hub_model_id:  # the card's usage snippet loads the model by its repo id
                card = render_run_card(self.output_dir, self.args.hub_model_id, code_exported=self.args.export_code)
                (self.output_dir / "README.md").write_text(str(card))
            if self.args.push_to_hub:
                # the card is the README.md just written
                push_training_outputs(
                    self.output_dir,
                    self.args.hub_model_id,
                    private=self.args.hub_private,
                    push_discriminator=self.args.push_discriminator,
                    push_training_args=self.args.push_training_args,
                    export_code=self.args.export_code,
                    model_card=(self.output_dir / "README.md").read_text(),
                )
        accelerator.wait_for_everyone()
        return metrics

    def _write_training_args(self, model: PreTrainedModel) -> None:
        pretrained = self.args.pretrained_model
        discriminator = self.adversarial.discriminator if self.adversarial is not None else None
        arguments = {
            "family": self.family.name,
            "training": dataclasses.asdict(self.args),
            "gan": dataclasses.asdict(self.gan) if self.gan is not None else None,
            "prior": dataclasses.asdict(self.prior_args) if self.prior_args is not None else None,
            "sequence": dataclasses.asdict(self.sequence_args) if self.sequence_args is not None else None,
            "model": model.config.to_diff_dict(),
            "discriminator": discriminator.config.to_diff_dict() if discriminator is not None else None,
            "num_processes": self.accelerator.num_processes,
            # A fine-tuned model's card names its base model when that came from the Hub.
            "base_model": pretrained if pretrained and not Path(pretrained).exists() else None,
        }
        (self.output_dir / "training_args.json").write_text(json.dumps(arguments, indent=2, default=str) + "\n")

    # ----- the loop -----

    def train(self) -> tuple[float, int]:
        """Train up to `max_train_steps`; returns the seconds spent and the number of records seen."""
        args, accelerator = self.args, self.accelerator
        progress = tqdm(
            total=args.max_train_steps, initial=self.global_step, disable=not accelerator.is_local_main_process
        )
        total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
        start, start_step = time.perf_counter(), self.global_step
        self.model.train()
        try:
            while self.global_step < args.max_train_steps:
                logs = self._train_step()
                if logs is None:
                    continue
                self.global_step += 1
                progress.update(1)
                logs["images_per_second"] = (
                    (self.global_step - start_step) * total_batch / (time.perf_counter() - start)
                )
                logs["lr"] = self.scheduler.get_last_lr()[0]
                progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k != "lr"}, refresh=False)
                self._after_step(logs)
        finally:
            progress.close()
        return time.perf_counter() - start, (self.global_step - start_step) * total_batch

    def _train_step(self) -> dict[str, float] | None:
        """One micro-batch; its logs when it completed an optimizer step, None otherwise (accumulating, or skipped)."""
        batch = {name: value.to(self.accelerator.device) for name, value in self._next_batch().items()}
        if self.first_batch is None:
            self.first_batch = {name: value[: self.args.num_validation_images].cpu() for name, value in batch.items()}
        result = self._generator_step(batch)
        if result is None:
            return None
        logs, output = result
        if self.adversarial is not None and self.adversarial.discriminator_active(self.global_step):
            d_logs = self._discriminator_step(batch, output)
            if d_logs is None:
                return None
            logs.update(d_logs)
        self.nonfinite_in_a_row = 0
        return logs if self.accelerator.sync_gradients else None

    def _after_step(self, logs: dict[str, float]) -> None:
        """Log, checkpoint and validate on their schedules."""
        args, step = self.args, self.global_step
        if step % args.logging_steps == 0:
            self.accelerator.log(logs, step=step)
        if step % args.checkpointing_steps == 0:
            limit = args.checkpoints_total_limit
            save_checkpoint(self.accelerator, self.output_dir, step, self._write_extra_state, limit, self.run_id)
        if step % args.validation_steps == 0:
            self.validate()

    def run(self) -> dict[str, Any]:
        """Set up, train, save and evaluate; returns the final metrics."""
        try:
            self.setup()
            seconds, records_seen = self.train()
            return self.finish(seconds, records_seen)
        finally:
            if self.accelerator is not None:
                # Release the DDP-wrapped model first (its reducer holds the process group), then destroy the group:
                # without end_training gloo aborted at exit about half the time, and with the model outliving the
                # group a process sometimes hung at exit.
                self.model = self.optimizer = self.scheduler = None
                self.accelerator.free_memory()
                gc.collect()
                self.accelerator.end_training()
