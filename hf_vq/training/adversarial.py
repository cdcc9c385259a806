"""The GAN part of VQ-GAN training: the patch discriminator, its optimizer and step, and the generator's adaptive
adversarial term (taming's loss, with the discriminator trained from `disc_train_start` rather than frozen until
`disc_start`; see `hf_vq.losses.gan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from ..losses.gan import GAN_LOSSES, LeCAM, adaptive_weight
from ..models.discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from .arguments import GANArguments, TrainingArguments
from .objectives import LossTerms


class AdversarialPart:
    """The discriminator of one run, prepared for `accelerator`.

    Args:
        accelerator: the run's Accelerator (the discriminator's optimizer is prepared with it).
        gan: the GAN arguments.
        args: the training arguments (optimizer settings).
        config: the discriminator config's fields (`discriminator:` of a recipe); `in_channels` defaults to the
            generator's output channels.
        image_channels: the generator's output channels.
        learning_rate: the discriminator's learning rate, already scaled like the generator's.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        gan: GANArguments,
        args: TrainingArguments,
        config: dict,
        image_channels: int,
        learning_rate: float,
    ):
        self.accelerator = accelerator
        self.gan = gan
        self.discriminator = PatchDiscriminator(PatchDiscriminatorConfig(**{"in_channels": image_channels, **config}))
        self.discriminator.to(accelerator.device)
        optimizer = torch.optim.AdamW(
            self.discriminator.parameters(),
            lr=learning_rate,
            betas=(args.adam_beta1, args.adam_beta2),
            weight_decay=args.adam_weight_decay,
        )
        self.optimizer = accelerator.prepare(optimizer)
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[gan.disc_loss]
        self.lecam = LeCAM(decay=gan.lecam_decay).to(accelerator.device) if gan.lecam_weight > 0 else None

    def generator_active(self, step: int) -> bool:
        """Whether the generator gets the adversarial term at `step`."""
        return step >= self.gan.disc_start

    def discriminator_active(self, step: int) -> bool:
        """Whether the discriminator trains at `step`."""
        return step >= self.gan.disc_train_start

    def freeze(self) -> None:
        """No gradients into the discriminator during the generator's step (its own step computes them)."""
        self.discriminator.requires_grad_(False)

    def generator_term(self, generator: torch.nn.Module, output: Any, terms: LossTerms) -> torch.Tensor:
        """Generator hinge / non-saturating loss on `output.reconstruction`, weighted adaptively at the last layer
        of the generator's decoder (taming). `generator`: the model without its DDP wrapper."""
        last_layer = generator.decoder.conv_out.weight
        generator_loss = self.g_loss_fn(self.discriminator(output.reconstruction))
        nll = terms["reconstruction"] + terms.get("perceptual", 0.0)
        weight = adaptive_weight(nll, generator_loss, last_layer, max_weight=self.gan.adaptive_weight_max)
        return self.gan.disc_weight * weight * generator_loss

    def discriminator_terms(
        self, batch: dict[str, torch.Tensor], output: Any
    ) -> tuple[LossTerms, torch.Tensor, torch.Tensor]:
        """The discriminator's loss on one batch (under autocast): the batch's images against the generator's
        (detached) reconstructions; and its logits on both."""
        real, fake = batch["pixel_values"], output.reconstruction.detach()
        self.discriminator.requires_grad_(True)
        with self.accelerator.autocast():
            logits_real = self.discriminator(real)
            logits_fake = self.discriminator(fake)
            terms = {"discriminator": self.d_loss_fn(logits_real, logits_fake)}
        return terms, logits_real, logits_fake

    def step(self, terms: LossTerms, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> LossTerms:
        """Add the LeCAM penalty, backpropagate, average the gradients over processes and step the optimizer."""
        accelerator = self.accelerator
        if self.lecam is not None:
            # Anchors first (the first update sets them to this batch's means), then the penalty against them.
            self.lecam.update(logits_real, logits_fake)
            terms["lecam"] = self.gan.lecam_weight * self.lecam.penalty(logits_real, logits_fake)
        accelerator.backward(sum(terms.values()))  # divided by the accumulation steps, like the generator's
        if accelerator.sync_gradients:
            # Not wrapped in DDP (it runs twice per step, on real and on fake): average its gradients by hand.
            for parameter in self.discriminator.parameters():
                if parameter.grad is not None:
                    parameter.grad = accelerator.reduce(parameter.grad, reduction="mean")
        self.optimizer.step()  # an AcceleratedOptimizer: steps only when gradients are synced
        self.optimizer.zero_grad(set_to_none=True)
        return terms

    def save(self, directory: Path) -> None:
        """Weights (and LeCAM's anchors) into a checkpoint directory; the optimizer is in Accelerate's state."""
        save_file(self.discriminator.state_dict(), directory / "discriminator.safetensors")
        if self.lecam is not None:
            save_file(self.lecam.state_dict(), directory / "lecam.safetensors")

    def load(self, directory: Path) -> None:
        self.discriminator.load_state_dict(load_file(directory / "discriminator.safetensors"))
        if self.lecam is not None:
            self.lecam.load_state_dict(load_file(directory / "lecam.safetensors"))
