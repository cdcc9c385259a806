"""Training on images: the autoencoders, the VAE, the VQ-VAE and the VQ-GAN.

The stream is `ImageStream` over any image source (`hf_vq.data`); the held-out metrics are the reconstruction
metrics of the eval split (PSNR, SSIM, codebook usage, ...); the sample grids show inputs over reconstructions, plus a
row of samples from the model's own prior for families that have one (the VAE).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel

from ..data import ImageStream, image_dataloader, load_eval_images, load_image_dataset, stream_defaults
from ..data.sources import HeldOutSplit, hold_out_split
from ..metrics import reconstruction_metrics
from ..modules.lpips import load_lpips
from ..utils.configuration_utils import latent_side
from ..utils.image_utils import make_grid
from .arguments import ParsedArguments
from .trainer import Trainer

logger = logging.getLogger(__name__)


class ImageTrainer(Trainer):
    """`Trainer` for the image autoencoders (every family whose `data` is "images")."""

    def __init__(self, family, parsed: ParsedArguments):
        super().__init__(family, parsed)
        self.resolution: int | None = None  # the training resolution (`--resolution` or the model's sample_size)
        self.eval_images: torch.Tensor | None = None  # (N, C, H, W) held-out images, when there is an eval split
        # the files held out of a folder that has no eval split (`hold_out_split`), as build_data found them
        self.held_out: HeldOutSplit | None = None

    def build_model(self) -> PreTrainedModel:
        if self.args.resolution is not None and not self.args.pretrained_model:
            self.model_config.setdefault("sample_size", self.args.resolution)
        model = self.new_model()
        self.resolution = self.args.resolution or model.config.sample_size
        latent_side(model.config, self.resolution)  # checks that the resolution divides into the code grid
        return model

    def build_data(self) -> None:
        args, accelerator = self.args, self.accelerator
        channels = self.accelerator.unwrap_model(self.model).config.in_channels
        self.lpips = load_lpips(args.lpips_weights)
        if self.lpips is not None:
            self.lpips.to(accelerator.device)
        # A local folder with only a training split: a fixed part of its files is held out, never trained on.
        self.held_out = held_out = hold_out_split(args.dataset, args.dataset_split, args.eval_split)
        if held_out is not None and held_out.eval_files:
            train = held_out.load("train")
            logger.info(
                "%s has no %r split: evaluating on %s, which are never trained on",
                args.dataset, args.eval_split, held_out.describe(),
            )  # fmt: skip
        else:
            train = load_image_dataset(args.dataset, args.dataset_split, args.dataset_config)
            if held_out is not None:
                logger.warning("%s: training without evaluation", held_out.record(args.eval_split)["eval_skipped"])
        self.stream = ImageStream(
            train,
            self.resolution,
            num_channels=channels,
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
        if args.eval_split is not None and (held_out is None or held_out.eval_files):
            self.eval_images = load_eval_images(
                args.dataset,
                held_out or args.eval_split,
                self.resolution,
                num_channels=channels,
                limit=args.max_eval_images,
                image_column=args.image_column,
                dataset_config=args.dataset_config,
            )

    def sample_grid(self, model: PreTrainedModel) -> Image.Image:
        """Inputs over reconstructions (and samples for a family with `samples_from_model`). The inputs are held-out
        images, or the first training batch without an eval split."""
        count = self.args.num_validation_images
        inputs = self.eval_images if self.eval_images is not None else self.first_batch["pixel_values"]
        images = inputs[:count].to(self.accelerator.device)
        with self.accelerator.autocast():
            rows = [images, model(images).reconstruction.float()]
            if self.family.samples_from_model:
                generator = torch.Generator(self.accelerator.device).manual_seed(self.args.seed)
                rows.append(model.sample(len(images), generator=generator).float())
        return make_grid(torch.cat(rows), nrow=len(images), scale=max(1, 64 // self.resolution))

    def evaluate(self, model: PreTrainedModel) -> dict[str, Any]:
        record = self.held_out.record(self.args.eval_split) if self.held_out is not None else {}
        if self.eval_images is None:
            return record
        metrics = {**record, **{f"eval_{k}": v for k, v in reconstruction_metrics(model, self.eval_images).items()}}
        if math.isfinite(metrics["eval_psnr"]):
            logger.info("held-out PSNR %.2f dB", metrics["eval_psnr"])
        else:
            logger.warning("held-out PSNR is not finite")
        return metrics
