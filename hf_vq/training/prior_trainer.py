"""Training the prior over code indices on the same loop as the autoencoders.

The data is a code dataset (`scripts/encode_dataset.py`), streamed with `CodeStream` (shuffled, sharded, exact
resume, class dropout for classifier-free guidance); the loss is the family's objective (GPT-2's next-token
cross-entropy); the sample grids are decoded by the VQ model through `VQImageGenerationPipeline`; the held-out metric
is the negative log-likelihood of the codes. The run also saves the whole pipeline (`pipeline/`: VQ model + prior).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from datasets import ClassLabel
from PIL import Image
from transformers import AutoModel, PreTrainedModel

from ..data import CodeStream, check_columns, image_dataloader, load_code_dataset
from ..pipelines import VQImageGenerationPipeline
from ..utils.configuration_utils import latent_side
from ..utils.errors import UsageError
from ..utils.image_utils import make_grid
from ..utils.torch_utils import evaluating
from .arguments import ParsedArguments
from .encoding import read_codes_info
from .publishing import PIPELINE_FOLDER
from .trainer import Trainer


class PriorTrainer(Trainer):
    """`Trainer` for a prior over code indices (every family whose `data` is "codes")."""

    uses_prior_arguments = True

    def __init__(self, family, parsed: ParsedArguments):
        super().__init__(family, parsed)
        self.vq_model: PreTrainedModel | None = None  # the frozen VQ model whose codes the prior models
        # held-out code grids (N, h, w) and their labels (N,) (None for an unconditional prior)
        self.eval_codes: tuple[torch.Tensor, torch.Tensor | None] | None = None

    # ----- set-up -----

    def _vq_model_path(self) -> str:
        if self.prior_args.vq_model:
            return self.prior_args.vq_model
        info = read_codes_info(self.args.dataset) if os.path.isdir(self.args.dataset) else None
        if info is None or not info.get("vq_model"):
            raise UsageError(
                f"`--vq_model` is required: {self.args.dataset!r} does not record the VQ model its codes come from"
            )
        return info["vq_model"]

    def _num_classes(self) -> int:
        """Classes of the label column, from its ClassLabel feature."""
        features = load_code_dataset(self.args.dataset, self.args.dataset_split).features
        if features is None:
            raise UsageError(f"{self.args.dataset!r} does not declare its columns: set `num_classes` (model config)")
        check_columns(features, label_column=self.args.label_column)
        feature = features[self.args.label_column]
        if not isinstance(feature, ClassLabel):
            raise UsageError(
                f"label column {self.args.label_column!r} is not a ClassLabel: set `num_classes` in the model config"
            )
        return feature.num_classes

    def build_model(self) -> PreTrainedModel:
        """The prior, its codebook size and grid derived from the VQ model (and its classes from the label column)
        unless the model config gives them; checked against the VQ model and the label column."""
        args = self.args
        vq_path = self._vq_model_path()
        self.vq_model = AutoModel.from_pretrained(vq_path).eval().requires_grad_(False)
        if not args.pretrained_model:
            self._derive_config(vq_path)
        model = self.new_model()
        model.check_vq_model(self.vq_model)
        conditional, labelled = model.config.is_class_conditional, args.label_column is not None
        if conditional != labelled:
            raise UsageError(
                f"the prior has num_classes = {model.config.num_classes} but --label_column is "
                f"{args.label_column!r}: a class-conditional prior needs the label column, an unconditional "
                "one takes none"
            )
        return model

    def _derive_config(self, vq_path: str) -> None:
        config, vq_config = self.model_config, self.vq_model.config
        derived = {
            "codebook_size": vq_config.num_vq_embeddings,
            "token_grid_size": [latent_side(vq_config, self.args.resolution)] * 2,
            "vq_model_name_or_path": vq_path,
        }
        if vq_config.codes_per_position > 1 and "codes_per_position" in self.family.config_class.__dataclass_fields__:
            derived["codes_per_position"] = vq_config.codes_per_position  # a residual quantizer's depth
        for name, value in derived.items():
            given = config.setdefault(name, value)
            given = list(given) if name == "token_grid_size" else given
            if name != "vq_model_name_or_path" and given != value:  # the recorded name may be another spelling
                raise UsageError(f"model config `{name}` is {given!r} but the VQ model's codes have {value!r}")
        if self.args.label_column is not None and "num_classes" not in config:
            config["num_classes"] = self._num_classes()

    def _code_stream(self, split: str, **kwargs) -> CodeStream:
        config = self.accelerator.unwrap_model(self.model).config
        return CodeStream(
            load_code_dataset(self.args.dataset, split),
            num_codes=config.codebook_size,
            num_tokens=config.num_image_tokens,
            indices_column=self.prior_args.indices_column,
            label_column=self.args.label_column,
            num_classes=config.num_classes,
            **kwargs,
        )

    def build_data(self) -> None:
        args, accelerator = self.args, self.accelerator
        self.vq_model.to(accelerator.device)
        self.stream = self._code_stream(
            args.dataset_split,
            class_dropout_prob=self.prior_args.class_dropout_prob,
            shuffle_buffer=args.shuffle_buffer,
            seed=args.seed,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
        )
        self.loader = image_dataloader(self.stream, args.train_batch_size)
        if args.eval_split is not None:
            batches = list(image_dataloader(self._code_stream(args.eval_split, shuffle_buffer=1), 256, False))
            if not batches:
                raise UsageError(f"split {args.eval_split!r} of {args.dataset!r} has no code sequences")
            indices = torch.cat([b["indices"] for b in batches])[: args.max_eval_images]
            labels = torch.cat([b["class_labels"] for b in batches])[: args.max_eval_images]
            self.eval_codes = (indices, labels if args.label_column is not None else None)

    # ----- outputs -----

    def _pipeline(self, prior: PreTrainedModel) -> VQImageGenerationPipeline:
        """The VQ model and the prior as a pipeline, leaving the prior's train / eval mode as it was."""
        with evaluating(prior):
            return VQImageGenerationPipeline(self.vq_model, prior)  # puts both in eval mode

    def sample_grid(self, model: PreTrainedModel) -> Image.Image:
        """One row of `num_validation_images` samples per class (up to 10 classes), or one row of unconditional
        samples."""
        per_row = self.args.num_validation_images
        labels = list(range(min(model.config.num_classes, 10))) or None
        images = self._pipeline(model)(
            class_labels=labels,
            num_images=per_row,
            top_k=self.prior_args.sample_top_k,
            guidance_scale=self.prior_args.sample_guidance_scale if labels else 1.0,
            seed=self.args.seed,
            output_type="pt",
        )
        return make_grid(images, nrow=per_row, scale=max(1, 64 // images.shape[-1]))

    @torch.no_grad()
    def evaluate(self, model: PreTrainedModel) -> dict[str, Any]:
        """Held-out negative log-likelihood of the codes, per code, in nats and bits."""
        if self.eval_codes is None:
            return {}
        indices, labels = self.eval_codes
        total = 0.0
        with evaluating(model):
            for start in range(0, len(indices), self.args.eval_batch_size):
                batch = indices[start : start + self.args.eval_batch_size].to(model.device)
                batch_labels = None if labels is None else labels[start : start + self.args.eval_batch_size]
                total -= model.log_prob_codes(batch, batch_labels).sum().item()
        nll = total / indices.numel()
        return {
            "eval_nll_per_code": nll,
            "eval_bits_per_code": nll / math.log(2),
            "eval_num_sequences": len(indices),
        }

    def save_outputs(self, model: PreTrainedModel) -> None:
        super().save_outputs(model)
        self._pipeline(model).save_pretrained(self.output_dir / PIPELINE_FOLDER)
