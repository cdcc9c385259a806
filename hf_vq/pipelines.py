"""A VQ model and its prior as one image generator: class labels -> code grids -> images, and the completion of
partly known code grids.

A pipeline is saved as one folder (or Hub repo) with two sub-models, each a regular `save_pretrained` folder:

    pipeline_config.json   which classes the sub-models are
    vq_model/              the VQ autoencoder (AutoModel)
    prior/                 the prior: a VQPriorForCausalLM or a PixelCNNPriorModel (AutoModel loads either)
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoModel, PreTrainedModel

from .hub import check_no_token, export_pipeline_code, render_pipeline_card, upload_to_hub
from .models import CodePriorMixin
from .utils.errors import UsageError
from .utils.image_utils import to_pil_images
from .utils.paths import check_source

PIPELINE_CONFIG_NAME = "pipeline_config.json"
VQ_MODEL_FOLDER, PRIOR_FOLDER = PIPELINE_PARTS = ("vq_model", "prior")  # the sub-model folders of a saved pipeline


class VQImageGenerationPipeline:
    """Samples and completes images with a VQ model (`VQGANModel`, `VQVAEModel`) and a prior over its codes (the GPT
    prior `VQPriorForCausalLM` or the gated `PixelCNNPriorModel`: anything with the `CodePriorMixin` interface).

    ```python
    pipe = VQImageGenerationPipeline.from_pretrained("org/vqgan-digits-prior")
    images = pipe(class_labels=[3, 7], num_images=4, top_k=32, guidance_scale=2.0, seed=0)  # 8 PIL images
    ```
    """

    def __init__(self, vq_model: PreTrainedModel, prior: CodePriorMixin):
        if not hasattr(vq_model, "decode_indices"):
            raise UsageError(f"`vq_model` must be a VQ model (with decode_indices), got {type(vq_model).__name__}")
        if not isinstance(prior, CodePriorMixin):
            raise UsageError(
                "`prior` must be a prior over codes (VQPriorForCausalLM, PixelCNNPriorModel), got "
                f"{type(prior).__name__}"
            )
        prior.check_vq_model(vq_model)
        self.vq_model = vq_model.eval()
        self.prior = prior.eval()

    # ----- loading and saving -----

    @classmethod
    def from_pretrained(cls, path_or_repo: str | Path, **kwargs) -> VQImageGenerationPipeline:
        """Load from a local folder or a Hub repo with `vq_model/` and `prior/` subfolders; `kwargs` (revision,
        token, cache_dir, local_files_only, ...) go to both `from_pretrained` calls. A local path that does not
        exist is a `UsageError` before any request to the Hub."""
        path_or_repo = check_source(path_or_repo, f"{cls.__name__}.from_pretrained")  # before any Hub request
        vq_model = AutoModel.from_pretrained(path_or_repo, subfolder=VQ_MODEL_FOLDER, **kwargs)
        prior = AutoModel.from_pretrained(path_or_repo, subfolder=PRIOR_FOLDER, **kwargs)  # either prior
        return cls(vq_model, prior)

    def save_pretrained(self, save_directory: str | Path, model_card: str | None = None) -> None:
        """Write `pipeline_config.json`, `vq_model/` and `prior/` (safetensors weights) into `save_directory`, and
        `model_card` (markdown text, e.g. `str(ModelCard)`) as its README.md."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        if model_card is not None:
            check_no_token(str(model_card))
            (directory / "README.md").write_text(str(model_card))
        self.vq_model.save_pretrained(directory / VQ_MODEL_FOLDER)
        self.prior.save_pretrained(directory / PRIOR_FOLDER)
        config = {
            "_class_name": type(self).__name__,
            VQ_MODEL_FOLDER: type(self.vq_model).__name__,
            PRIOR_FOLDER: type(self.prior).__name__,
        }
        (directory / PIPELINE_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")

    def push_to_hub(
        self,
        repo_id: str,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        model_card: str | None = None,
        metrics: dict[str, Any] | None = None,
        dataset: str | None = None,
        export_code: bool = False,
        revision: str | None = None,
    ) -> str:
        """Upload the pipeline as `save_pretrained` writes it in one commit, with `model_card` (default: the card
        `hf_vq.hub.render_pipeline_card` makes of the two configs, `metrics` and `dataset`) as README.md and, with
        `export_code`, each sub-model's code for `trust_remote_code=True`. Returns the commit URL."""
        if model_card is None:
            model_card = render_pipeline_card(self.vq_model.config, self.prior.config, repo_id=repo_id,
                                              metrics=metrics, dataset=dataset, code_exported=export_code)  # fmt: skip
        with tempfile.TemporaryDirectory() as staging:
            self.save_pretrained(staging, model_card=model_card)
            if export_code:
                export_pipeline_code(staging, {VQ_MODEL_FOLDER: self.vq_model, PRIOR_FOLDER: self.prior})
            return upload_to_hub(staging, repo_id, private=private, token=token, revision=revision,
                                 commit_message=commit_message or "Upload hf_vq pipeline")  # fmt: skip

    def to(self, device: str | torch.device) -> VQImageGenerationPipeline:
        self.vq_model.to(device)
        self.prior.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.prior.device

    # ----- sampling -----

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        num_images: int = 1,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        guidance_scale: float = 1.0,
        seed: int | None = None,
        batch_size: int | None = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Sample images: `num_images` per class label (label by label) or, without labels, `num_images`
        unconditional ones.

        Codes are sampled by the prior's `sample_codes` (the GPT prior: `generate()` with its KV cache; the PixelCNN:
        one pass per code in raster order), filtered by `top_k` / `top_p` and `temperature`, with classifier-free
        guidance when `guidance_scale` != 1 (class-conditional priors only), then decoded by the VQ model. `seed`
        makes the draw reproducible without touching the global random state. `batch_size` bounds the grids sampled
        at once. Returns PIL images, or with `output_type="pt"` a (B, C, H, W) tensor in [-1, 1].
        """
        check_output_type(output_type, guidance_scale)
        if not isinstance(num_images, int) or num_images < 1:
            raise UsageError(f"`num_images` must be an integer >= 1, got {num_images!r}")
        labels = self.prior.check_class_labels(class_labels)
        if labels is not None:
            labels = labels.repeat_interleave(num_images)
        total = num_images if labels is None else len(labels)
        batch_size = batch_size or total
        grids = []
        with self._seeded(seed):
            for start in range(0, total, batch_size):
                count = min(batch_size, total - start)
                grids.append(
                    self.prior.sample_codes(
                        None if labels is None else labels[start : start + count],
                        num_samples=1 if labels is not None else count,
                        top_k=top_k,
                        top_p=top_p,
                        temperature=temperature,
                        guidance_scale=guidance_scale,
                    )
                )
        return self._decode(torch.cat(grids), output_type)

    @torch.no_grad()
    def complete(
        self,
        inputs: torch.Tensor,
        mask: torch.Tensor,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        guidance_scale: float = 1.0,
        seed: int | None = None,
        output_type: str = "pil",
    ) -> list[Image.Image] | torch.Tensor:
        """Complete partly known images: keep the codes where `mask` is True and sample the others from the prior.

        `inputs` are code grids (B, h, w) (integers) or images (B, C, H, W) in [-1, 1], encoded first. `mask` (B, h, w)
        or (h, w) for every grid is True where a code is known, in code-grid coordinates. The PixelCNN prior completes
        any mask, sampling the unknown codes in raster order, each given every code before it and the known codes
        it sees (its receptive field looks only up and left, so known codes below or right of a position do not
        inform it); the GPT prior completes a raster prefix in each grid (the first codes, row by row), and refuses
        other masks. `class_labels`: one per grid (class-conditional priors). Returns PIL images, with
        `output_type="pt"` a (B, C, H, W) tensor, with `output_type="codes"` the completed (B, h, w) grids.
        """
        check_output_type(output_type, guidance_scale, allowed=("pil", "pt", "codes"))
        self.prior.check_completion()
        inputs = torch.as_tensor(inputs)
        if inputs.is_floating_point():
            if inputs.dim() != 4:
                raise UsageError(
                    f"images to complete must be (B, C, H, W) in [-1, 1], got shape {tuple(inputs.shape)}"
                )
            self.prior.check_vq_model(self.vq_model, inputs.shape[-1])
            codes = self.vq_model.encode_indices(inputs.to(self.vq_model.device, self.vq_model.dtype))
        else:
            codes = inputs
        codes = self.prior.check_codes(codes, "inputs")
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape == codes.shape[1:]:
            mask = mask.expand_as(codes)
        labels = self.prior.check_class_labels(class_labels)
        if labels is not None and len(labels) != len(codes):
            raise UsageError(f"got {len(labels)} class labels for {len(codes)} grids to complete (one label a grid)")
        with self._seeded(seed):
            completed = self.prior.sample_codes(
                labels, num_samples=1 if labels is not None else len(codes), top_k=top_k, top_p=top_p,
                temperature=temperature, guidance_scale=guidance_scale, prompt=codes.to(self.device),
                prompt_mask=mask.to(self.device),
            )  # fmt: skip
        return completed if output_type == "codes" else self._decode(completed, output_type)

    @contextlib.contextmanager
    def _seeded(self, seed: int | None):
        """The global random state seeded with `seed` inside, restored after (None: the state is used as it is)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            yield

    def _decode(self, indices: torch.Tensor, output_type: str) -> list[Image.Image] | torch.Tensor:
        images = self.vq_model.decode_indices(indices.to(self.vq_model.device)).float()
        return images if output_type == "pt" else to_pil_images(images)


def check_output_type(output_type: str, guidance_scale: float, allowed: tuple[str, ...] = ("pil", "pt")) -> None:
    """One-line errors for the arguments the pipeline's calls share."""
    if output_type not in allowed:
        raise UsageError(f"`output_type` must be one of {', '.join(map(repr, allowed))}, got {output_type!r}")
    real = isinstance(guidance_scale, numbers.Real) and not isinstance(guidance_scale, bool)
    if not (real and math.isfinite(guidance_scale) and guidance_scale > 0):
        raise UsageError(f"`guidance_scale` must be a finite number > 0 (1: no guidance), got {guidance_scale!r}")
