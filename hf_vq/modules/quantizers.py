"""The quantizers of the VQ models, each selected by a config's `quantizer_type`:

- `VectorQuantizer` ("vq"): VQ-VAE, with EMA, cosine codes, factorized codebooks, k-means init, dead-code restart,
  and the straight-through or rotation-trick gradient (Fifty et al. 2024);
- `FSQ` ("fsq"): finite scalar quantization (Mentzer et al. 2023);
- `LFQ` ("lfq"): lookup-free quantization with its entropy penalty (MAGVIT-v2, Yu et al. 2023);
- `SimVQ` ("simvq"): a frozen random codebook through a learned linear map (Zhu et al. 2024);
- `ResidualVectorQuantizer` ("residual"): `depth` vector quantizers on successive residuals (SoundStream, RQ-VAE).

All take latents (B, C, H, W), like diffusers' `VectorQuantizer`, and return a `QuantizerOutput`. The quantizer's
math always runs in float32, even under bf16 / fp16 autocast: nearest-code search and EMA statistics are where low
precision breaks VQ training first (ties, NaNs, codebook drift).

Across processes (several ranks of one training run) every statistic that changes the model is all-reduced in
training mode, so that each rank keeps the same quantizer and a run on several processes computes what one process
would on the whole batch: the EMA sums and dead-code counters of `VectorQuantizer` (and so of the residual stages),
LFQ's batch code distribution (the diversity term, through a differentiable all-reduce). The code histograms behind
`perplexity` and `usage` of `LFQ`, `SimVQ` and `ResidualVectorQuantizer` are all-reduced too, so that in training
they describe the whole global batch (`VectorQuantizer` and `FSQ` report their own process's batch). Evaluation mode
never communicates: ranks may evaluate different numbers of batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..utils.configuration_utils import (
    LFQ_MAX_BITS,
    LFQ_MAX_GROUP_BITS,
    VQ_GRADIENTS,
    check_choice,
    check_float,
    check_int,
    check_int_list,
)
from ..utils.errors import UsageError
from .checks import check_feature_maps, check_indices

CODEBOOK_UPDATES = ("loss", "ema")
# The VectorQuantizer's training state (k-means flag, EMA statistics, dead-code counters, the entropy schedule's step
# count): buffers that a converted diffusers or taming codebook has no equivalent for, and that
# `use_pretrained_codebook()` sets from the codebook (the step count stays at 0: a fine-tune starts its schedule).
TRAINING_STATE_BUFFERS = ("initialized", "ema_cluster_size", "ema_embed_sum", "steps_unused", "entropy_steps")
# Their state-dict keys in a VQ model, whose quantizer is `quantize` (diffusers' and taming's name too): the keys that
# loading a converted checkpoint leaves missing.
QUANTIZER_STATE_KEYS = tuple(f"quantize.{name}" for name in TRAINING_STATE_BUFFERS)
# Upper bound on the elements of the (chunk x K) distance buffer: 2**23 float32 = 32 MiB. Measured on 2 CPU cores
# (BENCHMARKS.md): as fast as smaller chunks.
DEFAULT_SEARCH_CHUNK_ELEMENTS = 2**23
# Codes per block of the two-step argmin (see `_argmin_rows`).
ARGMIN_BLOCK = 128
# The code entropy penalty of `VectorQuantizer` spreads each latent's probability over its nearest codes only: at its
# temperatures the rest of the codebook holds a vanishing share, and the full (N, K) softmax would cost more than the
# whole search (1,024 x 16,384 latents by codes: 16M probabilities, each read and written several times per step).
ENTROPY_TOP_K = 64


@dataclass
class QuantizerOutput(ModelOutput):
    """
    Args:
        quantized: (B, C, H, W) quantized latents. Their values are exactly the (projected) codebook vectors (for
            residual quantization, their sum over the stages); their gradient passes straight through to the input
            latents (van den Oord et al. 2017, sec. 3.2), or through the rotation trick.
        indices: (B, H, W) int64 code indices; (B, H, W, depth) for `ResidualVectorQuantizer`, stage by stage.
        codebook_loss: () `||sg[z_e] - e||^2`, the mean over elements; it moves the codebook (0 when the codebook
            follows an EMA, and for FSQ and LFQ, whose codes are fixed); summed over the stages of residual
            quantization.
        commitment_loss: () `||z_e - sg[e]||^2`, unweighted; it keeps the encoder close to its codes (summed over the
            stages of residual quantization; 0 for FSQ).
        loss: () `codebook_loss + beta * commitment_loss`, the quantizer's term of the training loss (the paper's
            eq. 3, with beta on the commitment term); LFQ adds its entropy penalty (see `LFQ`), which can make it
            negative; so does `VectorQuantizer`'s code entropy penalty, in training.
        perplexity: () `exp(entropy)` of the code histogram of this batch (K when codes are used uniformly); for
            residual quantization, the mean over its codebooks.
        usage: () fraction of the K codes used at least once in this batch; for residual quantization, the mean over
            its codebooks.
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
    """Perplexity and usage fraction of a code histogram (K,), or their means over the codebooks of histograms
    (codebooks, K) (residual quantization's separate codebooks)."""
    probs = counts.float() / counts.sum(dim=-1, keepdim=True).clamp(min=1)
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum(dim=-1)
    return entropy.exp().mean(), (counts > 0).float().mean()


def _to_rows(latents: torch.Tensor) -> torch.Tensor:
    return latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # (B*H*W, C)


def _to_grid(rows: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    # (B, C, H, W), contiguous: a channels-last view made the decoder's last weight get channels-last gradients,
    # which DDP warns about (grad strides do not match its bucket views)
    return rows.view(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _global_counts(counts: torch.Tensor, training: bool) -> torch.Tensor:
    """A code histogram summed over processes in training (the whole global batch's); as it is otherwise."""
    if training and _distributed():
        counts = counts.clone()
        dist.all_reduce(counts)
    return counts


def _batch_entropy(mass: torch.Tensor, rows: int, training: bool) -> torch.Tensor:
    """The entropy in nats of a batch's mean code distribution, from `mass` (K,), its rows' probabilities summed per
    code, over every process's rows in training: `-sum q log q`, q = mass / rows. (Over concatenated distributions,
    the sum of their entropies.)"""
    totals = torch.cat([mass, mass.new_tensor([rows])])  # the summed mass, then the count of rows
    if training and _distributed():
        totals = dist_functional.all_reduce(totals)  # differentiable: its backward all-reduces the gradients
    means = totals[:-1] / totals[-1]
    # q log q with q clamped inside the log: codes whose probability underflows to 0 keep a finite gradient
    return -(means * torch.log(means.clamp(min=1e-30))).sum()


@torch.no_grad()
def _rotation_constants(
    z: torch.Tensor, z_q: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unit vectors and scale of the rotation trick for rows z -> z_q (N, d): z_hat, q_hat, r (each (N, d)) and
    s = |z_q| / |z| (N, 1), with R = I - 2 r r^T + 2 q_hat z_hat^T the rotation taking z_hat to q_hat (Fifty et al.
    2024: the product of the Householder reflections about r = (z_hat + q_hat) / |z_hat + q_hat| and about q_hat).
    `eps` keeps a zero latent from dividing by zero."""
    z_norm = z.norm(dim=1, keepdim=True).clamp(min=eps)
    q_norm = z_q.norm(dim=1, keepdim=True)
    z_hat = z / z_norm
    q_hat = z_q / q_norm.clamp(min=eps)
    r = F.normalize(z_hat + q_hat, dim=1, eps=eps)
    return z_hat, q_hat, r, q_norm / z_norm


def straight_through(z: torch.Tensor, z_q: torch.Tensor, gradient: str = "ste") -> torch.Tensor:
    """Rows z (N, d) -> their codes z_q (N, d), with the value of z_q exactly and the gradient to z of `gradient`.

    `"ste"`: the identity (van den Oord et al. 2017). `"rotation"`: the rotation trick (Fifty et al. 2024): the output
    is `s R z` with R and s treated as constants (R rotates z / |z| onto z_q / |z_q|, s = |z_q| / |z|), so the
    gradient reaching z is `s R^T g`: it makes the angle with z that g makes with z_q, scaled by |z_q| / |z|.
    No codebook gradient flows through the output in either case (the codebook learns through its own loss term).

    The value is written `sg[z_q] + (f(z) - sg[f(z)])`, whose second term is exactly 0, so that the output equals
    the codes bit for bit (and `decode_indices(encode_indices(x))` equals the forward's reconstruction).
    """
    if gradient == "ste":
        moved = z
    else:
        z_hat, q_hat, r, scale = _rotation_constants(z.detach(), z_q.detach())
        # s R z = s (z - 2 r (r.z) + 2 q_hat (z_hat.z)): R applied row by row without forming it, (N, d)
        moved = scale * (
            z - 2 * r * (r * z).sum(dim=1, keepdim=True) + 2 * q_hat * (z_hat * z).sum(dim=1, keepdim=True)
        )
    return z_q.detach() + (moved - moved.detach())


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
        gradient: how the gradient of the quantized latents reaches the encoder: `"ste"` (straight-through copy) or
            `"rotation"` (the rotation trick of Fifty et al. 2024; see `straight_through`). The forward values are
            the codes either way.
        entropy_weight: weight of the code entropy penalty added to `loss` in training (0 disables it), as in
            MaskGIT's and LlamaGen's VQ: `weight * (mean_n H(p_n) - H(mean_n p_n))` with `p_n = softmax(-||z_n -
            e_k||^2 / T)` over the codes, in nats. The first term keeps each latent near one code, the second
            spreads the batch over the whole codebook: the encoder learns to reach every code (see `entropy_terms`).
        entropy_temperature: the temperature T of that distribution, in squared distance (for l2-normalized codes,
            in units of `2 - 2 cos`).
        entropy_decay_steps: the penalty's weight falls linearly from `entropy_weight` to 0 over this many training
            steps (forwards in training mode: with gradient accumulation, micro-batches; counted in a buffer that
            checkpoints keep), and stays 0 after: the
            penalty spreads the latents over the codebook early, the last steps train for reconstruction alone.
            `None` keeps the weight constant.
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
        gradient: str = "ste",
        entropy_weight: float = 0.0,
        entropy_temperature: float = 0.01,
        entropy_decay_steps: int | None = None,
    ):
        super().__init__()
        check_int("num_embeddings", num_embeddings, minimum=2)
        check_int("embedding_dim", embedding_dim, minimum=1)
        check_float("beta", beta, minimum=0.0)
        check_choice("codebook_update", codebook_update, CODEBOOK_UPDATES)
        check_choice("gradient", gradient, VQ_GRADIENTS)
        check_float("ema_decay", ema_decay, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True)
        check_float("ema_epsilon", ema_epsilon, 0.0, exclusive_minimum=True)
        check_int("kmeans_iters", kmeans_iters, minimum=1)
        check_int("search_chunk_elements", search_chunk_elements, minimum=1)
        check_float("entropy_weight", entropy_weight, minimum=0.0)
        check_float("entropy_temperature", entropy_temperature, 0.0, exclusive_minimum=True)
        if codebook_dim is not None:
            check_int("codebook_dim", codebook_dim, minimum=1, maximum=embedding_dim - 1)
        if dead_code_threshold is not None:
            check_int("dead_code_threshold", dead_code_threshold, minimum=1)
        if entropy_decay_steps is not None:
            check_int("entropy_decay_steps", entropy_decay_steps, minimum=1)

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
        self.gradient = gradient
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature
        self.entropy_decay_steps = entropy_decay_steps

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
        if entropy_decay_steps is not None:
            self.register_buffer("entropy_steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def reset_codebook(self) -> None:
        """Uniform in [-1/K, 1/K], taming's and diffusers' initialization."""
        # nn.init, not Tensor.uniform_: transformers guards nn.init so that weights loaded from a checkpoint stay.
        nn.init.uniform_(self.embedding.weight, -1.0 / self.num_embeddings, 1.0 / self.num_embeddings)
        self._restart_ema_from_codebook()

    @torch.no_grad()
    def init_unloaded_state(self) -> None:
        """transformers' `_init_weights` for this module: initialize what the checkpoint being loaded did not hold,
        keep what it did (transformers marks the tensors it loaded with `_is_hf_initialized`). A fresh model has
        nothing loaded. Without this, the buffers a checkpoint lacks (an older one, or one saved without restarts
        or the entropy schedule) would keep transformers' uninitialized memory, and restarting the EMA from the
        codebook would overwrite the loaded statistics."""

        def loaded(tensor: torch.Tensor) -> bool:
            return getattr(tensor, "_is_hf_initialized", False)

        if not loaded(self.embedding.weight):
            self.reset_codebook()
        elif self.codebook_update == "ema" and not (loaded(self.ema_embed_sum) and loaded(self.ema_cluster_size)):
            self._restart_ema_from_codebook()  # a trained codebook without its statistics: restart them from it
        for name in ("steps_unused", "entropy_steps"):
            if hasattr(self, name) and not loaded(getattr(self, name)):
                getattr(self, name).zero_()

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
            z_q, indices, codebook_loss, commitment_loss, counts = self._quantize(z)
            # The value is exactly z_q, which keeps decode_indices(encode_indices(x)) bit-identical to forward.
            quantized = self._project_out(straight_through(z, z_q, self.gradient))
            perplexity, usage = code_statistics(counts)
            loss = codebook_loss + self.beta * commitment_loss
            entropy_weight = self.current_entropy_weight() if self.training else 0.0
            if entropy_weight > 0:
                per_sample_entropy, batch_entropy = self.entropy_terms(z)
                loss = loss + entropy_weight * (per_sample_entropy - batch_entropy)
            if self.training and self.entropy_decay_steps is not None:
                self.entropy_steps.add_(1)
        return QuantizerOutput(
            quantized=_to_grid(quantized, batch, height, width),
            indices=indices.view(batch, height, width),
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            loss=loss,
            perplexity=perplexity,
            usage=usage,
        )

    def current_entropy_weight(self) -> float:
        """The entropy penalty's weight at this training step (`entropy_weight`, decayed by `entropy_decay_steps`)."""
        if self.entropy_decay_steps is None:
            return self.entropy_weight
        return self.entropy_weight * max(0.0, 1.0 - self.entropy_steps.item() / self.entropy_decay_steps)

    def entropy_terms(self, z: torch.Tensor, top_k: int = ENTROPY_TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean per-sample entropy and the batch entropy (of the mean distribution, over every process's
        latents) of `softmax(-||z - e_k||^2 / T)` for rows z (N, codebook_dim) in codebook space, in nats.

        Each row's distribution is taken over its `top_k` nearest codes (exact when top_k >= K): the codes beyond
        hold `exp(-(d_k - d_1) / T)` of the mass each, e.g. e^-9 for a cosine 0.95 against 0.995 at T = 0.01. The
        gradient reaches z (and the codebook when it learns through its loss)."""
        codebook = self.codebook().to(z.dtype)  # (K, d)
        top_k = min(top_k, self.num_embeddings)
        squared_norms = codebook.pow(2).sum(dim=1)  # (K,); ||z||^2 is the same for every code of a row
        with torch.no_grad():
            # the top_k nearest codes of each row (largest 2 z.e - ||e||^2), by chunks of 2^20 scores: cache-sized
            rows_per_chunk = max(1, 2**20 // self.num_embeddings)
            nearest = torch.cat(
                [
                    torch.addmm(squared_norms, chunk, codebook.t(), beta=-1, alpha=2)
                    .topk(top_k, dim=1, sorted=False)
                    .indices
                    for chunk in z.detach().split(rows_per_chunk)
                ]
            )  # (N, top_k)
        codes = codebook[nearest]  # (N, top_k, d)
        logits = (2 * torch.einsum("nd,nkd->nk", z, codes) - squared_norms[nearest]) / self.entropy_temperature
        log_probs = torch.log_softmax(logits, dim=1)  # (N, top_k)
        probs = log_probs.exp()
        per_sample = -(probs * log_probs).sum(dim=1).mean()
        mass = probs.new_zeros(self.num_embeddings).index_add(0, nearest.reshape(-1), probs.reshape(-1))  # (K,)
        return per_sample, _batch_entropy(mass, z.shape[0], self.training)

    def _quantize(
        self, z: torch.Tensor, maintain: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows z (N, d) in codebook space -> their codes z_q (N, d, differentiable in the codebook), indices (N,),
        the codebook and commitment terms and the code histogram (K,). In training mode the codebook is maintained
        (k-means, restarts) before the search and updated (EMA, dead-code counters) after it, unless `maintain` is
        False (a shared codebook of residual quantization does both once per step over every stage)."""
        maintain = maintain and self.training
        if maintain:
            self._maintain_codebook(z.detach())
        codebook = self.codebook()  # (K, d)
        indices = nearest_codes(z.detach(), codebook.detach(), self.search_chunk_elements)  # (N,)
        z_q = F.embedding(indices, codebook)  # (N, d); differentiable in the codebook
        commitment_loss = F.mse_loss(z, z_q.detach())
        if self.codebook_update == "loss":
            codebook_loss = F.mse_loss(z_q, z.detach())
        else:
            codebook_loss = z.new_zeros(())
        counts = torch.bincount(indices, minlength=self.num_embeddings)  # (K,)
        if maintain:
            self._update_after_step(z.detach(), indices, counts)
        return z_q, indices, codebook_loss, commitment_loss, counts

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
        if self.entropy_weight:
            extras.append(f"entropy_weight={self.entropy_weight}, entropy_temperature={self.entropy_temperature}")
            if self.entropy_decay_steps is not None:
                extras.append(f"entropy_decay_steps={self.entropy_decay_steps}")
        if self.gradient != "ste":
            extras.append(f"gradient={self.gradient!r}")
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


def _bit_table(bits: int, device: torch.device) -> torch.Tensor:
    """(2**bits, bits) float 0/1: row i holds the bits of i, least significant first (LFQ's index layout)."""
    codes = torch.arange(2**bits, device=device).unsqueeze(1)  # (2**bits, 1)
    return ((codes >> torch.arange(bits, device=device)) & 1).float()


class LFQ(nn.Module):
    """Lookup-free quantization (MAGVIT-v2, Yu et al. 2023, sec. 3.1): each of `bits = log2(K)` channels is
    quantized to its sign, so the codebook is the implicit grid `{-s, +s}^bits` and a code's index is the number
    whose bit j is 1 where channel j is positive (channel 0 is the least significant bit). There is no search and no
    codebook to collapse; the gradient passes straight through the signs.

    Its loss is `beta * commitment + entropy_weight * H_sample - diversity_weight * H_batch` (the commitment term and
    MAGVIT-v2's entropy penalty), with `p(c | z) = softmax_c(-||z - c||^2 / temperature)` over the K codes:
    `H_sample`, the mean over latents of the entropy of p(. | z), is pushed down (confident codes); `H_batch`, the
    entropy of the batch's mean distribution `q = E_z[p(. | z)]`, is pushed up (every code used). Entropies are in
    nats. The defaults are Open-MAGVIT2's (entropy loss weight 0.1 on both terms, commitment 0.25, temperature 0.01).

    Neither term materializes the (N, K) matrix of p:
    - `-||z - c||^2 = 2 z.c + const`, so p(c | z) is a product over bits, with `p(bit j = 1 | z) =
      sigmoid(4 s z_j / temperature)`. `H_sample` is therefore exactly the sum of the bits' binary entropies,
      computed from (N, bits) values.
    - q is a mixture of product distributions, under which the bits are dependent: its entropy does not split. The
      bits are cut into `ceil(bits / group_bits)` groups of nearly equal size; each group's marginal q_k (its 2^g
      codes, the batch mean of the group's product distribution, (N, 2^g) per group) is exact, and the computed
      `H_batch = sum_k H(q_k)` is exact with one group (bits <= group_bits, e.g. K <= 1024 at the default 10) and
      otherwise an upper bound of H(q) (subadditivity of entropy), equal to it when the groups are independent
      under q. Raising the bound spreads each group's codes uniformly, but does not by itself forbid groups that
      move together (two groups always taking matching patterns use fewer joint codes than the bound suggests);
      `usage` and `perplexity`, counted over the joint codes, show it. Memory: N * sum_k 2^g floats (N * 1024 for
      2^18 codes in two groups of 9 bits).

    In training with several processes, q is the mean over the whole global batch (a differentiable all-reduce), so
    that the diversity term and its gradient are those of one process holding every rank's latents.

    Args:
        num_embeddings: codebook size K, a power of 2 (at most 2**24).
        embedding_dim: channels of the latents it takes; when it differs from log2(K), learned linear projections
            map to and from the log2(K) binary channels.
        beta: weight of the commitment term `||z - sg[sign(z)]||^2` (on the binary channels).
        entropy_weight: weight of the per-sample entropy (pushed down).
        diversity_weight: weight of the batch entropy (pushed up).
        temperature: temperature of p(c | z); small values make it nearly one-hot.
        group_bits: most bits per group of the batch entropy (at most 16).
        code_scale: s, the magnitude of the codes (codes are -s or +s per channel).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        beta: float = 0.25,
        entropy_weight: float = 0.1,
        diversity_weight: float = 0.1,
        temperature: float = 0.01,
        group_bits: int = 10,
        code_scale: float = 1.0,
    ):
        super().__init__()
        check_int("num_embeddings", num_embeddings, minimum=2, maximum=2**LFQ_MAX_BITS)
        if num_embeddings & (num_embeddings - 1):
            lower, upper = 1 << (num_embeddings.bit_length() - 1), 1 << num_embeddings.bit_length()
            raise UsageError(
                f"`num_embeddings` ({num_embeddings}) must be a power of 2 for LFQ: its codes are the sign patterns "
                f"of log2(K) channels (e.g. {lower} or {upper})"
            )
        check_int("embedding_dim", embedding_dim, minimum=1)
        for name, value in (
            ("beta", beta),
            ("entropy_weight", entropy_weight),
            ("diversity_weight", diversity_weight),
        ):
            check_float(name, value, minimum=0.0)
        check_float("temperature", temperature, 0.0, exclusive_minimum=True)
        check_int("group_bits", group_bits, minimum=1, maximum=LFQ_MAX_GROUP_BITS)
        check_float("code_scale", code_scale, 0.0, exclusive_minimum=True)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.bits = num_embeddings.bit_length() - 1
        self.beta = beta
        self.entropy_weight = entropy_weight
        self.diversity_weight = diversity_weight
        self.temperature = temperature
        self.group_bits = group_bits
        self.code_scale = code_scale
        # Nearly equal groups: `extra` groups of base + 1 bits, the rest of base bits.
        num_groups = -(-self.bits // group_bits)
        base, extra = divmod(self.bits, num_groups)
        self.group_sizes = [base + 1] * extra + [base] * (num_groups - extra)
        self.in_proj = nn.Linear(embedding_dim, self.bits) if embedding_dim != self.bits else None
        self.out_proj = nn.Linear(self.bits, embedding_dim) if embedding_dim != self.bits else None

    def _codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (N,) -> their codes (N, bits) in {-s, +s}."""
        bits = (indices.unsqueeze(1) >> torch.arange(self.bits, device=indices.device)) & 1  # (N, bits)
        return torch.where(bits.bool(), self.code_scale, -self.code_scale)

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-sample entropy (exact) and the grouped batch entropy (exact with one group, else an upper bound)
        of rows z (N, bits) on the binary channels, in nats; see the class docstring."""
        # log p(bit j = 1 | z) - log p(bit j = 0 | z) = (||z - (-s)||^2 - ||z - s||^2) / T along channel j
        logits = z * (4 * self.code_scale / self.temperature)  # (N, bits)
        # binary entropy of sigmoid(a), written stably: softplus(a) - a * sigmoid(a)
        per_sample = (F.softplus(logits) - logits * torch.sigmoid(logits)).sum(dim=1).mean()
        sums, start = [], 0
        for size in self.group_sizes:
            # softmax over the group's 2^g codes of sum_j bit_j * a_j is the product of the bits' probabilities
            group_logits = logits[:, start : start + size] @ _bit_table(size, z.device).to(z.dtype).t()  # (N, 2^g)
            sums.append(torch.softmax(group_logits, dim=1).sum(dim=0))  # (2^g,)
            start += size
        # the entropies of the groups' marginals, summed: one over their concatenation
        return per_sample, _batch_entropy(torch.cat(sums), z.shape[0], self.training)

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> quantized latents (B, embedding_dim, h, w), the same values `forward` gives."""
        check_indices(indices, self.num_embeddings)
        batch, height, width = indices.shape
        with torch.autocast(device_type=indices.device.type, enabled=False):
            rows = self._codes(indices.reshape(-1))  # (N, bits)
            rows = self.out_proj(rows) if self.out_proj is not None else rows
        return _to_grid(rows, batch, height, width)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize latents (B, C, H, W) to the signs of their binary channels."""
        check_feature_maps(latents, "latents", self.embedding_dim, "embedding_dim")
        batch, _, height, width = latents.shape
        with torch.autocast(device_type=latents.device.type, enabled=False):
            z = _to_rows(latents.float())  # (N, C)
            z = self.in_proj(z) if self.in_proj is not None else z  # (N, bits)
            positive = z > 0  # (N, bits)
            codes = torch.where(positive, self.code_scale, -self.code_scale)  # (N, bits)
            shifts = torch.arange(self.bits, device=z.device)
            indices = (positive.long() << shifts).sum(dim=1)  # (N,) int64: the bits packed, channel 0 lowest
            commitment_loss = F.mse_loss(z, codes)
            per_sample_entropy, batch_entropy = self.entropy_terms(z)
            rows = straight_through(z, codes)
            quantized = self.out_proj(rows) if self.out_proj is not None else rows
            counts = _global_counts(torch.bincount(indices, minlength=self.num_embeddings), self.training)
            perplexity, usage = code_statistics(counts)
        loss = (
            self.beta * commitment_loss
            + self.entropy_weight * per_sample_entropy
            - self.diversity_weight * batch_entropy
        )
        return QuantizerOutput(
            quantized=_to_grid(quantized, batch, height, width),
            indices=indices.view(batch, height, width),
            codebook_loss=z.new_zeros(()),
            commitment_loss=commitment_loss,
            loss=loss,
            perplexity=perplexity,
            usage=usage,
        )

    def extra_repr(self) -> str:
        return (
            f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, bits={self.bits}, "
            f"group_sizes={self.group_sizes}, temperature={self.temperature}"
        )


class SimVQ(nn.Module):
    """SimVQ (Zhu et al. 2024, "Addressing Representation Collapse in Vector Quantized Models with One Linear
    Layer"): the codes are a frozen random codebook C (K, D) through a learned linear map, `C W^T + b`. The loss
    moves the map, and with it every code at once, instead of the few codes a batch selects, which is what keeps the
    whole codebook in use.

    The loss is VectorQuantizer's, `||sg[z_e] - e||^2 + beta * ||z_e - sg[e]||^2`, where the codebook term trains
    the map only. The frozen codebook is `embedding` (its weight does not require gradients: no optimizer moves it),
    drawn from N(0, 1 / D) as in the paper's code; the map is `projection`, PyTorch's default initialization.

    Args:
        num_embeddings: codebook size K.
        embedding_dim: channels D of the latents it takes (and of the codes).
        beta: weight of the commitment term.
        gradient: `"ste"` or `"rotation"`, as for `VectorQuantizer`.
        search_chunk_elements: memory bound of the nearest-code search (see `nearest_codes`).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        beta: float = 0.25,
        gradient: str = "ste",
        search_chunk_elements: int = DEFAULT_SEARCH_CHUNK_ELEMENTS,
    ):
        super().__init__()
        check_int("num_embeddings", num_embeddings, minimum=2)
        check_int("embedding_dim", embedding_dim, minimum=1)
        check_float("beta", beta, minimum=0.0)
        check_choice("gradient", gradient, VQ_GRADIENTS)
        check_int("search_chunk_elements", search_chunk_elements, minimum=1)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.beta = beta
        self.gradient = gradient
        self.search_chunk_elements = search_chunk_elements
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        self.embedding.weight.requires_grad_(False)  # frozen: only the map learns
        self.projection = nn.Linear(embedding_dim, embedding_dim)
        self.reset_codebook()

    @torch.no_grad()
    def reset_codebook(self) -> None:
        """The frozen codebook from N(0, 1 / D)."""
        # nn.init, not Tensor.normal_: transformers guards nn.init so that weights loaded from a checkpoint stay.
        nn.init.normal_(self.embedding.weight, mean=0.0, std=self.embedding_dim**-0.5)

    def codebook(self) -> torch.Tensor:
        """The codes searched against, (K, D) float32: the frozen codebook through the map (differentiable in it)."""
        return self.projection(self.embedding.weight.float())

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> quantized latents (B, embedding_dim, h, w), the same values `forward` gives."""
        check_indices(indices, self.num_embeddings)
        batch, height, width = indices.shape
        with torch.autocast(device_type=indices.device.type, enabled=False):
            rows = F.embedding(indices.reshape(-1), self.codebook())
        return _to_grid(rows, batch, height, width)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize latents (B, C, H, W) to their nearest transformed codes."""
        check_feature_maps(latents, "latents", self.embedding_dim, "embedding_dim")
        batch, _, height, width = latents.shape
        with torch.autocast(device_type=latents.device.type, enabled=False):
            z = _to_rows(latents.float())  # (N, D)
            # The whole transformed codebook, (K, D): the search needs it, and gathering from it (rather than mapping
            # the selected rows) gives the values embed_indices gives, bit for bit.
            codebook = self.codebook()
            indices = nearest_codes(z.detach(), codebook.detach(), self.search_chunk_elements)  # (N,)
            z_q = F.embedding(indices, codebook)  # (N, D); differentiable in the map
            codebook_loss = F.mse_loss(z_q, z.detach())
            commitment_loss = F.mse_loss(z, z_q.detach())
            quantized = straight_through(z, z_q, self.gradient)
            counts = _global_counts(torch.bincount(indices, minlength=self.num_embeddings), self.training)
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

    def extra_repr(self) -> str:
        extras = f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, beta={self.beta}"
        return extras + (f", gradient={self.gradient!r}" if self.gradient != "ste" else "")


class ResidualVectorQuantizer(nn.Module):
    """Residual vector quantization (SoundStream, Zeghidour et al. 2021; RQ-VAE, Lee et al. 2022): stage k quantizes
    what the previous stages left, `r_k = z - (e_1 + ... + e_{k-1})`, with a `VectorQuantizer`; the quantized latent
    is the sum of the `depth` codes and each position has `depth` indices, (B, H, W, depth).

    Loss terms are summed over the stages: `codebook_loss = sum_k ||sg[r_k] - e_k||^2`, `commitment_loss =
    sum_k ||r_k - sg[e_k]||^2` (= RQ-VAE's `sum_k ||z - sg[e_1 + ... + e_k]||^2`), `loss = codebook_loss + beta *
    commitment_loss`. The gradient to the latents passes once through the sum (straight-through, or the rotation
    trick from z to the sum), not once per stage.

    Every stage keeps the VectorQuantizer's codebook maintenance (EMA, k-means on its own residuals, restarts), each
    all-reduced across processes. A shared codebook (`shared_codebook=True`, RQ-VAE's choice) is one VectorQuantizer
    searched at every stage; its k-means and restarts draw from the input latents and its EMA and dead-code
    counters take the assignments of every stage, once per step.

    Args:
        num_embeddings: codes K per codebook.
        embedding_dim: channels D of the latents it takes.
        depth: number of stages (indices per position).
        shared_codebook: one codebook for every stage instead of one per stage.
        beta, gradient, codebook_update, ema_decay, ema_epsilon, kmeans_init, kmeans_iters, dead_code_threshold,
            search_chunk_elements: as for `VectorQuantizer`, for every stage (`gradient` acts once, on the sum).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        depth: int = 4,
        shared_codebook: bool = False,
        beta: float = 0.25,
        gradient: str = "ste",
        codebook_update: str = "loss",
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        dead_code_threshold: int | None = None,
        search_chunk_elements: int = DEFAULT_SEARCH_CHUNK_ELEMENTS,
    ):
        super().__init__()
        check_int("depth", depth, minimum=1)
        check_choice("gradient", gradient, VQ_GRADIENTS)
        if not isinstance(shared_codebook, bool):
            raise UsageError(f"`shared_codebook` must be a bool, got {shared_codebook!r}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.depth = depth
        self.shared_codebook = shared_codebook
        self.beta = beta
        self.gradient = gradient
        stage_kwargs = dict(
            beta=beta,
            codebook_update=codebook_update,
            ema_decay=ema_decay,
            ema_epsilon=ema_epsilon,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            dead_code_threshold=dead_code_threshold,
            search_chunk_elements=search_chunk_elements,
        )
        self.stages = nn.ModuleList(
            VectorQuantizer(num_embeddings, embedding_dim, **stage_kwargs)
            for _ in range(1 if shared_codebook else depth)
        )

    def _stage(self, k: int) -> VectorQuantizer:
        return self.stages[0 if self.shared_codebook else k]

    @torch.no_grad()
    def use_pretrained_codebook(self) -> None:
        """Treat every codebook as trained: no k-means over it, EMA restarts from it."""
        for stage in self.stages:
            stage.use_pretrained_codebook()

    def embed_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w, depth) -> quantized latents (B, embedding_dim, h, w), the sum of the stages' codes:
        the same values `forward` gives."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 4 or indices.shape[-1] != self.depth:
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise UsageError(
                f"indices must be a (batch, height, width, {self.depth}) grid of code indices, one per stage of the "
                f"residual quantizer (depth {self.depth}), got shape {shape}"
            )
        check_indices(indices.flatten(2), self.num_embeddings)  # dtype and range; (B, h, w * depth)
        batch, height, width, _ = indices.shape
        with torch.autocast(device_type=indices.device.type, enabled=False):
            flat = indices.reshape(-1, self.depth)  # (N, depth)
            total = torch.zeros(flat.shape[0], self.embedding_dim, device=indices.device)  # (N, D)
            for k in range(self.depth):  # summed in the forward's order, so that the values are the same
                total = total + F.embedding(flat[:, k], self._stage(k).codebook())
        return _to_grid(total, batch, height, width)

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize latents (B, C, H, W) stage by stage on their residuals."""
        check_feature_maps(latents, "latents", self.embedding_dim, "embedding_dim")
        batch, _, height, width = latents.shape
        with torch.autocast(device_type=latents.device.type, enabled=False):
            z = _to_rows(latents.float())  # (N, D)
            shared = self.stages[0] if self.shared_codebook else None
            if shared is not None and self.training:
                shared._maintain_codebook(z.detach())
            residual, total = z, torch.zeros_like(z)  # (N, D) each
            inputs, indices, counts, codebook_losses, commitment_losses = [], [], [], [], []
            for k in range(self.depth):
                # the residual keeps its gradient to z (commitment), the codes taken off it do not
                z_q, stage_indices, codebook_loss, commitment_loss, stage_counts = self._stage(k)._quantize(
                    residual, maintain=shared is None
                )
                inputs.append(residual.detach())
                indices.append(stage_indices)
                counts.append(stage_counts)
                codebook_losses.append(codebook_loss)
                commitment_losses.append(commitment_loss)
                total = total + z_q.detach()
                residual = residual - z_q.detach()
            counts = torch.stack(counts)  # (depth, K)
            if shared is not None and self.training:
                shared._update_after_step(torch.cat(inputs), torch.cat(indices), counts.sum(dim=0))
            quantized = straight_through(z, total, self.gradient)
            # per codebook: the shared one pooled over the stages, else one row per stage
            counts = _global_counts(counts.sum(dim=0, keepdim=True) if shared is not None else counts, self.training)
            perplexity, usage = code_statistics(counts)  # (codebooks, K): the means over the codebooks
            codebook_loss = torch.stack(codebook_losses).sum()
            commitment_loss = torch.stack(commitment_losses).sum()
        return QuantizerOutput(
            quantized=_to_grid(quantized, batch, height, width),
            indices=torch.stack(indices, dim=1).view(batch, height, width, self.depth),
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            loss=codebook_loss + self.beta * commitment_loss,
            perplexity=perplexity,
            usage=usage,
        )

    def extra_repr(self) -> str:
        return f"depth={self.depth}, shared_codebook={self.shared_codebook}, gradient={self.gradient!r}"


Quantizer = VectorQuantizer | FSQ | LFQ | SimVQ | ResidualVectorQuantizer


def build_quantizer(config) -> Quantizer:
    """The quantizer a `QuantizerConfigMixin` config describes, taking `vq_embed_dim`-channel latents."""
    if config.quantizer_type == "fsq":
        return FSQ(config.fsq_levels, embedding_dim=config.vq_embed_dim)
    if config.quantizer_type == "lfq":
        return LFQ(
            config.num_vq_embeddings,
            config.vq_embed_dim,
            beta=config.vq_beta,
            entropy_weight=config.lfq_entropy_weight,
            diversity_weight=config.lfq_diversity_weight,
            temperature=config.lfq_temperature,
            group_bits=config.lfq_group_bits,
            code_scale=config.lfq_code_scale,
        )
    if config.quantizer_type == "simvq":
        return SimVQ(config.num_vq_embeddings, config.vq_embed_dim, beta=config.vq_beta, gradient=config.vq_gradient)
    codebook_kwargs = dict(
        beta=config.vq_beta,
        gradient=config.vq_gradient,
        codebook_update=config.vq_codebook_update,
        ema_decay=config.vq_ema_decay,
        ema_epsilon=config.vq_ema_epsilon,
        kmeans_init=config.vq_kmeans_init,
        dead_code_threshold=config.vq_dead_code_threshold,
    )
    if config.quantizer_type == "residual":
        return ResidualVectorQuantizer(
            config.num_vq_embeddings,
            config.vq_embed_dim,
            depth=config.residual_depth,
            shared_codebook=config.residual_shared_codebook,
            **codebook_kwargs,
        )
    return VectorQuantizer(
        config.num_vq_embeddings,
        config.vq_embed_dim,
        use_l2_norm=config.vq_use_l2_norm,
        codebook_dim=config.vq_codebook_dim,
        entropy_weight=config.vq_entropy_weight,
        entropy_temperature=config.vq_entropy_temperature,
        entropy_decay_steps=config.vq_entropy_decay_steps,
        **codebook_kwargs,
    )
