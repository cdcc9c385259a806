"""Training the prior over code indices on the same loop as the autoencoders.

The data is a code dataset (`scripts/encode_dataset.py`), streamed with `CodeStream` (shuffled, sharded, exact
resume, class dropout for classifier-free guidance); the loss is GPT-2's next-token cross-entropy; the sample grids
are decoded by the VQ model through `VQImageGenerationPipeline`; the held-out metric is the negative log-likelihood
of the codes. The run also saves the whole pipeline (`pipeline/`: VQ model + prior).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from datasets import ClassLabel
from transformers import AutoModel
from transformers.pytorch_utils import Conv1D

from ..data import CodeStream, check_columns, image_dataloader, load_code_dataset
from ..models.prior import VQPriorConfig, VQPriorForCausalLM
from ..pipelines import VQImageGenerationPipeline
from ..utils.configuration_utils import latent_side
from ..utils.image_utils import make_grid
from ..utils.torch_utils import evaluating
from .encoding import read_codes_info
from .trainer import Trainer


class PriorTrainer(Trainer):
    """`Trainer` for `VQPriorForCausalLM`: code sequences in, next-token loss out."""

    # ----- set-up -----

    def _vq_model_path(self) -> str:
        if self.prior_args.vq_model:
            return self.prior_args.vq_model
        info = read_codes_info(self.args.dataset) if os.path.isdir(self.args.dataset) else None
        if info is None or not info.get("vq_model"):
            raise ValueError(
                f"`--vq_model` is required: {self.args.dataset!r} does not record the VQ model its codes come from"
            )
        return info["vq_model"]

    def _num_classes(self) -> int:
        """Classes of the label column, from its ClassLabel feature."""
        features = load_code_dataset(self.args.dataset, self.args.dataset_split).features
        if features is None:
            raise ValueError(f"{self.args.dataset!r} does not declare its columns: set `num_classes` (model config)")
        check_columns(features, label_column=self.args.label_column)
        feature = features[self.args.label_column]
        if not isinstance(feature, ClassLabel):
            raise ValueError(
                f"label column {self.args.label_column!r} is not a ClassLabel: set `num_classes` in the model config"
            )
        return feature.num_classes

    def _build_model(self) -> VQPriorForCausalLM:
        args = self.args
        vq_path = self._vq_model_path()
        self.vq_model = AutoModel.from_pretrained(vq_path).eval().requires_grad_(False)
        vq_config = self.vq_model.config
        if args.pretrained_model:
            if self.model_config:
                raise ValueError("give either --pretrained_model or a model config, not both")
            return VQPriorForCausalLM.from_pretrained(args.pretrained_model)
        config = dict(self.model_config)
        derived = {
            "codebook_size": vq_config.num_vq_embeddings,
            "token_grid_size": [latent_side(vq_config, args.resolution)] * 2,
            "vq_model_name_or_path": vq_path,
        }
        for name, value in derived.items():
            given = config.setdefault(name, value)
            given = list(given) if name == "token_grid_size" else given
            if name != "vq_model_name_or_path" and given != value:  # the recorded name may be another spelling
                raise ValueError(f"model config `{name}` is {given!r} but the VQ model's codes have {value!r}")
        if args.label_column is not None and "num_classes" not in config:
            config["num_classes"] = self._num_classes()
        return VQPriorForCausalLM(VQPriorConfig(**config))

    def _check_model(self, model: VQPriorForCausalLM) -> None:
        model.check_vq_model(self.vq_model)
        conditional, labelled = model.config.is_class_conditional, self.args.label_column is not None
        if conditional != labelled:
            raise ValueError(
                f"the prior has num_classes = {model.config.num_classes} but --label_column is "
                f"{self.args.label_column!r}: a class-conditional prior needs the label column, an unconditional "
                "one takes none"
            )

    def _parameter_groups(self, model: VQPriorForCausalLM) -> list[dict[str, Any]]:
        """Weight decay on the weights of the linear layers only (minGPT / taming): not on biases, layer norms,
        token and position embeddings (the output layer shares the token embedding)."""
        decay = {id(module.weight) for module in model.modules() if isinstance(module, (Conv1D, torch.nn.Linear))}
        decay.discard(id(model.transformer.wte.weight))
        parameters = [p for p in model.parameters() if p.requires_grad]
        return [
            {"params": [p for p in parameters if id(p) in decay]},
            {"params": [p for p in parameters if id(p) not in decay], "weight_decay": 0.0},
        ]

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

    def _setup_data(self) -> None:
        args, accelerator = self.args, self.accelerator
        self.lpips = None
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
        self.eval_images = None  # the sample grids are drawn from the prior, not reconstructed
        self.eval_codes = None
        if args.eval_split is not None:
            batches = list(image_dataloader(self._code_stream(args.eval_split, shuffle_buffer=1), 256, False))
            if not batches:
                raise ValueError(f"split {args.eval_split!r} of {args.dataset!r} has no code sequences")
            indices = torch.cat([b["indices"] for b in batches])[: args.max_eval_images]
            labels = torch.cat([b["class_labels"] for b in batches])[: args.max_eval_images]
            self.eval_codes = (indices, labels if args.label_column is not None else None)

    # ----- one step -----

    def _forward_terms(self, batch: dict[str, torch.Tensor], adversarial: bool) -> tuple[dict[str, torch.Tensor], Any]:
        prior = self.accelerator.unwrap_model(self.model)
        input_ids = prior.build_inputs(batch["indices"], batch["class_labels"], check_values=False)  # CodeStream did
        output = self.model(input_ids, labels=input_ids)
        return {"nll": output.loss}, output

    def _keep_validation_inputs(self, batch: dict[str, torch.Tensor]) -> None:
        pass

    # ----- outputs -----

    def _pipeline(self) -> VQImageGenerationPipeline:
        """The VQ model and the prior as a pipeline, leaving the prior's train / eval mode as it was."""
        prior = self.accelerator.unwrap_model(self.model)
        with evaluating(prior):
            return VQImageGenerationPipeline(self.vq_model, prior)  # puts both in eval mode

    @torch.no_grad()
    def validate(self) -> None:
        """Write `samples/step-<n>.png`: one row of `num_validation_images` samples per class (up to 10 classes), or
        one row of unconditional samples."""
        if not self.accelerator.is_main_process:
            return
        prior = self.accelerator.unwrap_model(self.model)
        per_row = self.args.num_validation_images
        labels = list(range(min(prior.config.num_classes, 10))) or None
        with evaluating(prior):
            images = self._pipeline()(
                class_labels=labels,
                num_images=per_row,
                top_k=self.prior_args.sample_top_k,
                guidance_scale=self.prior_args.sample_guidance_scale if labels else 1.0,
                seed=self.args.seed,
                output_type="pt",
            )
        self._save_sample_grid(make_grid(images, nrow=per_row, scale=max(1, 64 // images.shape[-1])))

    @torch.no_grad()
    def _evaluate(self, model: VQPriorForCausalLM) -> dict[str, Any]:
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

    def _save_outputs(self, model: VQPriorForCausalLM) -> None:
        model.save_pretrained(self.output_dir / "model")
        self._pipeline().save_pretrained(self.output_dir / "pipeline")
