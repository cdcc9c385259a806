"""Section `sampling`: the pipeline's sampler (`generate()` with its KV cache) against a taming-style loop that runs
the whole sequence through the model again for every new token, same prior, batch, top-k and classes."""

from __future__ import annotations

import torch
from common import summary_row, table, time_interleaved

TITLE = "Sampling from the prior"


def recompute_sampler(prior, class_labels: torch.Tensor, top_k: int, guidance_scale: float = 1.0) -> torch.Tensor:
    """taming's `sample()` without a cache: every step feeds the whole prefix again. With guidance, the conditional
    and the unconditional (BOS) sequences run as one doubled batch, as LlamaGen does."""
    config = prior.config
    guided = guidance_scale != 1.0
    sequence = prior.prefix_ids(class_labels, len(class_labels))
    if guided:
        sequence = torch.cat([sequence, prior.prefix_ids(None, len(class_labels))])
    for _ in range(config.num_image_tokens):
        logits = prior(sequence, use_cache=False).logits[:, -1].float()
        log_probs = torch.log_softmax(logits, dim=-1)
        if guided:
            conditional, unconditional = log_probs.chunk(2)
            log_probs = unconditional + guidance_scale * (conditional - unconditional)
        log_probs = log_probs[:, : config.codebook_size]  # codes only
        threshold = log_probs.topk(top_k, dim=-1).values[:, -1:]
        log_probs = log_probs.masked_fill(log_probs < threshold, float("-inf"))
        token = torch.multinomial(torch.softmax(log_probs, dim=-1), 1)
        sequence = torch.cat([sequence, token.repeat(2, 1) if guided else token], dim=1)
    height, width = config.token_grid_size
    return sequence[: len(class_labels), 1:].reshape(-1, height, width)


def run(quick: bool, context: dict) -> dict:
    import hf_vq

    grid, layers, width, batch = ((8, 8), 2, 64, 2) if quick else ((16, 16), 6, 384, 4)
    config = hf_vq.VQPriorConfig(
        codebook_size=1024, token_grid_size=grid, num_classes=10, n_layer=layers, n_head=max(1, width // 64),
        n_embd=width,
    )  # fmt: skip
    prior = hf_vq.VQPriorForCausalLM(config).eval()
    labels = torch.arange(batch) % 10
    top_k = 100  # taming's sampling setting

    with torch.no_grad():  # greedy (top-k 1): both samplers must pick the same codes, a check they compute the same
        agreement = (prior.sample_codes(labels, top_k=1) == recompute_sampler(prior, labels, 1)).float().mean().item()

    def timed(function):
        def call():
            with torch.no_grad():
                function()

        return call

    cases = {
        "generate": timed(lambda: prior.sample_codes(labels, top_k=top_k)),
        "recompute": timed(lambda: recompute_sampler(prior, labels, top_k)),
        "generate, guidance 2": timed(lambda: prior.sample_codes(labels, top_k=top_k, guidance_scale=2.0)),
        "recompute, guidance 2": timed(lambda: recompute_sampler(prior, labels, top_k, guidance_scale=2.0)),
    }
    timings = time_interleaved(cases, repeats=2 if quick else 5)
    tokens = batch * config.num_image_tokens
    rows = []
    for guided in ("", ", guidance 2"):
        fast, slow = timings["generate" + guided], timings["recompute" + guided]
        rows.append([f"pipeline: generate() with KV cache{guided}", fast.cell(), f"{tokens / fast.median:,.0f}",
                     f"{slow.median / fast.median:.1f}x"])  # fmt: skip
        rows.append([f"taming-style loop, whole sequence every step{guided}", slow.cell(),
                     f"{tokens / slow.median:,.0f}", "1.0x"])  # fmt: skip
    speedups = {guided: timings["recompute" + guided].median / timings["generate" + guided].median
                for guided in ("", ", guidance 2")}  # fmt: skip
    summary = summary_row(
        "prior sampling, the pipeline (KV cache) against a taming-style loop",
        f"{speedups['']:.1f}x ({tokens / timings['generate'].median:,.0f} vs "
        f"{tokens / timings['recompute'].median:,.0f} tokens/s); with guidance {speedups[', guidance 2']:.1f}x",
        ">= 10x",
        min(speedups.values()) >= 10,
    )
    parameters = sum(p.numel() for p in prior.parameters()) / 1e6
    text = (
        f"A class-conditional `VQPriorForCausalLM` with {layers} layers, width {width} ({parameters:.1f}M "
        f"parameters), {config.codebook_size} codes, a {grid[0]}x{grid[1]} grid ({config.num_image_tokens} tokens "
        f"per image), batch {batch}, top-k {top_k}, float32, no grad; both samplers interleaved, "
        f"{timings['generate'].runs} runs each after a warm-up. Greedy decoding (top-k 1) with both samplers gives "
        f"the same code at {agreement:.1%} of the positions (a check that they compute the same model). Goal: the "
        "pipeline >= 10x the loop. With guidance, the pipeline runs the conditional and unconditional sequences as "
        "one doubled batch (`PairedGuidanceSampler`), like the loop."
    )
    headers = ["sampler", "seconds, median (min-max)", "tokens/s", "speed-up"]
    return {"title": TITLE, "parts": [{"text": text, "table": table(headers, rows)}], "summary": [summary]}
