"""The prior over code indices: GPT-2 with a class (or BOS) prefix token, sampled through `generate()`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from ...utils.errors import UsageError
from ..modeling_code_prior import ClassLabels, CodePriorMixin, guided_log_probs
from ..modeling_utils import HubMixin
from .configuration_prior import VQPriorConfig


class PairedGuidanceSampler(LogitsProcessor):
    """Classifier-free guidance in one doubled batch: rows [0, B) are the class-conditional sequences, rows [B, 2B)
    the same sequences behind the BOS prefix. Each step, the next code is drawn here from the guided distribution
    `log p(x|c) + (s - 1) (log p(x|c) - log p(x))` over the codes (then temperature, top-k, top-p), and the scores
    returned make greedy decoding pick it in both halves, so the halves stay one sequence and share the KV cache
    pass: one forward of 2B rows per token instead of two of B (transformers' unbatched guidance)."""

    def __init__(
        self,
        guidance_scale: float,
        num_codes: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ):
        self.guidance_scale = guidance_scale
        self.num_codes = num_codes
        self.warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        self.warpers += [TopKLogitsWarper(top_k)] if top_k else []
        self.warpers += [TopPLogitsWarper(top_p)] if top_p is not None and top_p < 1.0 else []

    def guided_log_probs(self, scores: torch.Tensor) -> torch.Tensor:
        """(2B, V) scores -> (B, K) guided, unnormalized log-probabilities of the codes."""
        conditional, unconditional = scores[:, : self.num_codes].chunk(2)
        return guided_log_probs(conditional, unconditional, self.guidance_scale)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        guided = self.guided_log_probs(scores)
        for warper in self.warpers:
            guided = warper(input_ids, guided)
        codes = torch.multinomial(F.softmax(guided, dim=-1), num_samples=1)  # (B, 1)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, codes.repeat(2, 1), 0.0)


class VQPriorForCausalLM(HubMixin, CodePriorMixin, GPT2LMHeadModel):
    """GPT-2 over `[prefix, code_1, ..., code_hw]`: the prefix is the class token, or BOS for unconditional
    sequences (and for the unconditional half of classifier-free guidance).

    `forward` is GPT-2's (pass `labels=input_ids` for the next-token loss; the prefix is never a target). The
    generation config is set up so that a plain `model.generate(prefix)` samples one image's codes: exactly
    `height * width` new tokens, with every class, BOS and pad token suppressed; given a prompt of a prefix and
    the first n codes, it samples the remaining `height * width - n`. `sample_codes` wraps that with class labels,
    top-k / top-p, temperature, classifier-free guidance and completion of grids.
    """

    config_class = VQPriorConfig
    auto_class_name = "AutoModelForCausalLM"

    def __init__(self, config: VQPriorConfig):
        super().__init__(config)
        generation = self.generation_config
        generation.bos_token_id = config.bos_token_id
        generation.pad_token_id = config.pad_token_id  # no code, so generate() never mistakes a code for padding
        generation.eos_token_id = None
        generation.suppress_tokens = list(range(config.codebook_size, config.vocab_size))
        generation.max_new_tokens = config.num_image_tokens
        generation.do_sample = True
        generation.top_k = 0  # no filtering unless asked (transformers would default to top-k 50)

    def generate(self, inputs: torch.Tensor | None = None, *args, **kwargs):
        """transformers' `generate()`; unless `max_new_tokens` or `max_length` is given, it samples exactly the codes
        that complete the grid after the prompt `[prefix, first n codes]` (a fixed `height * width` would run past
        the last position of a longer prompt)."""
        prompt = inputs if inputs is not None else kwargs.get("input_ids")
        if prompt is not None and "max_new_tokens" not in kwargs and "max_length" not in kwargs:
            remaining = self.config.sequence_length - prompt.shape[-1]
            if remaining < 1:
                raise UsageError(
                    f"the prompt has {prompt.shape[-1]} tokens, but a prefix and at most "
                    f"{self.config.num_image_tokens - 1} of the {self.config.num_image_tokens} codes of a grid leave "
                    "a code to sample"
                )
            kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = remaining
        return super().generate(inputs, *args, **kwargs)

    # ----- inputs -----

    def prefix_ids(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """The prefix tokens (B, 1): class tokens, or BOS where `class_labels` is None or -1 (dropped class)."""
        device = self.device
        if class_labels is None:
            return torch.full((batch_size, 1), self.config.bos_token_id, dtype=torch.long, device=device)
        labels = torch.as_tensor(class_labels, dtype=torch.long, device=device).reshape(-1, 1)
        return torch.where(labels >= 0, labels + self.config.codebook_size, self.config.bos_token_id)

    def build_inputs(
        self, indices: torch.Tensor, class_labels: torch.Tensor | None = None, check_values: bool = True
    ) -> torch.Tensor:
        """Code grids (B, h, w) or sequences (B, h*w) and class labels (B,) (-1: none) -> input ids (B, 1 + h*w),
        checked against the config. `check_values=False` skips the range checks of codes and labels (each one a
        device sync), for data already checked, as `CodeStream` checks every record."""
        codes = self.check_codes(indices, "indices", check_values).reshape(len(indices), -1)  # (B, h*w)
        if check_values:
            class_labels = self.check_class_labels(class_labels, allow_null=True)
        if class_labels is not None and len(class_labels) != len(codes):
            raise UsageError(f"got {len(class_labels)} class labels for {len(codes)} code grids")
        prefix = self.prefix_ids(class_labels, len(codes))
        return torch.cat([prefix, codes.to(prefix.device)], dim=1)

    # ----- likelihood -----

    @torch.no_grad()
    def log_prob_codes(self, indices: torch.Tensor, class_labels: ClassLabels = None) -> torch.Tensor:
        """log p(codes | class) of each sequence in nats (B,), normalized over the code tokens only (the prior
        never samples anything else)."""
        input_ids = self.build_inputs(indices, class_labels)
        logits = self(input_ids).logits[:, :-1, : self.config.codebook_size].float()  # (B, h*w, K)
        log_probs = F.log_softmax(logits, dim=-1)
        return log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1).sum(dim=1)

    # ----- sampling -----

    @torch.no_grad()
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
        """Sample code grids (B, h, w) (or (B, h, w, depth) over a residual quantizer's codes) with `generate()` and
        its KV cache.

        With `class_labels`, `num_samples` grids per label (label by label); without, `num_samples` unconditional
        ones. `guidance_scale` s != 1 samples from `log p(x|c) + (s - 1) (log p(x|c) - log p(x))` (classifier-free
        guidance, the unconditional stream prefixed by BOS, see `PairedGuidanceSampler`); it needs class labels.
        `prompt` (B, h, w) with `prompt_mask` (B, h, w) completes grids: the mask must be a raster prefix in each
        grid (the first codes, row by row; its length may differ between grids), which is given to `generate()` as
        the start of the sequence, and the rest is sampled.
        """
        labels, batch_size = self.sampling_batch(class_labels, num_samples, top_k, top_p, temperature, guidance_scale)
        checked = self.check_prompt(prompt, prompt_mask, batch_size)
        if checked is None:
            return self._sample_prefix(labels, batch_size, None, top_k, top_p, temperature, guidance_scale)
        prompt, mask = checked
        known = mask.reshape(batch_size, -1).sum(dim=1).tolist()  # each grid's prefix length
        codes = prompt.reshape(batch_size, -1).to(self.device)
        for length in sorted(set(known)):  # one generate() per prefix length: no padding inside a sequence
            rows = torch.tensor([i for i, n in enumerate(known) if n == length], device=self.device)
            group_labels = None if labels is None else labels[rows.cpu()]
            codes[rows] = self._sample_prefix(group_labels, len(rows), codes[rows, :length], top_k, top_p,
                                              temperature, guidance_scale).reshape(len(rows), -1)  # fmt: skip
        return codes.reshape(batch_size, *self.code_shape())

    def _sample_prefix(
        self,
        labels: torch.Tensor | None,
        batch_size: int,
        known: torch.Tensor | None,
        top_k: int | None,
        top_p: float | None,
        temperature: float,
        guidance_scale: float,
    ) -> torch.Tensor:
        """(B, *code_shape()) grids whose first codes are `known` (B, n) (None: n = 0), the others sampled."""
        prefix = self.prefix_ids(labels, batch_size)
        if known is not None:
            prefix = torch.cat([prefix, known.to(prefix.device)], dim=1)
        new_tokens = self.config.num_image_tokens + 1 - prefix.shape[1]
        if new_tokens == 0:  # every code known
            return prefix[:, 1:].reshape(batch_size, *self.code_shape())
        if guidance_scale != 1.0:
            # Conditional and unconditional (BOS) sequences in one batch; the sampler draws and keeps them paired.
            unconditional = self.prefix_ids(None, batch_size)
            prefix = torch.cat([prefix, torch.cat([unconditional, prefix[:, 1:]], dim=1)])
            sampler = PairedGuidanceSampler(guidance_scale, self.config.codebook_size, temperature, top_k, top_p)
            options = {"do_sample": False, "logits_processor": LogitsProcessorList([sampler])}
        else:
            options = {"do_sample": True, "top_k": top_k or 0, "top_p": 1.0 if top_p is None else top_p}
            options["temperature"] = temperature
        sequences = self.generate(
            prefix,
            attention_mask=torch.ones_like(prefix),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            use_cache=True,
            **options,
        )[:batch_size]
        return sequences[:, 1:].reshape(batch_size, *self.code_shape())
