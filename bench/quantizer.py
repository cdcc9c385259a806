"""Section `quantizer`: nearest-code search and vector-quantizer forward, hf_vq against diffusers.

Ours: `hf_vq.modules.quantizers.nearest_codes` (chunked float32 `addmm` of `||e||^2 - 2 z.e`, then `argmin`) and
`hf_vq.VectorQuantizer`. Peer: `torch.cdist(z, e).argmin(1)`, which is what diffusers' `VectorQuantizer` runs, and
that quantizer's forward. Both quantizers get the same codebook and the same latents (B, 64, 16, 16), B*H*W = N.

Every measured case runs in child processes (`common.run_isolated`): one times ours and the peer interleaved and
checks exactness, and one per method measures peak memory, so that no method inherits another's allocator state.
"""

from __future__ import annotations

import torch
from common import (
    Timing,
    format_bytes,
    machine_info,
    markdown_table,
    minor_page_faults,
    peak_rss_above_baseline,
    run_isolated,
    set_threads,
    summary_comment,
    summary_row,
    time_interleaved,
)

TITLE = "Nearest-code search and vector quantizer (hf_vq vs diffusers)"
PRELOAD = ("hf_vq", "diffusers.models.autoencoders.vae", "search_prototypes")
DIM = 64
SIDE = 16  # latents (N / 256, 64, 16, 16)
FULL_CASES = [(n, k) for n in (4096, 65536) for k in (1024, 16384)]
QUICK_CASES = [(4096, 1024)]
FULL_PROTOTYPE_CASES = [(65536, 16384), (65536, 1024)]
QUICK_PROTOTYPE_CASES = [(4096, 1024)]
DISTRIBUTIONS = {
    "gaussian": "z, e ~ N(0, 1): codes spread like the latents (the timed data)",
    "fresh": "e ~ U(-1/K, 1/K), the initialization of diffusers, taming and hf_vq; z ~ N(0, 1): near-ties everywhere",
    "clustered": "z = a random code + N(0, 0.3^2) noise, e ~ N(0, 1): a trained quantizer's regime",
}
SEARCH_METHODS = ("search_ours", "search_cdist")
FORWARD_METHODS = ("forward_ours", "forward_diffusers")


# ----- inputs and the exact reference -----


def make_inputs(n: int, k: int, distribution: str = "gaussian", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (N, 64) and a codebook (K, 64), float32."""
    generator = torch.Generator().manual_seed(seed)
    codebook = torch.randn(k, DIM, generator=generator)
    vectors = torch.randn(n, DIM, generator=generator)
    if distribution == "fresh":
        codebook = (torch.rand(k, DIM, generator=generator) * 2 - 1) / k
    elif distribution == "clustered":
        owners = torch.randint(k, (n,), generator=generator)
        vectors = codebook[owners] + 0.3 * torch.randn(n, DIM, generator=generator)
    elif distribution != "gaussian":
        raise ValueError(f"distribution must be one of {sorted(DISTRIBUTIONS)}, got {distribution!r}")
    return vectors, codebook


def as_latents(vectors: torch.Tensor) -> torch.Tensor:
    """(N, 64) -> (N / 256, 64, 16, 16) latents whose rows, in the quantizers' (B, H, W) order, are the vectors."""
    batch = vectors.shape[0] // (SIDE * SIDE)
    return vectors.view(batch, SIDE, SIDE, DIM).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def exact_scores(vectors: torch.Tensor, codebook: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
    """Float64 `||e||^2 - 2 z.e` (the squared distance minus `||z||^2`) of the float32 inputs.

    With `indices` (N,), the score of each vector's given code; without, the exact nearest code's index per vector.
    Float64 carries the products and sums of float32 inputs with ~29 spare bits, so this is the exact float32
    search: it differs from exact arithmetic only for codes whose distances agree to ~1e-16 relative (true ties).
    """
    vectors, codebook = vectors.double(), codebook.double()
    codebook_sq = codebook.pow(2).sum(dim=1)  # (K,)
    if indices is not None:
        chosen = codebook[indices]  # (N, D)
        return codebook_sq[indices] - 2 * (vectors * chosen).sum(dim=1)
    rows = max(1, 2**23 // codebook.shape[0])  # 64 MiB float64 blocks
    best = torch.empty(vectors.shape[0], dtype=torch.long)
    for start in range(0, vectors.shape[0], rows):
        scores = torch.addmm(codebook_sq, vectors[start : start + rows], codebook.t(), alpha=-2.0)  # (rows, K)
        best[start : start + rows] = scores.argmin(dim=1)
    return best


def compare(indices: torch.Tensor, reference: torch.Tensor, vectors: torch.Tensor, codebook: torch.Tensor) -> dict:
    """Mismatches of `indices` against the exact search; exact ties (equal float64 scores) are counted apart."""
    indices = indices.reshape(-1)
    differ = indices != reference
    if not bool(differ.any()):
        return {"mismatches": 0, "ties": 0, "max_excess": 0.0}
    rows = differ.nonzero().squeeze(1)
    got = exact_scores(vectors[rows], codebook, indices[rows])
    best = exact_scores(vectors[rows], codebook, reference[rows])
    excess = got - best  # >= 0: how much farther the chosen code is
    # Relative to the squared distance itself, ||z||^2 + score: the scale at which float32 rounds it.
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


# ----- the methods -----


def build_method(name: str, vectors: torch.Tensor, codebook: torch.Tensor):
    """A no-argument callable running `name` on these inputs; imports only what that method needs."""
    if name == "search_cdist":
        return lambda: torch.cdist(vectors, codebook).argmin(dim=1)
    if name == "search_ours":
        from hf_vq.modules.quantizers import nearest_codes

        return lambda: nearest_codes(vectors, codebook)
    latents = as_latents(vectors)
    if name == "forward_ours":
        from hf_vq import VectorQuantizer

        quantizer = VectorQuantizer(codebook.shape[0], DIM, beta=0.25).eval()
    elif name == "forward_diffusers":
        from diffusers.models.autoencoders.vae import VectorQuantizer as DiffusersVectorQuantizer

        quantizer = DiffusersVectorQuantizer(n_e=codebook.shape[0], vq_embed_dim=DIM, beta=0.25).eval()
    else:
        raise ValueError(f"unknown method {name!r}")
    with torch.no_grad():
        quantizer.embedding.weight.copy_(codebook)

    def forward():
        with torch.no_grad():
            return quantizer(latents)

    return forward


def method_indices(name: str, output) -> torch.Tensor:
    if name.startswith("search"):
        return output
    if name == "forward_ours":
        return output.indices.reshape(-1)
    return output[2][2].reshape(-1)  # diffusers: (z_q, loss, (perplexity, min_encodings, min_encoding_indices))


CDIST_NAME = "torch.cdist(z, e).argmin(1) (diffusers)"
DIAGNOSTIC = "diagnostic:"
# Variants that do the default's arithmetic and argmin row by row (bit-identical scores): their exactness is
# checked on the gaussian data only, which saves a minute of the section's time budget.
REPEATED_ARITHMETIC = ("nearest_codes, chunk", "buffered fp32, chunk")
ARGMIN_BLOCK = 128  # codes per block of `blocked_argmin`; 64-256 measured alike, 16 and 1024 slower


def prototype_methods(vectors: torch.Tensor, codebook: torch.Tensor, quick: bool) -> dict:
    """Name -> (callable, chunk elements, stats dict or None) of the search variants explored."""
    from search_prototypes import nearest_codes_bf16_rerank, nearest_codes_buffered, scores_only

    from hf_vq.modules.quantizers import nearest_codes

    methods = {}
    for power in (23,) if quick else (23, 20, 22, 26):
        label = "nearest_codes (the default)" if power == 23 else "nearest_codes"
        methods[f"{label}, chunk 2^{power}"] = (lambda p=power: nearest_codes(vectors, codebook, 2**p), 2**power, None)
    for power in (23,) if quick else (22,):
        methods[f"buffered fp32, chunk 2^{power}"] = (
            lambda p=power: nearest_codes_buffered(vectors, codebook, 2**p),
            2**power,
            None,
        )
    for power in (23,) if quick else (22, 23, 24):
        methods[f"buffered fp32 + blocked argmin, chunk 2^{power}"] = (
            lambda p=power: nearest_codes_buffered(vectors, codebook, 2**p, argmin_block=ARGMIN_BLOCK),
            2**power,
            None,
        )
    variants = [(8, True)] if quick else [(4, False), (8, True), (16, True)]
    for count, certify in variants:
        stats = {} if certify else None
        name = f"bf16 top-{count} + fp32 re-rank{', certified' if certify else ''}, chunk 2^22"
        methods[name] = (
            lambda c=count, cert=certify, s=stats: nearest_codes_bf16_rerank(
                vectors, codebook, candidates=c, chunk_elements=2**22, certify=cert, stats=s
            ),
            2**22,
            stats,
        )
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        methods[f"{DIAGNOSTIC} {label} addmm alone (no argmin), buffered, chunk 2^22"] = (
            lambda d=dtype: scores_only(vectors, codebook, 2**22, d),
            2**22,
            None,
        )
    return methods


# ----- worker entry points (each runs in its own child process) -----


def time_case(n: int, k: int, repeats: int, budget_s: float) -> dict:
    """Ours and the peer interleaved, on gaussian data; plus every method's mismatches against the exact search."""
    set_threads()
    vectors, codebook = make_inputs(n, k)
    methods = {name: build_method(name, vectors, codebook) for name in SEARCH_METHODS + FORWARD_METHODS}
    outputs = {}

    def keep(name, function):
        def call():
            outputs[name] = function()

        return call

    timings = time_interleaved({name: keep(name, fn) for name, fn in methods.items()}, repeats, budget_s=budget_s)
    reference = exact_scores(vectors, codebook)
    return {
        "background_cores": next(iter(timings.values())).background_cores,
        "methods": {
            name: {
                "times": timings[name].times,
                "exactness": compare(method_indices(name, outputs[name]), reference, vectors, codebook),
            }
            for name in methods
        },
    }


def peak_case(n: int, k: int, method: str) -> dict:
    set_threads()
    vectors, codebook = make_inputs(n, k)
    return peak_rss_above_baseline(build_method(method, vectors, codebook))


def time_prototypes(n: int, k: int, repeats: int, budget_s: float, quick: bool) -> dict:
    """The search variants and diffusers' search interleaved on gaussian data, with page faults and mismatches."""
    set_threads()
    vectors, codebook = make_inputs(n, k)
    methods = prototype_methods(vectors, codebook, quick)
    methods[CDIST_NAME] = (build_method("search_cdist", vectors, codebook), n * k, None)
    outputs, faults = {}, {name: [] for name in methods}

    def keep(name, function):
        def call():
            before = minor_page_faults()
            outputs[name] = function()
            faults[name].append(minor_page_faults() - before)

        return call

    timings = time_interleaved({name: keep(name, m[0]) for name, m in methods.items()}, repeats, budget_s=budget_s)
    reference = exact_scores(vectors, codebook)
    variants = {}
    for name, (_, chunk, stats) in methods.items():
        variants[name] = {
            "times": timings[name].times,
            "chunk": chunk,
            "faults": sorted(faults[name])[len(faults[name]) // 2],
            "exactness": None if outputs[name] is None else compare(outputs[name], reference, vectors, codebook),
            "uncertified": None if stats is None else stats["uncertified"],  # of the last call
        }
    return {"background_cores": next(iter(timings.values())).background_cores, "variants": variants}


def exactness_prototypes(n: int, k: int, quick: bool) -> dict:
    """Mismatches of the peer and of every variant on the non-gaussian distributions (gaussian: `time_prototypes`)."""
    set_threads()
    results: dict = {}
    for distribution in DISTRIBUTIONS:
        if distribution == "gaussian":
            continue
        vectors, codebook = make_inputs(n, k, distribution, seed=1)
        reference = exact_scores(vectors, codebook)
        methods = prototype_methods(vectors, codebook, quick)
        methods[CDIST_NAME] = (build_method("search_cdist", vectors, codebook), 0, None)
        for name, (function, _, stats) in methods.items():
            if name.startswith(DIAGNOSTIC) or name.startswith(REPEATED_ARITHMETIC):
                continue
            results.setdefault(name, {})[distribution] = {
                "exactness": compare(function(), reference, vectors, codebook),
                "uncertified": None if stats is None else stats["uncertified"],
            }
    return results


def peak_prototype(n: int, k: int, name: str, quick: bool) -> dict:
    set_threads()
    vectors, codebook = make_inputs(n, k)
    return peak_rss_above_baseline(prototype_methods(vectors, codebook, quick)[name][0])


# ----- the section -----


def background_cell(cores: float | None) -> str:
    return "-" if cores is None else f"{cores:.2f}"


def _main_table(cases: list, repeats: int, fp32_gflops: float, bf16_gflops: float) -> tuple[str, list[dict]]:
    """The hf_vq-vs-diffusers table, and the summary rows of its largest case (the issue's goal: >= 2x diffusers
    at N = 65,536, K = 16,384, peak memory bounded by the search's chunk, no index differing from the exact one)."""
    rows, summary = [], []
    for n, k in cases:
        print(f"[quantizer] N={n} K={k}: timing", flush=True)
        timed = run_isolated("quantizer:time_case", n=n, k=k, repeats=repeats, budget_s=240)
        methods = timed["methods"]
        peaks = {}
        for method in SEARCH_METHODS + FORWARD_METHODS:
            print(f"[quantizer] N={n} K={k}: peak memory of {method}", flush=True)
            peaks[method] = run_isolated("quantizer:peak_case", n=n, k=k, method=method)["peak_bytes"]
        flops = 2 * n * k * DIM
        floor = f"{flops / fp32_gflops / 1e9:.3f} / {flops / bf16_gflops / 1e9:.3f}"
        for ours, peer, label in (
            ("search_ours", "search_cdist", "search"),
            ("forward_ours", "forward_diffusers", "forward"),
        ):
            ours_t, peer_t = Timing(methods[ours]["times"]), Timing(methods[peer]["times"])
            if (n, k) == cases[-1]:
                speedup, exact = peer_t.median / ours_t.median, methods[ours]["exactness"]["mismatches"] == 0
                summary.append(summary_row(
                    f"quantizer {label}, {n:,} x {k:,}, against diffusers",
                    f"{speedup:.2f}x; peak memory {format_bytes(peaks[ours])} vs {format_bytes(peaks[peer])}; "
                    f"{mismatch_cell(methods[ours]['exactness'])} indices differing from the exact search",
                    ">= 2x, memory bounded by the chunk, exact indices", speedup >= 2 and exact,
                ))  # fmt: skip
            rows.append(
                [
                    f"{n} x {k}",
                    label,
                    ours_t.cell(),
                    peer_t.cell(),
                    f"**{peer_t.median / ours_t.median:.2f}x**",
                    format_bytes(peaks[ours]),
                    format_bytes(peaks[peer]),
                    f"{mismatch_cell(methods[ours]['exactness'])} / {mismatch_cell(methods[peer]['exactness'])}",
                    f"{ours_t.runs} / {peer_t.runs}",
                    floor,
                    background_cell(timed["background_cores"]),
                ]
            )
    headers = [
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
        "other processes' load (cores)",
    ]
    return markdown_table(headers, rows), summary


def _speed_table(n: int, k: int, timed: dict, peaks: dict) -> str:
    variants = timed["variants"]
    default = Timing(next(iter(variants.values()))["times"])
    cdist = Timing(variants[CDIST_NAME]["times"])
    rows = []
    for name, result in variants.items():
        timing = Timing(result["times"])
        rows.append(
            [
                name,
                f"{min(n, result['chunk'] // k)} rows",
                timing.cell(),
                f"{default.median / timing.median:.2f}x",
                f"{cdist.median / timing.median:.2f}x",
                format_bytes(peaks[name]) if name in peaks else "-",
                f"{result['faults']:,}",
                "n/a" if result["exactness"] is None else mismatch_cell(result["exactness"]),
                str(timing.runs),
            ]
        )
    headers = [
        "variant",
        "chunk",
        "time s, median (min-max)",
        "speed-up vs the default",
        "speed-up vs diffusers' cdist",
        "peak memory",
        "page faults / call",
        "mismatches vs exact",
        "runs",
    ]
    return (
        f"#### Speed, N = {n}, K = {k} (gaussian data; other processes kept "
        f"{background_cell(timed['background_cores'])} cores busy meanwhile)\n\n" + markdown_table(headers, rows)
    )


def _exactness_table(n: int, k: int, timed: dict, extra: dict) -> str:
    rows = []
    for name, result in timed["variants"].items():
        if name.startswith(DIAGNOSTIC):
            continue
        per_set = {"gaussian": result, **extra.get(name, {})}
        cells = [mismatch_cell(per_set[d]["exactness"]) if d in per_set else "not run" for d in DISTRIBUTIONS]
        searched = [per_set[d]["uncertified"] if d in per_set else None for d in DISTRIBUTIONS]
        rows.append([name, *cells, "-" if searched[0] is None else " / ".join(str(x) for x in searched)])
    headers = [
        "method",
        *(f"mismatches: {d}" for d in DISTRIBUTIONS),
        "rows re-searched: " + " / ".join(DISTRIBUTIONS),
    ]
    title = f"#### Exactness, N = {n}, K = {k}, three kinds of data ({n} vectors each)"
    return title + "\n\n" + markdown_table(headers, rows)


def _fastest_exact(timed: dict, extra: dict, peaks: dict) -> str:
    """A generated sentence: the fastest variant that matched the exact search on all three data sets."""
    variants = timed["variants"]
    default = Timing(next(iter(variants.values()))["times"]).median
    cdist = Timing(variants[CDIST_NAME]["times"]).median
    best = None
    for name, result in variants.items():
        if name == CDIST_NAME or name.startswith(DIAGNOSTIC) or len(extra.get(name, {})) < len(DISTRIBUTIONS) - 1:
            continue
        checks = [result["exactness"], *(entry["exactness"] for entry in extra[name].values())]
        median = Timing(result["times"]).median
        if not any(check["mismatches"] for check in checks) and (best is None or median < best[1]):
            best = (name, median)
    if best is None:
        return "In this run no variant matched the exact search on all three data sets."
    name, median = best
    memory = format_bytes(peaks[name]) if name in peaks else "not measured"
    return (
        f"Fastest variant of this run that matched the exact search on all three data sets: **{name}**, "
        f"{median:.3f} s median, {default / median:.2f}x the default and {cdist / median:.2f}x diffusers' cdist, "
        f"peak memory {memory}."
    )


def _prototype_tables(quick: bool, repeats: int) -> list[str]:
    blocks = []
    cases = QUICK_PROTOTYPE_CASES if quick else FULL_PROTOTYPE_CASES
    for n, k in cases:
        print(f"[quantizer] prototypes N={n} K={k}: timing", flush=True)
        timed = run_isolated("quantizer:time_prototypes", n=n, k=k, repeats=repeats, budget_s=240, quick=quick)
        first = (n, k) == cases[0]
        peaks = {}
        if first:  # peak memory and the other data sets at the largest case only (in --quick, of one variant)
            for name in timed["variants"]:
                if name == CDIST_NAME or name.startswith(DIAGNOSTIC) or (quick and not name.startswith("buffered")):
                    continue
                print(f"[quantizer] prototypes N={n} K={k}: peak memory of {name}", flush=True)
                peaks[name] = run_isolated("quantizer:peak_prototype", n=n, k=k, name=name, quick=quick)["peak_bytes"]
        blocks.append(_speed_table(n, k, timed, peaks))
        if first:
            print(f"[quantizer] prototypes N={n} K={k}: exactness on other data", flush=True)
            extra = run_isolated("quantizer:exactness_prototypes", n=n, k=k, quick=quick)
            blocks.append(_exactness_table(n, k, timed, extra))
            blocks.append(_fastest_exact(timed, extra, peaks))
    return blocks


def run(quick: bool, context: dict) -> str:
    """Measure everything and return the section's markdown."""
    repeats = 5
    fp32 = context["matmul"]["float32"]
    bf16 = context["matmul"]["bfloat16"]
    main_table, summary = _main_table(
        QUICK_CASES if quick else FULL_CASES, repeats, fp32["median_gflops"], bf16["median_gflops"]
    )
    prototype_blocks = _prototype_tables(quick, repeats)
    info = machine_info()
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"Torch threads: {info['torch threads']}. Matmul rates measured at the start of this run "
            f"({fp32['size']}^3, median of "
            f"{fp32['runs']}): float32 {fp32['median_gflops']:.0f} GFLOP/s, "
            f"bfloat16 {bf16['median_gflops']:.0f} GFLOP/s.",
            SECTION_INTRO,
            "### hf_vq vs diffusers",
            main_table,
            MAIN_NOTES,
            "### Exploration: a faster exact search (prototypes in `bench/search_prototypes.py`, not in hf_vq)",
            PROTOTYPE_INTRO,
            *prototype_blocks,
            summary_comment(summary),
        ]
    )


SECTION_INTRO = """\
Vectors of dimension 64, N vectors against K codes, float32. *Search* is the nearest-code search alone:
`hf_vq.modules.quantizers.nearest_codes(z, e)` (one reused buffer of at most 2^23 distances written by `addmm`
of `||e||^2 - 2 z.e`, and a blocked argmin on the CPU) against `torch.cdist(z, e).argmin(1)`, the search inside
diffusers' `VectorQuantizer`.
*Forward* is the whole quantizer in eval mode under `torch.no_grad()`: `hf_vq.VectorQuantizer(K, 64)` against
`diffusers.models.autoencoders.vae.VectorQuantizer(n_e=K, vq_embed_dim=64, beta=0.25)`, on latents
(N / 256, 64, 16, 16) built from the same vectors, both holding the same codebook. Data: z, e ~ N(0, 1).

- **Time**: one warm-up call of each method, then 5 rounds that call every method once in turn (interleaved, so that
  the background load of this shared 2-core machine falls on all alike); median (min-max) of the rounds' wall times.
  The speed-up is the ratio of the medians. A case too slow to repeat within its time budget shows fewer runs in
  the `runs` column. *Other processes' load* is the CPU time the rest of the machine used during the timed rounds
  (`/proc/stat` busy time minus this process's), in cores: at 0 the figures are the machine's; above ~0.3 our two
  OpenMP threads share cores with someone else, and code with many short parallel regions (small chunks) suffers
  far more than its share, since a descheduled thread holds the other at every barrier.
- **Peak memory**: each method runs in its own child process (forked from a server process that imports but never
  computes, so the child holds no earlier measurement's memory). After the inputs exist and one warm-up call has
  run, glibc's free memory is returned to the kernel (`malloc_trim(0)`, else reused blocks would not show), the
  kernel's resident-set high-water mark is reset (`echo 5 > /proc/self/clear_refs`), the method runs once, and the
  figure is `VmHWM - VmRSS` from `/proc/self/status`: the resident memory the call added at its peak, outputs
  included, inputs and the interpreter excluded. The kernel updates the mark on every page mapped, so a
  short-lived peak cannot slip between samples, as it could with a sampling thread. (torch has no CPU peak-memory
  counter; `ru_maxrss` cannot be reset and would include the import of torch.)
- **Exactness**: indices compared with the exact search, the argmin of `||e||^2 - 2 z.e` evaluated in float64 from
  the float32 inputs (exact for float32 data up to ~1e-16 relative). A mismatch means the method chose a code that
  is truly farther; `max excess` is by how much, relative to the squared distance d. Exact ties (equal float64
  scores) would be listed apart; none occurred unless shown.
- **Floor**: `2 N K D` flops at the float32 / bfloat16 rate of a large square matmul on this machine, measured in the
  same run. The search cannot be faster than its matmul; the skinny (inner dimension 64) matmul of the search reaches
  less than the square one."""

MAIN_NOTES = """\
Both searches in the main table run in float32; diffusers' `cdist` adds `||z||^2` and takes a square root before
the argmin, and the float32 rounding of `||z||^2` hides the small gaps between codes of a freshly initialized
codebook (see the `fresh` column below), while hf_vq's expansion leaves `||z||^2` out of the comparison.
hf_vq's peak memory is its one 32 MiB distance buffer plus the outputs: `nearest_codes` is the `buffered fp32 +
blocked argmin` prototype below, adopted with chunks of 2^23."""

DATA_LIST = "\n".join(f"`{name}`: {text};" for name, text in DISTRIBUTIONS.items())

PROTOTYPE_INTRO = f"""\
Variants of the search, all timed interleaved with the package's `nearest_codes` (default 2^23-element buffer) and with
diffusers' `cdist` search on the same gaussian data, so both speed-up columns come from one run. Exactness is checked
on three kinds of data:
{DATA_LIST}
the non-gaussian sets use a different seed. *chunk* gives the rows per chunk (chunk elements / K). Page faults are
per call (median over the timed calls); peak memory is measured as in the main table, at the largest case only.

- `nearest_codes, chunk 2^p`: the package function with `chunk_elements = 2^p`.
- `buffered fp32`: the same float32 math, but one (rows, K) buffer is allocated once and every chunk is written into
  it with `addmm(..., out=)`, then `argmin(..., out=)`. Today each chunk is a new allocation: above 32 MiB (glibc's
  largest mmap threshold) the allocator maps fresh pages from the kernel, and each 4 KiB page faults and is zeroed
  when first written (the page faults column counts them); and the previous chunk is still alive while the next is
  computed, so the peak is two chunks.
- `+ blocked argmin`: torch's CPU `argmin` is several times slower than `amin`, which vectorizes. This takes the
  `amin` of each block of 128 codes, the first block holding the row's minimum, then the first minimum inside that
  block: the same index `argmin` gives, ties included (first occurrence), for K a multiple of 128.
- `bf16 top-c + fp32 re-rank`: scores of all K codes from a bfloat16 `addmm`, the c lowest kept (`topk`), and those
  c re-scored in float32 with the same expansion. *certified* adds a proof per row: every bfloat16 score is within
  a bound `delta` of the true one (derivation in the docstring), so a row whose best float32 candidate beats the
  largest candidate score minus `delta` cannot have its true nearest code outside the candidates; other rows are
  searched again in float32 (the last column of the exactness table counts them, per data set).
- `diagnostic: ... addmm alone`: not a search, the chunked score matmul without the argmin: the floor of any search
  built on it, and, by difference, the cost of the argmin pass."""
