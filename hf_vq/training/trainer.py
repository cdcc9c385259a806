"""The one training loop behind every script: Accelerate (multi-process, mixed precision, gradient accumulation),
atomic resumable checkpoints, a tracker, sample grids, non-finite losses caught, and the GAN part of the VQ-GAN.

Data: each process reads its own shard of the stream (`ImageStream` shards with `split_dataset_by_node`), so the
DataLoader is deliberately not passed through `accelerator.prepare`, which would shard (or dispatch) a second time.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..data import ImageStream, image_dataloader, load_eval_images, load_image_dataset, stream_defaults
from ..hub import push_training_outputs, render_run_card
from ..losses.gan import GAN_LOSSES, LeCAM, adaptive_weight
from ..losses.lpips import load_lpips
from ..metrics import reconstruction_metrics
from ..models.discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from ..utils.configuration_utils import latent_side
from ..utils.image_utils import make_grid
from ..utils.torch_utils import evaluating
from .arguments import ParsedArguments
from .checkpointing import latest_checkpoint, remove_incomplete_checkpoints, save_checkpoint
from .objectives import Family

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised after `max_nonfinite_steps` consecutive steps with a non-finite loss."""


class Trainer:
    """Trains one model family as `ParsedArguments` describe; `run()` returns the final metrics."""

    def __init__(self, family: Family, parsed: ParsedArguments):
        self.family = family
        self.args = parsed.training
        self.gan = parsed.gan
        self.prior_args = parsed.prior
        self.model_config = dict(parsed.model_config)
        self.discriminator_config = dict(parsed.discriminator_config)
        self.output_dir = Path(self.args.output_dir)
        self.global_step = 0
        self.nonfinite_in_a_row = 0
        self.nonfinite_skipped = 0
        self.discriminator = None
        self.lecam = None
        self._batches = None

    # ----- set-up -----

    def _build_model(self):
        args = self.args
        if args.pretrained_model:
            if self.model_config:
                raise ValueError("give either --pretrained_model or a model config, not both")
            return self.family.model_class.from_pretrained(args.pretrained_model)
        config = dict(self.model_config)
        if args.resolution is not None:
            config.setdefault("sample_size", args.resolution)
        return self.family.model_class(self.family.config_class(**config))

    def _build_discriminator(self, model) -> None:
        config = {"in_channels": model.config.out_channels, **self.discriminator_config}
        self.discriminator = PatchDiscriminator(PatchDiscriminatorConfig(**config))
        gan, args = self.gan, self.args
        self.d_optimizer = torch.optim.AdamW(
            self.discriminator.parameters(),
            lr=self._scaled_lr(gan.disc_learning_rate or args.learning_rate),
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
        )
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[gan.disc_loss]
        if gan.lecam_weight > 0:
            self.lecam = LeCAM(decay=gan.lecam_decay)

    def _scaled_lr(self, lr: float) -> float:
        if not self.args.scale_lr:
            return lr
        total_batch = (
            self.args.train_batch_size * self.args.gradient_accumulation_steps * self.accelerator.num_processes
        )
        return lr * total_batch

    def setup(self) -> None:
        args = self.args
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
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_incomplete_checkpoints(self.output_dir)
        set_seed(args.seed)

        model = self._build_model()
        self._check_model(model)
        optimizer = torch.optim.AdamW(
            self._parameter_groups(model),
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
            self._build_discriminator(model)
            self.d_optimizer = accelerator.prepare(self.d_optimizer)
            self.discriminator.to(accelerator.device)
            if self.lecam is not None:
                self.lecam.to(accelerator.device)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self._setup_data()

        if args.resume_from_checkpoint:
            self._resume(args.resume_from_checkpoint)
        if accelerator.is_main_process:
            config = {k: v for k, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers("hf_vq", config=config)

    # ----- what differs between families (the prior's trainer overrides these) -----

    def _check_model(self, model) -> None:
        self.resolution = self.args.resolution or model.config.sample_size
        self.channels = model.config.in_channels
        latent_side(model.config, self.resolution)  # checks the resolution

    def _parameter_groups(self, model) -> list:
        return [p for p in model.parameters() if p.requires_grad]

    def _setup_data(self) -> None:
        """The training stream and loader of this process, and the held-out data (`self.eval_images`)."""
        args, accelerator = self.args, self.accelerator
        self.lpips = load_lpips(args.lpips_weights)
        if self.lpips is not None:
            self.lpips.to(accelerator.device)
        source = load_image_dataset(args.dataset, args.dataset_split, args.dataset_config)
        self.stream = ImageStream(
            source,
            self.resolution,
            num_channels=self.channels,
            image_column=args.image_column,
            label_column=args.label_column,
            shuffle_buffer=args.shuffle_buffer,
            seed=args.seed,
            random_flip=args.random_flip,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            **stream_defaults(args.dataset),  # e.g. random crops of the few builtin photographs
        )
        self.loader = image_dataloader(self.stream, args.train_batch_size)
        self.eval_images = None
        if args.eval_split is not None:
            self.eval_images = load_eval_images(
                args.dataset,
                args.eval_split,
                self.resolution,
                num_channels=self.channels,
                limit=args.max_eval_images,
                image_column=args.image_column,
                dataset_config=args.dataset_config,
            )

    def _forward_terms(self, batch: dict[str, torch.Tensor], adversarial: bool) -> tuple[dict[str, torch.Tensor], Any]:
        """The generator's loss terms on one batch (under autocast) and the model output."""
        pixel_values = batch["pixel_values"]
        output = self.model(pixel_values)
        perceptual = self.lpips(output.reconstruction, pixel_values) if self.lpips is not None else None
        terms = self.family.loss_terms(output, pixel_values, perceptual, self.args)
        if adversarial:
            terms["adversarial"] = self._adversarial_term(output.reconstruction, terms)
        return terms, output

    def _keep_validation_inputs(self, batch: dict[str, torch.Tensor]) -> None:
        """Without a held-out split, the sample grids show the first training batch."""
        if self._validation_images is None:
            self._validation_images = batch["pixel_values"][: self.args.num_validation_images].cpu()

    def _evaluate(self, model) -> dict[str, Any]:
        if self.eval_images is None:
            return {}
        return {f"eval_{k}": v for k, v in reconstruction_metrics(model, self.eval_images).items()}

    def _push(self) -> None:
        """Publish the final model (or a prior's pipeline), its card, sample grids and metrics; see
        `hf_vq.hub.stage_training_outputs`. The card is the README.md `finish` just rendered."""
        args = self.args
        push_training_outputs(
            self.output_dir,
            args.hub_model_id,
            private=args.hub_private,
            push_discriminator=args.push_discriminator,
            push_training_args=args.push_training_args,
            export_code=args.export_code,
            model_card=(self.output_dir / "README.md").read_text(),
        )

    def _save_outputs(self, model) -> None:
        model.save_pretrained(self.output_dir / "model")
        if self.discriminator is not None:
            self.discriminator.save_pretrained(self.output_dir / "discriminator")

    # ----- checkpoints -----

    def _write_extra_state(self, directory: Path) -> None:
        rank = self.accelerator.process_index
        (directory / f"data_state_{rank}.json").write_text(json.dumps(self.stream.state_dict()))
        if not self.accelerator.is_main_process:
            return
        if self.discriminator is not None:
            save_file(self.discriminator.state_dict(), directory / "discriminator.safetensors")
        if self.lecam is not None:
            save_file(self.lecam.state_dict(), directory / "lecam.safetensors")
        state = {
            "global_step": self.global_step,
            "epoch_of_process_0": self.stream.epoch,  # informational: each process's position is in data_state_*
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "nonfinite_skipped": self.nonfinite_skipped,
        }
        (directory / "trainer_state.json").write_text(json.dumps(state, indent=2))

    def _resume(self, which: str) -> None:
        path = latest_checkpoint(self.output_dir) if which == "latest" else Path(which)
        if path is None:
            logger.warning(
                "--resume_from_checkpoint latest: no checkpoint in %s, starting from scratch", self.output_dir
            )
            return
        if not (path / "trainer_state.json").is_file():
            raise ValueError(f"{path} is not a complete checkpoint (no trainer_state.json)")
        self.accelerator.load_state(str(path))
        state = json.loads((path / "trainer_state.json").read_text())
        self.global_step = state["global_step"]
        self.nonfinite_in_a_row, self.nonfinite_skipped = state["nonfinite_in_a_row"], state["nonfinite_skipped"]
        if self.discriminator is not None:
            self.discriminator.load_state_dict(load_file(path / "discriminator.safetensors"))
        if self.lecam is not None:
            self.lecam.load_state_dict(load_file(path / "lecam.safetensors"))
        data_state = path / f"data_state_{self.accelerator.process_index}.json"
        if not data_state.is_file():
            raise ValueError(f"{path} has no data position for process {self.accelerator.process_index}")
        self.stream.load_state_dict(json.loads(data_state.read_text()))
        logger.info("resumed from %s at step %d", path, self.global_step)

    # ----- one step -----

    def _all_finite(self, values: dict[str, torch.Tensor]) -> tuple[bool, list[str]]:
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

    def _adversarial_term(self, reconstruction: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Generator hinge / non-saturating loss, weighted adaptively at the decoder's last layer (taming)."""
        logits_fake = self.discriminator(reconstruction)
        generator_loss = self.g_loss_fn(logits_fake)
        nll = terms["reconstruction"] + terms.get("perceptual", 0.0)
        last_layer = self.accelerator.unwrap_model(self.model).decoder.conv_out.weight
        weight = adaptive_weight(nll, generator_loss, last_layer, max_weight=self.gan.adaptive_weight_max)
        return self.gan.disc_weight * weight * generator_loss

    def _generator_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], torch.Tensor | None] | None:
        """One generator (or prior) step: its logs and the detached reconstruction (None for the prior), or None when
        the step was skipped for a non-finite loss."""
        args, accelerator = self.args, self.accelerator
        adversarial = self.discriminator is not None and self.global_step >= self.gan.disc_start
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)  # its gradients come from the discriminator step only
        with accelerator.accumulate(self.model):
            with accelerator.autocast():
                terms, output = self._forward_terms(batch, adversarial)
            finite, bad = self._all_finite(terms)
            if not finite:
                self._skip_nonfinite(bad, "generator")
                return None
            loss = sum(terms.values())
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm is not None:
                accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        logs = {name: value.detach().float().item() for name, value in terms.items()}
        for name in ("perplexity", "usage"):
            if getattr(output, name, None) is not None:
                logs[name] = output[name].float().item()
        reconstruction = getattr(output, "reconstruction", None)
        return logs, None if reconstruction is None else reconstruction.detach()

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float] | None:
        accelerator, discriminator = self.accelerator, self.discriminator
        discriminator.requires_grad_(True)
        with accelerator.autocast():
            logits_real = discriminator(real)
            logits_fake = discriminator(fake)
            terms = {"discriminator": self.d_loss_fn(logits_real, logits_fake)}
        finite, bad = self._all_finite(terms)
        if not finite:
            self.d_optimizer.zero_grad(set_to_none=True)
            self._skip_nonfinite(bad, "discriminator")
            return None
        if self.lecam is not None:
            # Anchors first (the first update sets them to this batch's means), then the penalty against them.
            self.lecam.update(logits_real, logits_fake)
            terms["lecam"] = self.gan.lecam_weight * self.lecam.penalty(logits_real, logits_fake)
        accelerator.backward(sum(terms.values()))  # divided by the accumulation steps, like the generator's
        if accelerator.sync_gradients:
            # Not wrapped in DDP (it runs twice per step, on real and on fake): average its gradients by hand.
            for parameter in discriminator.parameters():
                if parameter.grad is not None:
                    parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")
        self.d_optimizer.step()  # an AcceleratedOptimizer: steps only when gradients are synced
        self.d_optimizer.zero_grad(set_to_none=True)
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
        raise ValueError(
            f"the training split of {self.args.dataset!r} gives no full batch of {self.args.train_batch_size} images "
            f"on process {self.accelerator.process_index}; use a smaller --train_batch_size"
        )

    # ----- outputs -----

    @torch.no_grad()
    def validate(self) -> None:
        """Write `samples/step-<n>.png`: inputs over reconstructions (and prior samples for VAEs)."""
        if not self.accelerator.is_main_process:
            return
        model = self.accelerator.unwrap_model(self.model)
        images = self._validation_images.to(self.accelerator.device)
        with evaluating(model), self.accelerator.autocast():
            rows = [images, model(images).reconstruction.float()]
            if hasattr(model, "sample"):
                generator = torch.Generator(self.accelerator.device).manual_seed(self.args.seed)
                rows.append(model.sample(len(images), generator=generator).float())
        self._save_sample_grid(make_grid(torch.cat(rows), nrow=len(images), scale=max(1, 64 // self.resolution)))

    def _save_sample_grid(self, grid) -> None:
        samples_dir = self.output_dir / "samples"
        samples_dir.mkdir(exist_ok=True)
        grid.save(samples_dir / f"step-{self.global_step}.png")

    def finish(self, train_seconds: float, images_seen: int) -> dict[str, Any]:
        """Save the model (and discriminator) with `save_pretrained`, the metrics and the arguments."""
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        metrics: dict[str, Any] = {}
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(self.model)
            self._save_outputs(model)
            self.validate()
            metrics.update(self._evaluate(model))
            metrics.update(
                {
                    "step": self.global_step,
                    "train_images_per_second": images_seen / max(train_seconds, 1e-9),
                    "nonfinite_steps_skipped": self.nonfinite_skipped,
                    "data_skipped": dict(self.stream.skip_counts),
                }
            )
            (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            pretrained = self.args.pretrained_model
            arguments = {
                "family": self.family.name,
                "training": dataclasses.asdict(self.args),
                "gan": dataclasses.asdict(self.gan) if self.gan is not None else None,
                "prior": dataclasses.asdict(self.prior_args) if self.prior_args is not None else None,
                "model": model.config.to_diff_dict(),
                "discriminator": self.discriminator.config.to_diff_dict() if self.discriminator is not None else None,
                "num_processes": accelerator.num_processes,
                # A fine-tuned model's card names its base model when that came from the Hub.
                "base_model": pretrained if pretrained and not Path(pretrained).exists() else None,
            }
            (self.output_dir / "training_args.json").write_text(json.dumps(arguments, indent=2, default=str) + "\n")
            if self.args.hub_model_id:  # the card's usage snippet loads the model by its repo id
                card = render_run_card(self.output_dir, self.args.hub_model_id, code_exported=self.args.export_code)
                (self.output_dir / "README.md").write_text(str(card))
            if self.args.push_to_hub:
                self._push()
        accelerator.wait_for_everyone()
        return metrics

    # ----- the loop -----

    def train(self) -> tuple[float, int]:
        args, accelerator = self.args, self.accelerator
        self._validation_images = (
            self.eval_images[: args.num_validation_images] if self.eval_images is not None else None
        )
        progress = tqdm(
            total=args.max_train_steps, initial=self.global_step, disable=not accelerator.is_local_main_process
        )
        total_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
        start, start_step = time.perf_counter(), self.global_step
        self.model.train()
        try:
            self._loop(progress, start, start_step, total_batch)
        finally:
            progress.close()
        seconds = time.perf_counter() - start
        return seconds, (self.global_step - start_step) * total_batch

    def _loop(self, progress: tqdm, start: float, start_step: int, total_batch: int) -> None:
        args, accelerator = self.args, self.accelerator
        while self.global_step < args.max_train_steps:
            batch = {name: value.to(accelerator.device) for name, value in self._next_batch().items()}
            self._keep_validation_inputs(batch)
            result = self._generator_step(batch)
            if result is None:
                continue
            logs, reconstruction = result
            if self.discriminator is not None and self.global_step >= self.gan.disc_train_start:
                d_logs = self._discriminator_step(batch["pixel_values"], reconstruction)
                if d_logs is None:
                    continue
                logs.update(d_logs)
            self.nonfinite_in_a_row = 0
            if not accelerator.sync_gradients:
                continue
            self.global_step += 1
            progress.update(1)
            rate = (self.global_step - start_step) * total_batch / (time.perf_counter() - start)
            logs["images_per_second"] = rate
            logs["lr"] = self.scheduler.get_last_lr()[0]
            progress.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k != "lr"}, refresh=False)
            if self.global_step % args.logging_steps == 0:
                accelerator.log(logs, step=self.global_step)
            if self.global_step % args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator,
                    self.output_dir,
                    self.global_step,
                    self._write_extra_state,
                    args.checkpoints_total_limit,
                )
            if self.global_step % args.validation_steps == 0:
                self.validate()

    def run(self) -> dict[str, Any]:
        try:
            self.setup()
            seconds, images_seen = self.train()
            metrics = self.finish(seconds, images_seen)
            if self.accelerator.is_main_process and "eval_psnr" in metrics:
                logger.info("held-out PSNR %.2f dB", metrics["eval_psnr"])
            if not math.isfinite(metrics.get("eval_psnr", 0.0)):
                logger.warning("held-out PSNR is not finite")
            return metrics
        finally:
            if hasattr(self, "accelerator"):
                # Release the DDP-wrapped model first (its reducer holds the process group), then destroy the group:
                # without end_training gloo aborted at exit about half the time, and with the model outliving the
                # group a process sometimes hung at exit.
                self.model = self.optimizer = self.scheduler = None
                self.accelerator.free_memory()
                gc.collect()
                self.accelerator.end_training()
