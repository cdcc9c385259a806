"""The PixelCNN prior over code grids: a gated PixelCNN (van den Oord et al. 2016) with vertical and horizontal
stacks, class-conditioned by a learned bias per gated layer, sampled position by position in raster order."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from ...modules.backbone import init_conv_weights
from ...utils.errors import UsageError
from ..modeling_code_prior import (
    ClassLabels,
    CodePriorMixin,
    check_sampling_arguments,
    filter_log_probs,
    guided_log_probs,
)
from ..modeling_utils import HubMixin
from .configuration_pixelcnn_prior import PixelCNNPriorConfig


@dataclass
class PixelCNNPriorOutput(ModelOutput):
    """
    Args:
        loss: () mean cross-entropy over every position of every grid, in nats, when `labels` are given.
        logits: (B, K, h, w) unnormalized log-probabilities of each code given the codes before it in raster order.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


# ----- causal convolutions: causality is in the kernel shapes and the padding, so it holds for any weights -----


def shift_down(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W) moved down one row (row 0 zero): what was at row i - 1 is now at row i."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class VerticalConv2d(nn.Conv2d):
    """The vertical stack's conv: output (i, j) sees input rows i - n .. i and columns j - n .. j + n (an
    (n + 1) x k kernel, n = k // 2, padded above and on both sides, never below). It sees row i, so it reaches the
    horizontal stack only through `shift_down`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        n = kernel_size // 2
        super().__init__(in_channels, out_channels, (n + 1, kernel_size))
        self.padding_lrtb = (n, n, n, 0)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.padding_lrtb))


class HorizontalConv2d(nn.Conv2d):
    """The horizontal stack's conv: output (i, j) sees row i, columns j - n .. j ('mask B': a 1 x (n + 1) kernel
    padded on the left) or j - n .. j - 1 ('mask A': a 1 x n kernel, the input moved one column right first, so
    the current position is never seen)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, include_current: bool):
        n = kernel_size // 2
        super().__init__(in_channels, out_channels, (1, n + 1 if include_current else n))
        self.include_current = include_current
        self.left = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.left, 0))  # (B, C, H, W + n)
        if not self.include_current:
            x = x[..., :-1]  # (B, C, H, W + n - 1): the kernel ends one column left of the output position
        return super().forward(x)


class ClassBias(nn.Embedding):
    """A learned bias per class (rows 0 .. num_classes - 1) and for "no class" (the last row), initialized to zero:
    every class starts as the unconditional network, and the gradient sets them apart."""

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)


def gate(x: torch.Tensor) -> torch.Tensor:
    """(B, 2C, H, W) -> (B, C, H, W): the gated activation tanh(f) * sigmoid(g) (the paper's eq. 2)."""
    f, g = x.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer (the paper's Figure 2): the vertical stack, the horizontal stack fed by the vertical
    one (shifted down a row, through a 1x1 conv), a residual 1x1 conv on the horizontal stack (not in the 'mask A'
    layer, whose input at the current position must not pass through), a skip 1x1 conv towards the head, and the
    class bias added to the pre-activations (both gates) of both stacks."""

    def __init__(
        self, in_channels: int, channels: int, kernel_size: int, mask_a: bool, num_classes: int, dropout: float
    ):
        super().__init__()
        self.mask_a = mask_a
        self.vertical = VerticalConv2d(in_channels, 2 * channels, kernel_size)
        self.horizontal = HorizontalConv2d(in_channels, 2 * channels, kernel_size, include_current=not mask_a)
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.residual = nn.Conv2d(channels, channels, 1)
        self.skip = nn.Conv2d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)
        # Row `num_classes` is "no class"; an unconditional prior needs no bias beyond the convs' own.
        self.class_bias = ClassBias(num_classes + 1, 4 * channels) if num_classes else None

    def forward(
        self, vertical: torch.Tensor, horizontal: torch.Tensor, class_index: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C_in, H, W) stacks and (B,) class rows -> the next (B, C, H, W) stacks and the (B, C, H, W) skip."""
        v = self.vertical(vertical)  # (B, 2C, H, W): rows <= i
        h = self.horizontal(horizontal) + self.vertical_to_horizontal(shift_down(v))  # rows < i, row i left of j
        if self.class_bias is not None:
            v_bias, h_bias = self.class_bias(class_index)[:, :, None, None].chunk(2, dim=1)  # (B, 2C, 1, 1) each
            v, h = v + v_bias, h + h_bias
        gated = self.dropout(gate(h))  # (B, C, H, W)
        out = self.residual(gated)
        if not self.mask_a:
            out = out + horizontal
        return gate(v), out, self.skip(gated)


# ----- the model -----


class PixelCNNPriorModel(HubMixin, CodePriorMixin, PreTrainedModel):
    """A gated PixelCNN over the (h, w) code grid of a VQ model: logits (B, K, h, w) of each code given the codes
    before it in raster order (rows above, and the left of its own row), and the class.

    `forward(codes, labels=codes)` gives the mean cross-entropy for training; `log_prob_codes` the log-likelihood
    of whole grids; `sample_codes` / `generate` draw grids position by position, keeping any known codes of a
    prompt (any mask, not only a raster prefix). Class label -1 (or `None`) is "no class".

    Args:
        config (`PixelCNNPriorConfig`): the grid, the codebook, the classes and the network.
    """

    config_class = PixelCNNPriorConfig
    base_model_prefix = "pixelcnn_prior"
    main_input_name = "codes"
    completes_any_mask = True

    def __init__(self, config: PixelCNNPriorConfig):
        super().__init__(config)
        channels = config.hidden_channels
        self.code_embedding = nn.Embedding(config.codebook_size, config.embedding_dim)
        self.layers = nn.ModuleList(
            GatedLayer(
                config.embedding_dim if i == 0 else channels,
                channels,
                config.first_kernel_size if i == 0 else config.kernel_size,
                mask_a=i == 0,
                num_classes=config.num_classes,
                dropout=config.dropout,
            )
            for i in range(config.num_layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, config.output_channels, 1),
            nn.ReLU(),
            nn.Conv2d(config.output_channels, config.codebook_size, 1),
        )
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's defaults (fan-in scaled convs, N(0, 1) code embedding; zero class bias), not transformers'
        # N(0, 0.02) for everything.
        if isinstance(module, nn.Embedding):
            module.reset_parameters()
        else:
            init_conv_weights(module)

    # ----- inputs -----

    def class_index(self, class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor | None:
        """Class labels (B,) (-1: none) or None -> rows of the class bias (B,) on the model's device, "no class"
        being row `num_classes`; None for an unconditional prior."""
        if not self.config.is_class_conditional:
            return None
        null = self.config.num_classes
        if class_labels is None:
            return torch.full((batch_size,), null, dtype=torch.long, device=self.device)
        labels = class_labels.to(self.device, torch.long)
        return torch.where(labels >= 0, labels, null)

    def build_inputs(
        self,
        indices: torch.Tensor,
        class_labels: ClassLabels = None,
        labels: torch.Tensor | None = None,
        check_values: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Code grids (B, h, w) or sequences (B, h*w), class labels (B,) (-1: none) and target codes (like the codes)
        -> (codes (B, h, w), class rows (B,) or None, targets (B, h, w) or None) on the model's device, checked
        against the config. `check_values=False` skips the range checks (each one a device sync) for data already
        checked, as `CodeStream` checks every record; the shapes are always checked."""
        codes = self.check_codes(indices, "codes", check_values)
        targets = None if labels is None else self.check_codes(labels, "labels", check_values)
        if check_values:
            class_labels = self.check_class_labels(class_labels, allow_null=True)
        elif class_labels is not None:
            class_labels = torch.as_tensor(class_labels).reshape(-1)
        if targets is not None and len(targets) != len(codes):
            raise UsageError(f"got {len(targets)} label grids for {len(codes)} code grids")
        if class_labels is not None and len(class_labels) != len(codes):
            raise UsageError(f"got {len(class_labels)} class labels for {len(codes)} code grids")
        device = self.device
        targets = None if targets is None else targets.to(device)
        return codes.to(device), self.class_index(class_labels, len(codes)), targets

    # ----- the network -----

    def compute_logits(self, codes: torch.Tensor, class_index: torch.Tensor | None) -> torch.Tensor:
        """Checked codes (B, H, W) and class rows (B,) -> logits (B, K, H, W). Any H <= h works: the rows of the
        output depend only on the rows of the input at or above them, which is what sampling uses."""
        x = self.code_embedding(codes).permute(0, 3, 1, 2)  # (B, E, H, W)
        vertical, horizontal, skips = x, x, 0
        for layer in self.layers:
            vertical, horizontal, skip = layer(vertical, horizontal, class_index)
            skips = skips + skip  # (B, C, H, W)
        return self.head(skips)  # (B, K, H, W)

    def forward(
        self,
        codes: torch.Tensor,
        class_labels: ClassLabels = None,
        labels: torch.Tensor | None = None,
        return_dict: bool = True,
        check_values: bool = True,
    ) -> PixelCNNPriorOutput | tuple:
        """
        Args:
            codes: (B, h, w) or (B, h*w) code indices.
            class_labels: (B,) class labels in [0, num_classes), -1 for "no class"; None: no class for every grid.
            labels: target codes (usually `codes`), shaped like `codes`: gives `loss`, the mean cross-entropy.
            return_dict: a `PixelCNNPriorOutput`, else a tuple of its fields that are set.
            check_values: check the ranges of the codes, labels and class labels (a device sync each); training on
                checked data turns it off.
        """
        codes, class_index, targets = self.build_inputs(codes, class_labels, labels, check_values)
        logits = self.compute_logits(codes, class_index)
        loss = None if targets is None else F.cross_entropy(logits.float(), targets)
        output = PixelCNNPriorOutput(loss=loss, logits=logits)
        return output if return_dict else output.to_tuple()

    # ----- likelihood -----

    @torch.no_grad()
    def log_prob_codes(self, indices: torch.Tensor, class_labels: ClassLabels = None) -> torch.Tensor:
        """log p(codes | class) of each grid in nats (B,): the sum over its positions."""
        codes, class_index, _ = self.build_inputs(indices, class_labels)
        log_probs = F.log_softmax(self.compute_logits(codes, class_index).float(), dim=1)  # (B, K, h, w)
        return log_probs.gather(1, codes[:, None]).sum(dim=(1, 2, 3))

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
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample code grids (B, h, w), position by position in raster order.

        With `class_labels`, `num_samples` grids per label (label by label, B = labels * num_samples); without,
        `num_samples` unconditional ones. `guidance_scale` s != 1 samples from `log p(x) + s (log p(x|c) - log p(x))`
        (classifier-free guidance; the unconditional half uses the "no class" bias); it needs class labels. Then
        `temperature`, `top_k` and `top_p` filter each position's distribution. `prompt` (B, h, w) with
        `prompt_mask` (B, h, w), True where a code is known, completes grids: known codes are kept, never drawn,
        and every unknown one is drawn given all the codes (known or drawn) before it in raster order. `generator`
        (on the model's device) seeds the draws; without it, they come from torch's global random state.

        One network pass per position with an unknown code (h * w without a prompt; no cache): at row i the pass
        runs on rows 0 .. i only, since no row below i reaches row i, and on the grids that still need that
        position; with guidance the conditional and unconditional grids go in one doubled batch.
        """
        labels, batch_size = self.sampling_batch(class_labels, num_samples, top_k, top_p, temperature, guidance_scale)
        known = self.check_prompt(prompt, prompt_mask, batch_size)
        return self._sample(labels, batch_size, known, top_k, top_p, temperature, guidance_scale, generator)

    @torch.no_grad()
    def generate(
        self,
        num_samples: int,
        class_labels: ClassLabels = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        guidance_scale: float = 1.0,
        generator: torch.Generator | None = None,
        prompt: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample `num_samples` code grids (num_samples, h, w); `class_labels` gives one label per grid (not per
        label, as `sample_codes` takes them). The other arguments are `sample_codes`'."""
        labels = self.check_class_labels(class_labels)
        check_sampling_arguments(num_samples, temperature, top_k, top_p, guidance_scale, labels is not None)
        if labels is not None and len(labels) != num_samples:
            raise UsageError(f"`class_labels` gives one label per sample: expected {num_samples}, got {len(labels)}")
        known = self.check_prompt(prompt, prompt_mask, num_samples)
        return self._sample(labels, num_samples, known, top_k, top_p, temperature, guidance_scale, generator)

    def _sample(
        self,
        labels: torch.Tensor | None,
        batch_size: int,
        known: tuple[torch.Tensor, torch.Tensor] | None,
        top_k: int | None,
        top_p: float | None,
        temperature: float,
        guidance_scale: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The sampler of `sample_codes` and `generate`, on checked arguments: (B,) labels or None, and the checked
        (prompt, mask) or None -> (B, h, w) codes."""
        height, width = self.config.token_grid_size
        device = self.device
        if known is None:
            codes = torch.zeros(batch_size, height, width, dtype=torch.long, device=device)
            mask = torch.zeros(batch_size, height, width, dtype=torch.bool, device=device)
        else:
            codes, mask = known[0].to(device).clone(), known[1].to(device)
        class_index = self.class_index(labels, batch_size)  # (B,) or None
        guided = guidance_scale != 1.0
        null_index = torch.full((batch_size,), self.config.num_classes, dtype=torch.long, device=device)
        for i in range(height):
            for j in range(width):
                todo = (~mask[:, i, j]).nonzero().squeeze(1)  # (n,) the grids that draw this position
                if len(todo) == 0:
                    continue
                context = codes[todo, : i + 1]  # (n, i + 1, w)
                rows = None if class_index is None else class_index[todo]
                if guided:  # conditional rows [0, n), the same grids without a class [n, 2n)
                    context = torch.cat([context, context])
                    rows = torch.cat([rows, null_index[todo]])
                logits = self.compute_logits(context, rows)[:, :, i, j].float()  # (n or 2n, K)
                if guided:
                    log_probs = guided_log_probs(*logits.chunk(2), guidance_scale)
                else:
                    log_probs = F.log_softmax(logits, dim=-1)
                probs = filter_log_probs(log_probs, temperature, top_k, top_p).softmax(dim=-1)  # (n, K)
                codes[todo, i, j] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return codes
