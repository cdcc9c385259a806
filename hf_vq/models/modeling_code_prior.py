"""What every prior over code grids offers (`CodePriorMixin`): the interface the pipeline, `evaluate.py`,
`encode_dataset`, the prior trainer and `bits_per_dim` use, so that they take the GPT prior and the PixelCNN alike.

A prior models the `(h, w)` grid of code indices of one VQ model (`config.codebook_size`, `config.token_grid_size`,
`config.num_classes`; 0 classes: unconditional). Class label -1 stands for "no class" (the unconditional half of
classifier-free guidance, and labels dropped in training).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..utils.configuration_utils import latent_side
from ..utils.errors import UsageError

ClassLabels = torch.Tensor | Sequence[int] | int | None


class CodePriorMixin:
    """Put before the transformers base class of a prior. Subclasses implement `log_prob_codes` and `sample_codes`.

    - `check_vq_model(vq_model, resolution)`: refuse a VQ model this prior was not trained with;
    - `check_class_labels(class_labels)`: labels as a checked (B,) tensor;
    - `log_prob_codes(indices, class_labels)`: log p(codes | class) per grid, in nats (B,);
    - `sample_codes(class_labels, num_samples, top_k, top_p, temperature, guidance_scale, prompt, prompt_mask)`:
      code grids (B, h, w) (`num_samples` per class label, label by label), keeping the codes of `prompt` where
      `prompt_mask` is True; seed with `torch.manual_seed` (the pipeline's `seed` forks the random state);
    - `completes_any_mask`: whether `sample_codes` takes any `prompt_mask` (PixelCNN: resampling what is unknown in
      raster order, conditioned on everything known before it) or only raster prefixes (GPT: a prompt of the first
      codes).
    """

    completes_any_mask: bool = False

    def check_vq_model(self, vq_model, resolution: int | None = None) -> None:
        """Raise a `UsageError` unless `vq_model` (a VQ autoencoder) has this prior's codebook size and makes this
        prior's token grid from `resolution`-pixel images (default: its `sample_size`)."""
        size = getattr(vq_model.config, "num_vq_embeddings", None)
        if size is None:
            raise UsageError(f"{type(vq_model).__name__} is not a VQ model (its config has no num_vq_embeddings)")
        if size != self.config.codebook_size:
            raise UsageError(
                f"the prior models {self.config.codebook_size} codes (config.codebook_size) but the VQ model has "
                f"{size} (config.num_vq_embeddings): they were not trained together"
            )
        depth = getattr(vq_model.config, "codes_per_position", 1)  # a residual quantizer's stages
        modelled = getattr(self.config, "codes_per_position", 1)
        if depth != modelled:
            if not hasattr(self.config, "codes_per_position"):
                raise UsageError(
                    f"{type(self).__name__} models one code per grid position, but the VQ model's residual quantizer "
                    f"gives {depth} (quantizer_type='residual', residual_depth={depth}): use the GPT prior "
                    "(VQPriorForCausalLM, --prior_type gpt), which models each position's stages in a row"
                )
            raise UsageError(
                f"the prior models {modelled} codes per position (config.codes_per_position) but the VQ model gives "
                f"{depth} (its residual_depth): they were not trained together"
            )
        resolution = resolution or vq_model.config.sample_size
        side = latent_side(vq_model.config, resolution)
        if tuple(self.config.token_grid_size) != (side, side):
            height, width = self.config.token_grid_size
            raise UsageError(
                f"the prior models {height}x{width} code grids (config.token_grid_size) but the VQ model encodes "
                f"{resolution}x{resolution} images into {side}x{side} grids: they were not trained together"
            )

    def check_class_labels(self, class_labels: ClassLabels, allow_null: bool = False) -> torch.Tensor | None:
        """Class labels as a (B,) int64 tensor, checked against the config; None stays None. With `allow_null`, -1
        stands for "no class", as in sequences whose class was dropped for guidance."""
        if class_labels is None:
            return None
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if self.config.num_classes == 0:
            raise UsageError("this prior is unconditional (num_classes = 0): it takes no class labels")
        bad = (labels < (-1 if allow_null else 0)) | (labels >= self.config.num_classes)
        if bad.any():
            raise UsageError(
                f"class labels must be in [0, {self.config.num_classes}), got {labels[bad].unique().tolist()}"
            )
        return labels

    def code_shape(self) -> tuple[int, ...]:
        """The shape of one image's codes: (h, w), or (h, w, depth) for a prior over a residual quantizer's codes."""
        depth = getattr(self.config, "codes_per_position", 1)
        return (*self.config.token_grid_size, depth) if depth > 1 else tuple(self.config.token_grid_size)

    def check_codes(self, indices: torch.Tensor, what: str = "indices", check_values: bool = True) -> torch.Tensor:
        """Code grids (B, h, w) (or (B, h, w, depth)) or sequences (B, h*w[*depth]) -> (B, *code_shape()) int64,
        checked against the config: the shape always, the range unless `check_values=False` (a device sync; for data
        already checked, as `CodeStream` checks every record)."""
        shape = self.code_shape()
        count = math.prod(shape)
        if indices.is_floating_point() or indices.is_complex():
            raise UsageError(f"`{what}` must be integer code indices, got a {indices.dtype} tensor")
        if indices.dim() < 2 or indices.shape[1:].numel() != count:
            grid = "x".join(map(str, shape))
            raise UsageError(
                f"expected `{what}` of {count} codes per image ({grid}, config.token_grid_size"
                f"{' and codes_per_position' if len(shape) > 2 else ''}), got shape {tuple(indices.shape)}"
            )
        codes = indices.reshape(len(indices), *shape).long()
        if check_values and codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise UsageError(
                f"`{what}` must be code indices in [0, {self.config.codebook_size}), got values in "
                f"[{codes.min().item()}, {codes.max().item()}]"
            )
        return codes

    def check_completion(self) -> None:
        """Refuse to complete grids of several codes per position (a residual quantizer's): a mask is per position."""
        if len(self.code_shape()) > 2:
            raise UsageError(
                f"completion takes one code per grid position; this prior models {self.code_shape()[2]} (a residual "
                "quantizer's stages, config.codes_per_position): sample whole grids instead"
            )

    def check_prompt(
        self, prompt: torch.Tensor | None, prompt_mask: torch.Tensor | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`prompt` (B, h, w) codes and `prompt_mask` (B, h, w), True where a code is known, checked; None when no
        prompt is given. A mask that is not a raster prefix is refused unless `completes_any_mask`."""
        if prompt is None and prompt_mask is None:
            return None
        if prompt is None or prompt_mask is None:
            raise UsageError("`prompt` and `prompt_mask` go together: the codes, and True where they are known")
        self.check_completion()
        prompt = torch.as_tensor(prompt)
        mask = torch.as_tensor(prompt_mask, device=prompt.device)
        if mask.dtype != torch.bool or mask.shape != prompt.shape:
            raise UsageError(
                f"`prompt_mask` must be a bool tensor of the prompt's shape {tuple(prompt.shape)} (True = known), "
                f"got {mask.dtype} of shape {tuple(mask.shape)}"
            )
        # Only the known codes must be codes: the unknown positions may hold anything (-1, say); they become 0.
        prompt = self.check_codes(torch.where(mask, prompt, 0), "prompt")  # (B, h, w)
        mask = mask.reshape(prompt.shape)
        if len(prompt) != batch_size:
            raise UsageError(f"got {len(prompt)} prompt grids for {batch_size} samples")
        if not self.completes_any_mask:
            flat = mask.reshape(len(mask), -1)
            known = flat.sum(dim=1)
            prefix = torch.arange(flat.shape[1], device=flat.device)[None] < known[:, None]
            if not torch.equal(flat, prefix):
                raise UsageError(
                    f"{type(self).__name__} completes only a raster prefix (the first codes, row by row, in every "
                    "grid: scripts/complete.py --mask top or first:N); this mask is not one: use a "
                    "PixelCNNPriorModel, which completes any mask"
                )
        return prompt, mask

    def sampling_batch(
        self,
        class_labels: ClassLabels,
        num_samples: int,
        top_k: int | None,
        top_p: float | None,
        temperature: float,
        guidance_scale: float,
    ) -> tuple[torch.Tensor | None, int]:
        """`sample_codes`' arguments checked -> the class label of each grid to draw (`num_samples` per label,
        label by label; None without labels) and the number of grids."""
        labels = self.check_class_labels(class_labels)
        check_sampling_arguments(num_samples, temperature, top_k, top_p, guidance_scale, labels is not None)
        if labels is None:
            return None, num_samples
        labels = labels.repeat_interleave(num_samples)
        return labels, len(labels)

    def log_prob_codes(self, indices: torch.Tensor, class_labels: ClassLabels = None) -> torch.Tensor:
        raise NotImplementedError

    def sample_codes(
        self,
        class_labels: ClassLabels = None,
        num_samples: int = 1,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        guidance_scale: float = 1.0,
        prompt: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


def check_sampling_arguments(
    num_samples: int, temperature: float, top_k: int | None, top_p: float | None, guidance_scale: float, conditional
) -> None:
    """One-line errors for the sampling arguments every prior takes; `conditional`: class labels were given."""
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise UsageError(f"`num_samples` must be an integer >= 1, got {num_samples!r}")
    if not _positive_number(temperature):
        raise UsageError(f"`temperature` must be a finite number > 0, got {temperature!r}")
    if not _positive_number(guidance_scale):
        raise UsageError(f"`guidance_scale` must be a finite number > 0 (1: no guidance), got {guidance_scale!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise UsageError(f"`top_k` must be >= 1 (or None for no top-k filtering), got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"`top_p` must be in (0, 1] (or None), got {top_p}")
    if guidance_scale != 1.0 and not conditional:
        raise UsageError(
            "`guidance_scale` != 1 needs class labels: classifier-free guidance contrasts the class-conditional "
            "and the unconditional prediction"
        )


def _positive_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def filter_log_probs(
    log_probs: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """(N, K) log-probabilities -> (N, K) logits after temperature, top-k and top-p (nucleus) filtering: what is
    filtered out is -inf. The same filters, in the same order, as transformers' warpers in `generate()`."""
    logits = log_probs.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1 - top_p
        drop[..., -1:] = False  # always keep the most likely code
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def guided_log_probs(conditional: torch.Tensor, unconditional: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on (N, K) logits: `log p(x) + s (log p(x|c) - log p(x))`."""
    conditional, unconditional = F.log_softmax(conditional.float(), -1), F.log_softmax(unconditional.float(), -1)
    return unconditional + guidance_scale * (conditional - unconditional)
