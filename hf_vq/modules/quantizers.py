"""Vector quantization (VQ-VAE, with EMA, cosine codes, factorized codebooks, k-means init and dead-code restart)
and finite scalar quantization (FSQ).

Both take latents (B, C, H, W), like diffusers' `VectorQuantizer`, and return a `QuantizerOutput`. The quantizer's
math always runs in float32, even under bf16 / fp16 autocast: nearest-code search and EMA statistics are where low
precision breaks VQ training first (ties, NaNs, codebook drift).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..utils.configuration_utils import check_choice, check_float, check_int, check_int_list
from .checks import check_feature_maps, check_indices

CODEBOOK_UPDATES = ("loss", "ema")
# The VectorQuantizer's training state (k-means flag, EMA statistics, dead-code counters): buffers that a converted
# diffusers or taming codebook has no equivalent for, and that `use_pretrained_codebook()` sets from the codebook.
TRAINING_STATE_BUFFERS = ("initialized", "ema_cluster_size", "ema_embed_sum", "steps_unused")
# Their state-dict keys in a VQ model, whose quantizer is `quantize` (diffusers' and taming's name too): the keys that
# loading a converted checkpoint leaves missing.
QUANTIZER_STATE_KEYS = tuple(f"quantize.{name}" for name in TRAINING_STATE_BUFFERS)
# Upper bound on the elements of the (chunk x K) distance buffer: 2**23 float32 = 32 MiB. Measured on 2 CPU cores
# (BENCHMARKS.md): as fast as smaller chunks.
DEFAULT_SEARCH_CHUNK_ELEMENTS = 2**23
# Codes per block of the two-step argmin (see `_argmin_rows`).
ARGMIN_BLOCK = 128


@dataclass
class QuantizerOutput(ModelOutput):
    """
    Args:
        quantized: (B, C, H, W) quantized latents. Their values are exactly the (projected) codebook vectors;
            their gradient passes straight through to the input latents (van den Oord et al. 2017, sec. 3.2).
        indices: (B, H, W) int64 code indices.
        codebook_loss: () `||sg[z_e] - e||^2`, the mean over elements; it moves the codebook (0 when the codebook
            follows an EMA or for FSQ, whose codes are fixed).
        commitment_loss: () `||z_e - sg[e]||^2`, unweighted; it keeps the encoder close to its codes.
        loss: () `codebook_loss + beta * commitment_loss`, the quantizer's term of the training loss (the paper's
            eq. 3, with beta on the commitment term).
        perplexity: () `exp(entropy)` of the code histogram of this batch (K when codes are used uniformly).
        usage: () fraction of the K codes used at least once in this batch.
    """

    quantized: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    usage: torch.Tensor | None = None


def _argmin_rows(scores: torch.Tensor, out: torch.Tensor) -> None:
    """`out[:] = scores.argmin(dim=1)` for (rows, K) scores; the first minimum of each row, as `argmin` gives.

    On the CPU, `argmin` is several times slower than `amin`, so when K is a multiple of ARGMIN_BLOCK: the minimum
    of each block of codes (`amin`), the first block holding the row's minimum (`argmin` over K / 128 values),
    then the first minimum inside that block. Same indices, ties included.
    """
    rows, num_codes = scores.shape
    if scores.device.type != "cpu" or num_codes % ARGMIN_BLOCK:
        torch.argmin(scores, dim=1, out=out)
        return
    blocks = scores.view(rows, num_codes // ARGMIN_BLOCK, ARGMIN_BLOCK)  # (rows, K / 128, 128)
    best_block = blocks.amin(dim=2).argmin(dim=1)  # (rows,)
    inside = blocks[torch.arange(rows, device=scores.device), best_block].argmin(dim=1)  # (rows,)
    torch.add(inside, best_block, alpha=ARGMIN_BLOCK, out=out)


@torch.no_grad()
def nearest_codes(
    vectors: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = DEFAULT_SEARCH_CHUNK_ELEMENTS
) -> torch.Tensor:
    """Index of the nearest codebook row (squared euclidean distance) for each vector: (N, D), (K, D) -> (N,) int64.

    `||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2`; `||z||^2` is the same for every code and drops out of the argmin, the
    rest is one `addmm` per chunk of rows, written into one reused buffer of at most `chunk_elements` distances.
    Memory stays bounded where `torch.cdist` materializes the whole N x K matrix (4 GiB at N = 65536, K = 16384),
    and a fresh buffer per chunk would cost a page fault per page on every chunk.
    """
    vectors, codebook = vectors.float(), codebook.float()
    codebook_sq = codebook.pow(2).sum(dim=1)  # (K,)
    codebook_t = codebook.t()  # (D, K)
    num_vectors, num_codes = vectors.shape[0], codebook.shape[0]
    chunk = max(1, min(num_vectors, chunk_elements // num_codes))
    buffer = torch.empty(chunk, num_codes, device=vectors.device)  # (chunk, K)
    indices = torch.empty(num_vectors, dtype=torch.long, device=vectors.device)
    for start in range(0, num_vectors, chunk):
        block = vectors[start : start + chunk]
        scores = buffer[: block.shape[0]]
        torch.addmm(codebook_sq, block, codebook_t, beta=1.0, alpha=-2.0, out=scores)  # ||z - e||^2 - ||z||^2
        _argmin_rows(scores, indices[start : start + block.shape[0]])
    return indices


def code_statistics(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perplexity and usage fraction of a code histogram (K,)."""
    probs = counts.float() / counts.sum().clamp(min=1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    return entropy.exp(), (counts > 0).float().mean()


def _to_rows(latents: torch.Tensor) -> torch.Tensor:
    return latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # (B*H*W, C)


def _to_grid(rows: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    # (B, C, H, W), contiguous: a channels-last view made the decoder's last weight get channels-last gradients,
    # which DDP warns about (grad strides do not match its bucket views)
    return rows.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class VectorQuantizer(nn.Module):
    """Vector quantizer with the loss of the VQ-VAE paper, `||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2`.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: channels C of the latents it takes.
        beta: weight of the commitment term (0.25 in the paper and in taming).
        codebook_update: `"loss"` (the codebook is a parameter learned through the codebook term) or `"ema"`
            (exponential moving averages of the assigned vectors, van den Oord et al. 2017 appendix A.1; the
            statistics are all-reduced across processes so that every rank keeps the same codebook).
        ema_decay: decay of the EMA statistics, in (0, 1).
        ema_epsilon: Laplace smoothing of the EMA cluster sizes, so that unused codes do not divide by zero.
        use_l2_norm: l2-normalize latents and codes before the search (cosine similarity), as in ViT-VQGAN and
            LlamaGen; it keeps codes on the sphere where the encoder outputs are.
        codebook_dim: search a codebook of this lower dimension, with learned linear projections in and out
            (ViT-VQGAN's factorized codes; LlamaGen uses 8). `None` searches in `embedding_dim`.
        kmeans_init: initialize the codebook by k-means on the first training batch (with restarts, codes no latent
            of that batch chooses are restarted from the next batches).
        kmeans_iters: Lloyd iterations of that k-means.
        dead_code_threshold: in training, a code unused for this many consecutive steps is re-seeded from a random
            latent of the current batch (at most one code per latent and step). `None` disables restarts. Scale it
            with K over the latents per step: a code used at the average rate is hit `threshold * N / K` times per
            window, and should be hit several times (e.g. 20 steps for K = 1024 at 1,024 latents per step, ~100
            for K = 16384).
        search_chunk_elements: memory bound of the nearest-code search (see `nearest_codes`).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        beta: float = 0.25,
        codebook_update: str = "loss",
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        use_l2_norm: bool = False,
        codebook_dim: int | None = None,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: int | None = None,
        search_chunk_elements: int = DEFAULT_SEARCH_CHUNK_ELEMENTS,
    ):
        super().__init__()
        check_int("num_embeddings", num_embeddings, minimum=2)
        check_int("embedding_dim", embedding_dim, minimum=1)
        check_float("beta", beta, minimum=0.0)
        check_choice("codebook_update", codebook_update, CODEBOOK_UPDATES)
        check_float("ema_decay", ema_decay, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
        check_float("ema_epsilon", ema_epsilon, 0.0, exclusive_minimum=True)
        check_int("kmeans_iters", kmeans_iters, minimum=1)
        check_int("search_chunk_elements", search_chunk_elements, minimum=1)
        if codebook_dim is not None:
            check_int("codebook_dim", codebook_dim, minimum=1, maximum=embedding_dim - 1)
        if dead_code_threshold is not None:
            check_int("dead_code_threshold", dead_code_threshold, minimum=1)

        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.beta = beta
        self.codebook_update = codebook_update
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        self.use_l2_norm = use_l2_norm
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.search_chunk_elements = search_chunk_elements

        dim = embedding_dim if codebook_dim is None else codebook_dim
        self.codebook_dim = dim
        self.in_proj = nn.Linear(embedding_dim, dim) if codebook_dim is not None else None
        self.out_proj = nn.Linear(dim, embedding_dim) if codebook_dim is not None else None
        self.embedding = nn.Embedding(num_embeddings, dim)
        self.reset_codebook()
        if codebook_update == "ema":
            self.embedding.weight.requires_grad_(False)  # moved by the EMA, never by the optimizer
            self.register_buffer("ema_cluster_size", torch.ones(num_embeddings))
            self.register_buffer("ema_embed_sum", self.embedding.weight.detach().clone())
        # Persistent, so that a reloaded or resumed model does not run k-means again over a trained codebook.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        if dead_code_threshold is not None:
            self.register_buffer("steps_unused", torch.zeros(num_embeddings, dtype=torch.long))

    @torch.no_grad()
    def reset_codebook(self) -> None:
        """Uniform in [-1/K, 1/K], taming's and diffusers' initialization."""
        # nn.init, not Tensor.uniform_: transformers guards nn.init so that weights loaded from a checkpoint stay.
        nn.init.uniform_(self.embedding.weight, -1.0 / self.num_embeddings, 1.0 / self.num_embeddings)
        self._restart_ema_from_codebook()

    @torch.no_grad()
    def use_pretrained_codebook(self) -> None:
        """Treat the current codebook as trained (e.g. converted): no k-means over it, EMA restarts from it."""
        self.initialized.fill_(True)
        self._restart_ema_from_codebook()

    def _restart_ema_from_codebook(self) -> None:
        if self.codebook_update == "ema" and hasattr(self, "ema_embed_sum"):  # not yet registered in __init__
            self.ema_embed_sum.copy_(self.embedding.weight)
            self.ema_cluster_size.fill_(1.0)

    def codebook(self) -> torch.Tensor:
        """The codes searched against, (K, codebook_dim) float32, l2-normalized with `use_l2_norm`."""
        weight = self.embedding.weight.float()
        return F.normalize(weight, dim=1) if self.use_l2_norm else weight

    def _project_in(self, rows: torch.Tensor) -> torch.Tensor:
        rows = self.in_proj(rows) if self.in_proj is not None else rows
        return F.normalize(rows, dim=1) if self.use_l2_norm else rows

    def _project_out(self, rows: torch.Tensor) -> torch.Tensor:
        return self.out_proj(rows) if self.out_proj is not None else rows

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> quantized latents (B, embedding_dim, h, w), the same values `forward` gives."""
        check_indices(indices, self.num_embeddings)
        batch, height, width = indices.shape
        with torch.autocast(device_type=indices.device.type, enabled=False):
            rows = self._project_out(F.embedding(indices.reshape(-1), self.codebook()))
        return _to_grid(rows, batch, height, width)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize latents (B, C, H, W) to their nearest codes."""
        check_feature_maps(latents, "latents", self.embedding_dim, "embedding_dim")
        batch, _, height, width = latents.shape
        with torch.autocast(device_type=latents.device.type, enabled=False):
            z = self._project_in(_to_rows(latents.float()))  # (N, d), N = B*H*W
            if self.training:
                self._maintain_codebook(z.detach())
            codebook = self.codebook()  # (K, d)
            indices = nearest_codes(z.detach(), codebook.detach(), self.search_chunk_elements)  # (N,)
            z_q = F.embedding(indices, codebook)  # (N, d); differentiable in the codebook
            commitment_loss = F.mse_loss(z, z_q.detach())
            if self.codebook_update == "loss":
                codebook_loss = F.mse_loss(z_q, z.detach())
            else:
                codebook_loss = z.new_zeros(())
            # Straight-through estimator written so that the value is exactly z_q (z - sg[z] is exactly 0), which
            # keeps decode_indices(encode_indices(x)) bit-identical to forward; the gradient w.r.t. z is identity.
            quantized = self._project_out(z_q.detach() + (z - z.detach()))
            counts = torch.bincount(indices, minlength=self.num_embeddings)  # (K,)
            if self.training:
                self._update_after_step(z.detach(), indices, counts)
            perplexity, usage = code_statistics(counts)
        return QuantizerOutput(
            quantized=_to_grid(quantized, batch, height, width),
            indices=indices.view(batch, height, width),
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            loss=codebook_loss + self.beta * commitment_loss,
            perplexity=perplexity,
            usage=usage,
        )

    # ----- codebook maintenance (training mode only; every rank ends with the same codebook) -----

    @torch.no_grad()
    def _maintain_codebook(self, z: torch.Tensor) -> None:
        """k-means initialization and dead-code restarts, before this step's search uses the codebook."""
        if not bool(self.initialized):
            self._set_codes(torch.arange(self.num_embeddings, device=z.device), self._kmeans(z))
            self.initialized.fill_(True)
            if self.dead_code_threshold is not None:
                # Codes that no latent of the batch chooses (all but at most N of them when the batch has fewer
                # latents N than codes K: their seeds repeat) are dead from the start, re-seeded from the next
                # batches rather than after a whole threshold of steps. Counted against the codebook every rank now
                # holds and summed over processes, so that every rank marks the same codes.
                chosen = nearest_codes(z, self.codebook(), self.search_chunk_elements)
                counts = torch.bincount(chosen, minlength=self.num_embeddings)
                if _distributed():
                    dist.all_reduce(counts)
                self.steps_unused[counts == 0] = self.dead_code_threshold - 1
        if self.dead_code_threshold is not None:
            dead = (self.steps_unused >= self.dead_code_threshold).nonzero().squeeze(1)
            # Re-seed from distinct random latents of this batch (they are where the encoder is now), at most one
            # code per latent: two codes seeded from the same latent are duplicates, and the search gives all of a
            # duplicate's assignments to the lower index, so the other would be dead again at once. Codes beyond the
            # batch's size stay dead and are re-seeded at the next steps; the first ones by index, so that every
            # rank picks the same codes.
            dead = dead[: z.shape[0]]
            if dead.numel():
                picks = torch.randperm(z.shape[0], device=z.device)[: dead.numel()]
                self._set_codes(dead, z[picks])
                self.steps_unused[dead] = 0

    @torch.no_grad()
    def _set_codes(self, which: torch.Tensor, vectors: torch.Tensor) -> None:
        codes = self.embedding.weight.detach().clone()
        codes[which] = vectors.to(codes.dtype)
        if _distributed():
            dist.broadcast(codes, src=0)  # every rank takes rank 0's codes
        # Through `.data`, bypassing autograd's version check: a graph still alive from an earlier forward (two
        # forwards before one backward) may hold the weight, and re-seeded codes need no gradient history.
        self.embedding.weight.data.copy_(codes)
        if self.codebook_update == "ema":
            self.ema_embed_sum[which] = codes[which]
            self.ema_cluster_size[which] = 1.0

    @torch.no_grad()
    def _kmeans(self, z: torch.Tensor) -> torch.Tensor:
        """Lloyd's k-means on the rows of z (N, d) -> K centroids; codes whose cluster empties keep their seed."""
        if z.shape[0] >= self.num_embeddings:
            picks = torch.randperm(z.shape[0], device=z.device)[: self.num_embeddings]
        else:  # fewer latents than codes: seed with repeats
            picks = torch.randint(z.shape[0], (self.num_embeddings,), device=z.device)
        centroids = z[picks].clone()  # (K, d)
        for _ in range(self.kmeans_iters):
            assign = nearest_codes(z, centroids, self.search_chunk_elements)
            counts = torch.bincount(assign, minlength=self.num_embeddings).unsqueeze(1)  # (K, 1)
            sums = torch.zeros_like(centroids).index_add_(0, assign, z)
            centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
            if self.use_l2_norm:
                centroids = F.normalize(centroids, dim=1)
        return centroids

    @torch.no_grad()
    def _update_after_step(self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA codebook update and dead-code bookkeeping with this step's assignments, summed over processes."""
        if self.codebook_update != "ema" and self.dead_code_threshold is None:
            return
        counts = counts.float()
        if _distributed():
            dist.all_reduce(counts)
        if self.dead_code_threshold is not None:
            self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        if self.codebook_update == "ema":
            # Per-code sums of the assigned latents (K, d): only the EMA needs them, restarts need just the counts.
            sums = torch.zeros(self.num_embeddings, z.shape[1], device=z.device).index_add_(0, indices, z)
            if _distributed():
                dist.all_reduce(sums)
            decay = self.ema_decay
            self.ema_cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
            self.ema_embed_sum.mul_(decay).add_(sums, alpha=1 - decay)
            # Laplace smoothing: (n_k + eps) / (n + K eps) * n keeps the total mass, and no code divides by zero.
            total = self.ema_cluster_size.sum()
            smoothed = (self.ema_cluster_size + self.ema_epsilon) / (total + self.num_embeddings * self.ema_epsilon)
            codes = self.ema_embed_sum / (smoothed * total).unsqueeze(1)
            self.embedding.weight.copy_(F.normalize(codes, dim=1) if self.use_l2_norm else codes)

    def extra_repr(self) -> str:
        extras = [f"num_embeddings={self.num_embeddings}", f"embedding_dim={self.embedding_dim}", f"beta={self.beta}"]
        if self.codebook_dim != self.embedding_dim:
            extras.append(f"codebook_dim={self.codebook_dim}")
        extras.append(f"codebook_update={self.codebook_update!r}")
        if self.use_l2_norm:
            extras.append("use_l2_norm=True")
        return ", ".join(extras)


class FSQ(nn.Module):
    """Finite scalar quantization (Mentzer et al. 2023): each channel is bounded and rounded to a few levels.

    The codebook is implicit, the grid of `levels` (K = prod(levels) codes); there is no codebook or commitment
    loss and no code can die. Rounding passes gradients straight through.

    Args:
        levels: levels per channel, e.g. `[8, 5, 5, 5]` (K = 1000) or `[8, 8, 8, 6, 5]` (K = 15360), each >= 2.
        embedding_dim: channels of the latents it takes; when it differs from `len(levels)`, learned linear
            projections map to and from the `len(levels)` quantized channels.
        eps: keeps the bound slightly wider than the outer levels, so that they are reached (the paper's 1e-3).
    """

    def __init__(self, levels: Sequence[int], embedding_dim: int | None = None, eps: float = 1e-3):
        super().__init__()
        check_int_list("levels", levels, minimum=2)
        self.levels = list(levels)
        dim = len(self.levels)
        self.embedding_dim = dim if embedding_dim is None else embedding_dim
        check_int("embedding_dim", self.embedding_dim, minimum=1)
        self.num_embeddings = math.prod(self.levels)
        self.eps = eps
        self.in_proj = nn.Linear(self.embedding_dim, dim) if self.embedding_dim != dim else None
        self.out_proj = nn.Linear(dim, self.embedding_dim) if self.embedding_dim != dim else None
        # Mixed-radix place values of the per-channel digits: index = sum_i digit_i * prod_{j < i} L_j.
        self.basis = [math.prod(self.levels[:i]) for i in range(dim)]

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """levels (float), half widths L // 2 (float) and place values (long), each (dim,).

        Built from python lists rather than kept as buffers: non-persistent buffers come back uninitialized when
        transformers materializes a model from the meta device.
        """
        levels = torch.tensor(self.levels, dtype=torch.float32, device=device)
        half_width = torch.tensor([level // 2 for level in self.levels], dtype=torch.float32, device=device)
        return levels, half_width, torch.tensor(self.basis, dtype=torch.long, device=device)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each channel into (-L/2, L/2) (shifted by 1/2 for even L) so that rounding gives exactly L values."""
        levels, _, _ = self._constants(z.device)
        half_l = (levels - 1) * (1 + self.eps) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def _codes_to_indices(self, rounded: torch.Tensor) -> torch.Tensor:
        _, half_width, basis = self._constants(rounded.device)
        digits = (rounded + half_width).long()  # (N, dim), each in [0, L)
        return (digits * basis).sum(dim=1)

    def _indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        levels, half_width, basis = self._constants(indices.device)
        digits = torch.div(indices.unsqueeze(1), basis, rounding_mode="floor") % levels.long()  # (N, dim)
        return (digits.float() - half_width) / half_width  # (N, dim) in [-1, 1]

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> quantized latents (B, embedding_dim, h, w), the same values `forward` gives."""
        check_indices(indices, self.num_embeddings)
        batch, height, width = indices.shape
        with torch.autocast(device_type=indices.device.type, enabled=False):
            rows = self._indices_to_codes(indices.reshape(-1))
            rows = self.out_proj(rows) if self.out_proj is not None else rows
        return _to_grid(rows, batch, height, width)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize latents (B, C, H, W) channel by channel."""
        check_feature_maps(latents, "latents", self.embedding_dim, "embedding_dim")
        batch, _, height, width = latents.shape
        with torch.autocast(device_type=latents.device.type, enabled=False):
            z = _to_rows(latents.float())  # (N, C)
            z = self.in_proj(z) if self.in_proj is not None else z  # (N, dim)
            bounded = self.bound(z)
            rounded = bounded.round().detach() + (bounded - bounded.detach())  # value exactly round(), gradient 1
            indices = self._codes_to_indices(rounded.detach())
            _, half_width, _ = self._constants(z.device)
            codes = rounded / half_width  # (N, dim) in [-1, 1]
            quantized = self.out_proj(codes) if self.out_proj is not None else codes
            perplexity, usage = code_statistics(torch.bincount(indices, minlength=self.num_embeddings))
        zero = z.new_zeros(())
        return QuantizerOutput(
            quantized=_to_grid(quantized, batch, height, width),
            indices=indices.view(batch, height, width),
            codebook_loss=zero,
            commitment_loss=zero,
            loss=zero,
            perplexity=perplexity,
            usage=usage,
        )

    def extra_repr(self) -> str:
        return f"levels={self.levels}, embedding_dim={self.embedding_dim}, num_embeddings={self.num_embeddings}"


def build_quantizer(config) -> VectorQuantizer | FSQ:
    """The quantizer a `QuantizerConfigMixin` config describes, taking `vq_embed_dim`-channel latents."""
    if config.quantizer_type == "fsq":
        return FSQ(config.fsq_levels, embedding_dim=config.vq_embed_dim)
    return VectorQuantizer(
        config.num_vq_embeddings,
        config.vq_embed_dim,
        beta=config.vq_beta,
        codebook_update=config.vq_codebook_update,
        ema_decay=config.vq_ema_decay,
        ema_epsilon=config.vq_ema_epsilon,
        use_l2_norm=config.vq_use_l2_norm,
        codebook_dim=config.vq_codebook_dim,
        kmeans_init=config.vq_kmeans_init,
        dead_code_threshold=config.vq_dead_code_threshold,
    )
