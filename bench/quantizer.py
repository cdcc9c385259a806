"""Section `quantizer`: nearest-code search and vector-quantizer forward, hf_vq against diffusers.

Ours: `hf_vq.modules.nearest_codes` (chunked float32 `addmm` of `||e||^2 - 2 z.e`, then an argmin) and
`hf_vq.VectorQuantizer`. Peer: `torch.cdist(z, e).argmin(1)`, the search inside diffusers' `VectorQuantizer`, and
that quantizer's forward; both quantizers hold the same codebook. Every case is timed in a child process of its own
and every method's peak memory measured in another (`common.run_isolated`), so that no method inherits another's
allocator state. At N = 65,536, `nearest_codes` is also timed at other chunk sizes.
"""

from __future__ import annotations

import torch
from common import (
    Timing,
    format_bytes,
    minor_page_faults,
    peak_rss_above_baseline,
    run_isolated,
    summary_row,
    table,
    time_interleaved,
)

TITLE = "Nearest-code search and vector quantizer (hf_vq vs diffusers)"
DIM = 64
SIDE = 16  # latents (N / 256, 64, 16, 16)
FULL_CASES = [(n, k) for n in (4096, 65536) for k in (1024, 16384)]
QUICK_CASES = [(4096, 1024)]
CHUNK_POWERS = (20, 22, 26)  # besides the default, 2^23
DISTRIBUTIONS = {
    "gaussian": "z, e ~ N(0, 1): codes spread like the latents (the timed data)",
    "fresh": "e ~ U(-1/K, 1/K), the initialization of diffusers, taming and hf_vq; z ~ N(0, 1): near-ties everywhere",
    "clustered": "z = a random code + N(0, 0.3^2) noise, e ~ N(0, 1): a trained quantizer's regime",
}
METHODS = ("search_ours", "search_cdist", "forward_ours", "forward_diffusers")
PAIRS = (("search_ours", "search_cdist", "search"), ("forward_ours", "forward_diffusers", "forward"))
LABELS = {
    "search_ours": "nearest_codes (the default), chunk 2^23",
    "search_cdist": "torch.cdist(z, e).argmin(1) (diffusers)",
    **{f"chunk_{power}": f"nearest_codes, chunk 2^{power}" for power in CHUNK_POWERS},
}


def make_inputs(n: int, k: int, distribution: str = "gaussian", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (N, 64) and a codebook (K, 64), float32, drawn as `DISTRIBUTIONS` says."""
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(k, DIM, generator=generator)
    vectors = torch.randn(n, DIM, generator=generator)
    if distribution == "fresh":
        codebook = (torch.rand(k, DIM, generator=generator) * 2 - 1) / k
    elif distribution == "clustered":
        owners = torch.randint(k, (n,), generator=generator)
        vectors = codebook[owners] + 0.3 * torch.randn(n, DIM, generator=generator)
    return vectors, codebook


@torch.no_grad()
def exact_scores(vectors: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
    """Float64 `||e||^2 - 2 z.e` of the float32 inputs: with `indices` (N,), the score of each vector's given code;
    without, the exact nearest code per vector (float64 holds float32 products and sums with ~29 bits to spare)."""
    vectors, codebook = vectors.double(), codebook.double()
    codebook_sq = codebook.pow(2).sum(dim=1)  # (K,)
    if indices is not None:
        return codebook_sq[indices] - 2 * (vectors * codebook[indices]).sum(dim=1)
    rows = max(1, 2**23 // codebook.shape[0])  # 64 MiB float64 blocks
    best = torch.empty(vectors.shape[0], dtype=torch.long)
    for start in range(0, vectors.shape[0], rows):
        scores = torch.addmm(codebook_sq, vectors[start : start + rows], codebook.t(), alpha=-2.0)  # (rows, K)
        best[start : start + rows] = scores.argmin(dim=1)
    return best


def compare(indices: torch.Tensor, reference: torch.Tensor, vectors: torch.Tensor, codebook: torch.Tensor) -> dict:
    """Mismatches of `indices` against the exact search (exact ties counted apart), and the largest excess distance
    of a mismatched code relative to the squared distance d."""
    indices = indices.reshape(-1)
    rows = (indices != reference).nonzero().squeeze(1)
    if rows.numel() == 0:
        return {"mismatches": 0, "ties": 0, "max_excess": 0.0}
    best = exact_scores(vectors[rows], codebook, reference[rows])
    excess = exact_scores(vectors[rows], codebook, indices[rows]) - best
    distance = vectors[rows].double().pow(2).sum(dim=1) + best
    ties = int((excess == 0).sum())
    return {
        "mismatches": int(rows.numel()) - ties,
        "ties": ties,
        "max_excess": float((excess / distance.clamp(min=1e-300)).max()),
    }


def mismatch_cell(result: dict) -> str:
    cell = str(result["mismatches"])
    if result["mismatches"]:
        cell += f" (max excess {result['max_excess']:.1e} of d)"
    if result["ties"]:
        cell += f" + {result['ties']} exact ties"
    return cell


def build_method(name: str, vectors: torch.Tensor, codebook: torch.Tensor):
    """A call of method `name` on these inputs, returning its indices (N,)."""
    from hf_vq.modules import nearest_codes

    if name == "search_cdist":
        return lambda: torch.cdist(vectors, codebook).argmin(dim=1)
    if name == "search_ours":
        return lambda: nearest_codes(vectors, codebook)
    if name.startswith("chunk_"):
        return lambda: nearest_codes(vectors, codebook, 2 ** int(name.split("_")[1]))
    batch = vectors.shape[0] // (SIDE * SIDE)
    latents = vectors.view(batch, SIDE, SIDE, DIM).permute(0, 3, 1, 2).contiguous()  # rows in (B, H, W) order
    if name == "forward_ours":
        from hf_vq import VectorQuantizer

        quantizer = VectorQuantizer(codebook.shape[0], DIM, beta=0.25).eval()
    else:
        from diffusers.models.autoencoders.vae import VectorQuantizer as DiffusersVectorQuantizer

        quantizer = DiffusersVectorQuantizer(n_e=codebook.shape[0], vq_embed_dim=DIM, beta=0.25).eval()
    with torch.no_grad():
        quantizer.embedding.weight.copy_(codebook)

    @torch.no_grad()
    def forward() -> torch.Tensor:
        output = quantizer(latents)
        # diffusers: (z_q, loss, (perplexity, min_encodings, min_encoding_indices))
        return output.indices if name == "forward_ours" else output[2][2]

    return forward


# ----- worker entry points (each runs in a child process of its own) -----


def time_case(n: int, k: int, names: list[str], repeats: int, budget_s: float) -> dict:
    """The methods `names` interleaved on gaussian data: times, page faults per call, and mismatches against the
    exact search."""
    vectors, codebook = make_inputs(n, k)
    outputs, faults = {}, {name: [] for name in names}

    def call(name: str):
        function = build_method(name, vectors, codebook)

        def run() -> None:
            before = minor_page_faults()
            outputs[name] = function()
            faults[name].append(minor_page_faults() - before)

        return run

    timings = time_interleaved({name: call(name) for name in names}, repeats, budget_s=budget_s)
    reference = exact_scores(vectors, codebook)
    return {
        name: {
            "times": timings[name].times,
            "faults": sorted(faults[name])[len(faults[name]) // 2],
            "exactness": compare(outputs[name], reference, vectors, codebook),
        }
        for name in names
    }


def peak_case(n: int, k: int, method: str) -> int:
    vectors, codebook = make_inputs(n, k)
    return peak_rss_above_baseline(build_method(method, vectors, codebook))["peak_bytes"]


def exactness_data(n: int, k: int) -> dict:
    """Mismatches of both searches against the exact search on every kind of data (the non-gaussian: another seed)."""
    results = {}
    for distribution in DISTRIBUTIONS:
        vectors, codebook = make_inputs(n, k, distribution, seed=int(distribution != "gaussian"))
        reference = exact_scores(vectors, codebook)
        for name in ("search_ours", "search_cdist"):
            indices = build_method(name, vectors, codebook)()
            results.setdefault(name, {})[distribution] = compare(indices, reference, vectors, codebook)
    return results


# ----- the section -----


def run(quick: bool, context: dict) -> dict:
    fp32, bf16 = context["matmul"]["float32"], context["matmul"]["bfloat16"]
    cases = QUICK_CASES if quick else FULL_CASES
    rows, summary = [], []
    for n, k in cases:
        print(f"[quantizer] N={n} K={k}: timing and peak memory", flush=True)
        timed = run_isolated("quantizer:time_case", n=n, k=k, names=METHODS, repeats=5, budget_s=240)
        peaks = {name: run_isolated("quantizer:peak_case", n=n, k=k, method=name) for name in METHODS}
        flops = 2 * n * k * DIM
        floor = f"{flops / fp32['median_gflops'] / 1e9:.3f} / {flops / bf16['median_gflops'] / 1e9:.3f}"
        for ours, peer, label in PAIRS:
            ours_t, peer_t = Timing(timed[ours]["times"]), Timing(timed[peer]["times"])
            speedup, exactness = peer_t.median / ours_t.median, timed[ours]["exactness"]
            mismatches = f"{mismatch_cell(exactness)} / {mismatch_cell(timed[peer]['exactness'])}"
            ours_peak, peer_peak = format_bytes(peaks[ours]), format_bytes(peaks[peer])
            rows.append([
                f"{n} x {k}", label, ours_t.cell(), peer_t.cell(), f"**{speedup:.2f}x**", ours_peak, peer_peak,
                mismatches, f"{ours_t.runs} / {peer_t.runs}", floor,
            ])  # fmt: skip
            if (n, k) == cases[-1]:
                summary.append(summary_row(
                    f"quantizer {label}, {n:,} x {k:,}, against diffusers",
                    f"{speedup:.2f}x; peak memory {ours_peak} vs {peer_peak}; {mismatch_cell(exactness)} indices "
                    "differing from the exact search",
                    ">= 2x, memory bounded by the chunk, exact indices",
                    speedup >= 2 and exactness["mismatches"] == 0,
                ))  # fmt: skip
    threads = f"Torch threads: {torch.get_num_threads()} (set explicitly with torch.set_num_threads). "
    rates = (
        f"Matmul rates measured at the start of this run ({fp32['size']}^3, median of {fp32['runs']}): float32 "
        f"{fp32['median_gflops']:.0f} GFLOP/s, bfloat16 {bf16['median_gflops']:.0f} GFLOP/s."
    )
    parts = [
        {"text": threads + rates + "\n\n" + INTRO},
        {"heading": "hf_vq vs diffusers", "table": table(MAIN_HEADERS, rows)},
        {"text": NOTES},
    ]
    # The chunk sizes at N = 65,536, the largest K first (with peak memory); exactness on all data at the largest.
    for n, k in cases[::-1]:
        if quick or n == 65536:
            parts.append(chunk_part(n, k, peaks if (n, k) == cases[-1] else {}))
    n, k = cases[-1]
    print(f"[quantizer] N={n} K={k}: exactness on three kinds of data", flush=True)
    other = run_isolated("quantizer:exactness_data", n=n, k=k)
    kinds = "\n".join(f"`{name}`: {text};" for name, text in DISTRIBUTIONS.items())
    exactness = [[LABELS[name], *map(mismatch_cell, results.values())] for name, results in other.items()]
    parts.append({
        "heading": f"Exactness on three kinds of data, N = {n}, K = {k}",
        "text": kinds + "\nthe non-gaussian sets use another seed.",
        "table": table(EXACTNESS_HEADERS, exactness),
    })  # fmt: skip
    return {"title": TITLE, "parts": parts, "summary": summary}


def chunk_part(n: int, k: int, peaks: dict) -> dict:
    """`nearest_codes` at every chunk size and diffusers' search, timed together; with `peaks` (the methods' peak
    memory), the peak memory of every chunk size too."""
    print(f"[quantizer] N={n} K={k}: chunk sizes", flush=True)
    names = ["search_ours", *(f"chunk_{power}" for power in CHUNK_POWERS), "search_cdist"]
    timed = run_isolated("quantizer:time_case", n=n, k=k, names=names, repeats=5, budget_s=240)
    if peaks:
        peaks = {**peaks, **{name: run_isolated("quantizer:peak_case", n=n, k=k, method=name) for name in names[1:-1]}}
    default, cdist = Timing(timed["search_ours"]["times"]).median, Timing(timed["search_cdist"]["times"]).median
    rows = []
    for name in names:
        timing = Timing(timed[name]["times"])
        chunk = n * k if name == "search_cdist" else 2 ** int(name.split("_")[1]) if "chunk" in name else 2**23
        rows.append([
            LABELS[name], f"{min(n, chunk // k)} rows", timing.cell(), f"{default / timing.median:.2f}x",
            f"{cdist / timing.median:.2f}x", format_bytes(peaks[name]) if name in peaks else "-",
            f"{timed[name]['faults']:,}", mismatch_cell(timed[name]["exactness"]), timing.runs,
        ])  # fmt: skip
    heading = f"Chunk size of `nearest_codes`, N = {n}, K = {k}"
    return {"heading": heading, "text": CHUNK_TEXT if peaks else None, "table": table(CHUNK_HEADERS, rows)}


MAIN_HEADERS = [
    "N x K",
    "operation",
    "hf_vq s, median (min-max)",
    "diffusers s, median (min-max)",
    "speed-up (ratio of medians)",
    "hf_vq peak memory",
    "diffusers peak memory",
    "mismatches vs exact: hf_vq / diffusers",
    "runs: hf_vq / diffusers",
    "matmul floor s: fp32 / bf16",
]
CHUNK_HEADERS = [
    "search",
    "chunk",
    "time s, median (min-max)",
    "speed-up vs the default",
    "speed-up vs diffusers' cdist",
    "peak memory",
    "page faults / call",
    "mismatches vs exact",
    "runs",
]
EXACTNESS_HEADERS = ["search", *(f"mismatches: {name}" for name in DISTRIBUTIONS)]

INTRO = """\
Vectors of dimension 64, N vectors against K codes, float32, z, e ~ N(0, 1). *Search* is the nearest-code search
alone: `hf_vq.modules.nearest_codes(z, e)` (one reused buffer of at most 2^23 distances written by `addmm` of
`||e||^2 - 2 z.e`, and a blocked argmin on the CPU) against `torch.cdist(z, e).argmin(1)`, the search inside
diffusers' `VectorQuantizer`. *Forward* is the whole quantizer in eval mode under `torch.no_grad()`:
`hf_vq.VectorQuantizer(K, 64)` against `diffusers.models.autoencoders.vae.VectorQuantizer(n_e=K, vq_embed_dim=64,
beta=0.25)`, on latents (N / 256, 64, 16, 16) built from the same vectors, both holding the same codebook.

- **Time**: one warm-up call of each method, then 5 rounds that call every method once in turn (interleaved, so that
  the background load of this shared machine falls on all alike); median (min-max) of the rounds' wall times. The
  speed-up is the ratio of the medians. A case too slow to repeat within its time budget shows fewer runs.
- **Peak memory**: each method in a child process of its own, after the inputs exist and one warm-up call: the
  kernel's resident-set high-water mark is reset (`/proc/self/clear_refs`, after glibc's `malloc_trim(0)`), the
  method runs once, and the figure is `VmHWM - VmRSS` from `/proc/self/status`: the resident memory the call added
  at its peak, outputs included, inputs and the interpreter excluded.
- **Exactness**: indices compared with the exact search, the argmin of `||e||^2 - 2 z.e` evaluated in float64 from
  the float32 inputs. A mismatch means the method chose a code that is truly farther; `max excess` is by how much,
  relative to the squared distance d. Exact ties (equal float64 scores) would be listed apart.
- **Floor**: `2 N K D` flops at the float32 / bfloat16 rate of a large square matmul measured in the same run: the
  search cannot be faster than its matmul."""

NOTES = """\
Both searches run in float32; diffusers' `cdist` adds `||z||^2` and takes a square root before the argmin, and the
float32 rounding of `||z||^2` hides the small gaps between the codes of a freshly initialized codebook (the `fresh`
data below), while hf_vq's expansion leaves `||z||^2` out of the comparison."""

CHUNK_TEXT = """\
`nearest_codes(z, e, chunk_elements)` at other chunk sizes, timed interleaved with the default and diffusers' search
in a child process of their own, on the gaussian data; *chunk* gives the rows per chunk (chunk elements / K). Page
faults are per call (median of the timed calls): a chunk above 32 MiB (glibc's largest mmap threshold) is fresh
memory from the kernel at every call. Peak memory as in the table above, at the largest case only."""
