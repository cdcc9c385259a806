"""Prototypes of a faster exact nearest-code search, measured against `hf_vq.modules.quantizers.nearest_codes`.

Exploration only: nothing here is imported by the package. Each function has the signature of `nearest_codes`,
(N, D) vectors, (K, D) codebook -> (N,) int64 indices of the nearest code in squared euclidean distance.
"""

from __future__ import annotations

import torch


def blocked_argmin(scores: torch.Tensor, block: int, out: torch.Tensor) -> torch.Tensor:
    """`scores.argmin(dim=1)` for (rows, K) scores with K divisible by `block`, in two vectorized steps.

    torch's CPU `argmin` tracks an index per element and is several times slower than `amin`, which vectorizes.
    So: the minimum of each block of `block` codes (`amin`, one pass over the scores), the first block holding the
    row's minimum (`argmin` over K / block values), then the first minimum inside that block (`argmin` over `block`
    values). The result is the index of the first minimum of the row, exactly what `argmin` returns, ties included.
    """
    rows, num_codes = scores.shape
    blocks = scores.view(rows, num_codes // block, block)  # (rows, K / block, block)
    best_block = blocks.amin(dim=2).argmin(dim=1)  # (rows,)
    inside = blocks[torch.arange(rows, device=scores.device), best_block].argmin(dim=1)  # (rows,)
    return torch.add(inside, best_block, alpha=block, out=out)


@torch.no_grad()
def nearest_codes_buffered(
    vectors: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = 2**23, argmin_block: int | None = None
) -> torch.Tensor:
    """The float32 `||e||^2 - 2 z.e` search of `nearest_codes`, writing every chunk into one preallocated buffer.

    Same kernels and same numbers as `nearest_codes` (bit-identical distances, hence identical indices), with
    `addmm(..., out=buffer)` reusing one (chunk, K) block instead of allocating a new one per chunk: a new block of
    more than 32 MiB (glibc's largest mmap threshold) is fresh memory from the kernel, every 4 KiB page of which
    faults and is zeroed on first write, and the old block is still alive while the new one is computed, so the
    peak is two chunks. `argmin_block` replaces the argmin by `blocked_argmin` (same indices) when K is a multiple
    of it.
    """
    vectors, codebook = vectors.float(), codebook.float()
    num_vectors, num_codes = vectors.shape[0], codebook.shape[0]
    codebook_sq = codebook.pow(2).sum(dim=1)  # (K,)
    codebook_t = codebook.t().contiguous()  # (D, K)
    rows = max(1, min(num_vectors, chunk_elements // num_codes))
    distances = torch.empty(rows, num_codes, device=vectors.device)  # (rows, K), reused by every chunk
    indices = torch.empty(num_vectors, dtype=torch.long, device=vectors.device)
    blocked = argmin_block is not None and num_codes % argmin_block == 0
    for start in range(0, num_vectors, rows):
        block = vectors[start : start + rows]
        out = distances[: block.shape[0]]
        torch.addmm(codebook_sq, block, codebook_t, beta=1.0, alpha=-2.0, out=out)  # ||z - e||^2 - ||z||^2
        if blocked:
            blocked_argmin(out, argmin_block, indices[start : start + block.shape[0]])
        else:
            torch.argmin(out, dim=1, out=indices[start : start + block.shape[0]])
    return indices


@torch.no_grad()
def nearest_codes_bf16_rerank(
    vectors: torch.Tensor,
    codebook: torch.Tensor,
    candidates: int = 8,
    chunk_elements: int = 2**22,
    certify: bool = False,
    stats: dict | None = None,
) -> torch.Tensor:
    """Nearest codes from bfloat16 candidate scores, re-ranked exactly in float32.

    1. `||e||^2 - 2 z.e` for all K codes with bfloat16 inputs (about 2-3x the float32 matmul rate on CPUs with
       AVX512-BF16 / AMX), into a reused bfloat16 buffer;
    2. the `candidates` lowest scores per row (`topk`);
    3. the float32 score `||e||^2 - 2 z.e` of each candidate (the same expansion as `nearest_codes`: the direct
       `||z - e||^2` would carry `||z||^2`, whose float32 rounding can exceed the gaps between codes, e.g. for the
       small codes of a freshly initialized codebook), and its argmin.

    The result differs from the exact search only when the true nearest code is not among the candidates. With
    `certify=True` that is ruled out: a non-candidate code's bfloat16 score is at least the largest candidate score,
    and every bfloat16 score `s~` is close to the true `s = ||e||^2 - 2 z.e`:
    `|s~ - s| <= 2^-6 |z||e| + 2^-8 |e|^2`, the sum of the worst cases of rounding z and e to bfloat16 (2 * 2^-8 |z||e|
    by Cauchy-Schwarz), of a bfloat16 rounding of `2 z.e` should the kernel round before adding `||e||^2`
    (2^-8 |z||e|), of rounding `||e||^2` (2^-9 |e|^2) and of rounding the result (2^-9 |s~|); float32 accumulation
    adds ~2^-18. `delta = 1.25 * 2^-6 (|z| max|e| + max|e|^2)` bounds it with room. A row whose best exact
    candidate beats `largest candidate score - delta` is certified; the other rows are searched again with the exact
    float32 search (`nearest_codes_buffered`, same chunk size). `stats["uncertified"]` counts them.
    """
    vectors, codebook = vectors.float(), codebook.float()
    num_vectors, num_codes = vectors.shape[0], codebook.shape[0]
    count = min(candidates, num_codes)
    codebook_sq = codebook.pow(2).sum(dim=1)  # (K,) float32
    codebook_t16 = codebook.t().contiguous().to(torch.bfloat16)  # (D, K)
    codebook_sq16 = codebook_sq.to(torch.bfloat16)
    max_code_norm = codebook_sq.max().sqrt()
    rows = max(1, min(num_vectors, chunk_elements // num_codes))
    scores = torch.empty(rows, num_codes, dtype=torch.bfloat16, device=vectors.device)  # (rows, K), reused
    indices = torch.empty(num_vectors, dtype=torch.long, device=vectors.device)
    redo = []
    for start in range(0, num_vectors, rows):
        block = vectors[start : start + rows]  # (m, D)
        out = scores[: block.shape[0]]
        torch.addmm(codebook_sq16, block.to(torch.bfloat16), codebook_t16, beta=1.0, alpha=-2.0, out=out)
        approx, candidate = out.topk(count, dim=1, largest=False, sorted=False)  # (m, c), (m, c)
        chosen = codebook[candidate]  # (m, c, D)
        exact = codebook_sq[candidate] - 2.0 * torch.einsum("md,mcd->mc", block, chosen)  # (m, c) float32
        best, position = exact.min(dim=1)  # (m,)
        indices[start : start + block.shape[0]] = candidate.gather(1, position.unsqueeze(1)).squeeze(1)
        if certify and count < num_codes:
            block_sq = block.pow(2).sum(dim=1)  # (m,)
            delta = 1.25 * 2.0**-6 * (block_sq.sqrt() * max_code_norm + max_code_norm**2)
            # Float32 rounding of the exact scores (a few ulps of |z||e| + |e|^2): covered by a 2^-20 margin.
            margin = 2.0**-20 * (block_sq + max_code_norm**2)
            certified = approx.float().amax(dim=1) - delta > best + margin
            if not bool(certified.all()):
                redo.append(start + (~certified).nonzero().squeeze(1))
    if redo:
        rows_to_redo = torch.cat(redo)
        indices[rows_to_redo] = nearest_codes_buffered(vectors[rows_to_redo], codebook, chunk_elements)
    if stats is not None:
        stats["uncertified"] = int(sum(part.numel() for part in redo))
    return indices


@torch.no_grad()
def scores_only(vectors: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = 2**22, dtype=torch.float32):
    """Diagnostic, not a search: only the chunked `addmm` of the scores (no argmin), into one reused buffer.

    Its time is the floor of any search built on these chunked matmuls; the gap to a full search is the argmin's.
    """
    vectors, codebook = vectors.to(dtype), codebook.float()
    num_vectors, num_codes = vectors.shape[0], codebook.shape[0]
    codebook_sq = codebook.pow(2).sum(dim=1).to(dtype)  # (K,)
    codebook_t = codebook.t().contiguous().to(dtype)  # (D, K)
    rows = max(1, min(num_vectors, chunk_elements // num_codes))
    scores = torch.empty(rows, num_codes, dtype=dtype, device=vectors.device)
    for start in range(0, num_vectors, rows):
        block = vectors[start : start + rows]
        torch.addmm(codebook_sq, block, codebook_t, beta=1.0, alpha=-2.0, out=scores[: block.shape[0]])
