"""Section `peers`: a VQ-GAN training step against diffusers' `VQModel` with the same architecture, weights, batch
and resolution; bfloat16 autocast against float32 (speed, and held-out PSNR at equal steps through the real
trainer); and the step's achieved GFLOP/s against the machine's matmul rate."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch
from common import REPO_ROOT, format_bytes, peak_rss_above_baseline, run_isolated, summary_row, table, time_interleaved

TITLE = "Training step against diffusers' VQModel, bfloat16, efficiency"

# The compared model: diffusers' VQModel with these channels, 64x64, batch 16 (~16M parameters).
CHANNELS = (64, 128, 128, 256)
FULL = {"resolution": 64, "batch": 16}
QUICK = {"resolution": 32, "batch": 2}
BF16_SEEDS = 5  # paired float32 / bf16 training runs for the PSNR gap
VARIANTS = {
    "diffusers": "diffusers `VQModel`",
    "hf_vq": "hf_vq `VQGANModel`",
    "hf_vq_channels_last": "hf_vq, channels_last memory format",
    "hf_vq_fused_adamw": "hf_vq, AdamW(fused=True)",
    "hf_vq_bf16": "hf_vq, bfloat16 autocast (quantizer in float32)",
}


def _diffusers_model(resolution: int):
    from diffusers import VQModel

    torch.manual_seed(0)
    return VQModel(
        block_out_channels=CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * len(CHANNELS),
        up_block_types=("UpDecoderBlock2D",) * len(CHANNELS),
        layers_per_block=2,
        latent_channels=4,
        num_vq_embeddings=1024,
        vq_embed_dim=4,
        sample_size=resolution,
    )


def build_step(variant: str, quick: bool, device: str = "cpu", sizes: dict | None = None):
    """The variant's training step (forward, L1 reconstruction + quantizer loss, backward, AdamW step) on fixed
    images; every hf_vq variant starts from the diffusers model's weights (`VQGANModel.from_diffusers`). Variants
    ending in `_bf16` run under bfloat16 autocast (both quantizers keep their own precision rules). On a GPU the step
    waits for the device, so that wall-clock timing covers its work."""
    import hf_vq

    sizes = sizes or (QUICK if quick else FULL)
    reference = _diffusers_model(sizes["resolution"]).train()
    images = torch.rand(sizes["batch"], 3, sizes["resolution"], sizes["resolution"],
                        generator=torch.Generator().manual_seed(1)) * 2 - 1  # fmt: skip
    is_diffusers = variant.startswith("diffusers")
    model = reference if is_diffusers else hf_vq.VQGANModel.from_diffusers(reference).train()
    model, images = model.to(device), images.to(device)
    if variant == "hf_vq_channels_last":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=variant == "hf_vq_fused_adamw")
    autocast = variant.endswith("_bf16")
    device_type = torch.device(device).type

    def step() -> None:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            output = model(images)
            if is_diffusers:
                reconstruction, quantizer_loss = output.sample, output.commit_loss.mean()
            else:
                reconstruction, quantizer_loss = output.reconstruction, output.quantizer_loss
            loss = torch.nn.functional.l1_loss(reconstruction.float(), images) + quantizer_loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device_type == "cuda":
            torch.cuda.synchronize()

    return model, images, step


def step_peak_memory(variant: str, quick: bool) -> dict:
    """Run in a fresh process: the resident memory one step adds at its peak."""
    _, _, step = build_step(variant, quick)
    return peak_rss_above_baseline(step)


def step_flops(quick: bool) -> dict:
    """Run in a fresh process: the flops of one hf_vq float32 step, counted by torch's flop counter (matmuls and
    convolutions, forward and backward; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, _, step = build_step("hf_vq", quick)
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    return {"flops": counter.get_total_flops()}


def speed(quick: bool, memory: dict) -> tuple[dict, dict]:
    steps = {variant: build_step(variant, quick)[2] for variant in VARIANTS}
    timings = time_interleaved(steps, repeats=2 if quick else 5, budget_s=60 if quick else 600)
    sizes = QUICK if quick else FULL
    parameters = sum(p.numel() for p in _diffusers_model(sizes["resolution"]).parameters()) / 1e6
    base = timings["diffusers"].median
    rows = [
        [label, timings[variant].cell(), f"{sizes['batch'] / timings[variant].median:.1f}",
         f"{base / timings[variant].median:.2f}x", format_bytes(memory[variant]["peak_bytes"]), timings[variant].runs]
        for variant, label in VARIANTS.items()
    ]  # fmt: skip
    text = (
        f"Block_out_channels {CHANNELS}, two ResNet blocks per level, 4 latent channels, 1024 codes of dimension 4 "
        f"({parameters:.1f}M parameters), {sizes['resolution']}x{sizes['resolution']}, batch {sizes['batch']}; a step "
        "is forward, L1 reconstruction + quantizer loss, backward and an AdamW step. All variants start from the same "
        "weights (`VQGANModel.from_diffusers`). Interleaved: one warm-up of each, then rounds calling each once; peak "
        "memory in a fresh process per variant (`VmHWM` above the resident memory before the step)."
    )
    headers = ["step", "seconds, median (min-max)", "images/s", "speed vs diffusers", "peak memory added", "runs"]
    return {"text": text, "table": table(headers, rows)}, {"timings": timings, "parameters": parameters}


def efficiency(context: dict, timings: dict, flops: float) -> tuple[dict, dict]:
    rows, shares = [], {}
    matmul = context.get("matmul", {})
    for variant, rate_name in (("hf_vq", "float32"), ("hf_vq_bf16", "bfloat16")):
        achieved = flops / timings[variant].median / 1e9
        peak = matmul.get(rate_name, {}).get("max_gflops")
        share = shares[rate_name] = f"{achieved / peak:.0%}" if peak else "-"
        rows.append(
            [VARIANTS[variant], f"{flops / 1e9:.1f}", f"{achieved:.0f}", f"{peak:.0f}" if peak else "-", share]
        )
    text = (
        "Flops of one step counted with `torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls, forward "
        "and backward), over the median step time above, against the best of 5 runs of a large square matmul of the "
        "same dtype measured at the start of this run (the machine's practical limit; its median moves with the "
        "background load of this shared machine)."
    )
    headers = ["step", "GFLOP per step", "achieved GFLOP/s", "matmul GFLOP/s (best)", "share of the matmul rate"]
    return {"heading": "Efficiency", "text": text, "table": table(headers, rows)}, shares


def trained_psnr(mixed_precision: str, steps: int, seed: int, output_dir: str) -> dict:
    """Run in a fresh process: the demo VQ-GAN recipe trained for `steps` steps with `mixed_precision`; its held-out
    PSNR and training throughput."""
    from hf_vq.training import main

    recipe = REPO_ROOT / "training" / "configs" / "vqgan_digits.yaml"
    metrics = main("vqgan", [
        "--config", str(recipe), "--output_dir", output_dir, "--max_train_steps", str(steps), "--seed", str(seed),
        "--checkpointing_steps", str(steps), "--validation_steps", str(steps), "--mixed_precision", mixed_precision,
        "--report_to", "none",
    ])  # fmt: skip
    return {"psnr": metrics["eval_psnr"], "images_per_second": metrics["train_images_per_second"]}


def precision_quality(quick: bool) -> tuple[list[dict], dict]:
    """bf16 against float32 through the real trainer, paired by seed: the result's parts and the summary's figures."""
    steps, seeds = (10, (0,)) if quick else (300, tuple(range(BF16_SEEDS)))
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            for precision in ("no", "bf16"):
                results[precision, seed] = run_isolated(
                    "peers:trained_psnr", timeout_s=1800, mixed_precision=precision, steps=steps, seed=seed,
                    output_dir=str(Path(scratch) / f"{precision}-{seed}"),
                )  # fmt: skip
    gaps = [results["bf16", seed]["psnr"] - results["no", seed]["psnr"] for seed in seeds]
    speedups = [results["bf16", s]["images_per_second"] / results["no", s]["images_per_second"] for s in seeds]
    rows = [
        [seed, f"{results['no', seed]['psnr']:.2f}", f"{results['bf16', seed]['psnr']:.2f}", f"{gap:+.2f}",
         f"{speedup:.2f}x"]
        for seed, gap, speedup in zip(seeds, gaps, speedups, strict=True)
    ]  # fmt: skip
    mean = statistics.mean(gaps)
    deviation = f", standard deviation {statistics.stdev(gaps):.2f} dB" if len(gaps) > 1 else ""
    seed_spread = max(results["no", s]["psnr"] for s in seeds) - min(results["no", s]["psnr"] for s in seeds)
    text = (
        f"The demo recipe (`vqgan_digits.yaml`, 16x16 digits, batch 64; here {steps} steps) trained by "
        f"`training/train_vqgan.py` in float32 and with `--mixed_precision bf16`, once per precision for each of "
        f"{len(seeds)} seeds, every run in a fresh process (runs are deterministic: a repeated run gives the same "
        "PSNR); held-out PSNR on the 360 test digits, evaluated under the run's own precision. Goal: bf16 within "
        "0.2 dB of float32 at equal steps."
    )
    headers = ["seed", "float32 PSNR (dB)", "bf16 PSNR (dB)", "bf16 - float32", "bf16 images/s ratio (whole run)"]
    gap = (
        f"Mean gap {mean:+.2f} dB over {len(seeds)} seeds{deviation}; the float32 runs alone spread over "
        f"{seed_spread:.2f} dB between seeds."
    )
    parts = [{"heading": "bfloat16 at equal steps", "text": text, "table": table(headers, rows)}, {"text": gap}]
    return parts, {"mean_gap": mean, "gaps": gaps}


def run(quick: bool, context: dict) -> dict:
    # The child processes first, then the interleaved timings here, so that no child competes with them.
    memory = {variant: run_isolated("peers:step_peak_memory", variant=variant, quick=quick) for variant in VARIANTS}
    flops = run_isolated("peers:step_flops", quick=quick)["flops"]
    quality, gaps = precision_quality(quick)
    speed_part, measured = speed(quick, memory)
    efficiency_part, shares = efficiency(context, measured["timings"], flops)
    timings = measured["timings"]
    ours, theirs = timings["hf_vq"].median, timings["diffusers"].median
    batch = (QUICK if quick else FULL)["batch"]
    bf16_speedup = ours / timings["hf_vq_bf16"].median
    summary = [
        summary_row(
            f"VQ-GAN training step ({measured['parameters']:.1f}M parameters) against diffusers' VQModel",
            f"{theirs / ours:.2f}x ({batch / ours:.1f} vs {batch / theirs:.1f} images/s); peak memory "
            f"{format_bytes(memory['hf_vq']['peak_bytes'])} vs {format_bytes(memory['diffusers']['peak_bytes'])}",
            ">= 1x (not slower)",
            ours <= theirs,
        ),
        summary_row(
            "the same step with bf16 autocast against float32", f"{bf16_speedup:.2f}x", ">= 1.5x", bf16_speedup >= 1.5
        ),  # fmt: skip
        summary_row(
            "bf16 held-out PSNR against float32 at equal steps (demo recipe)",
            f"{gaps['mean_gap']:+.2f} dB mean over {len(gaps['gaps'])} seed(s) "
            f"({', '.join(f'{gap:+.2f}' for gap in gaps['gaps'])})",
            "within 0.2 dB",
            abs(gaps["mean_gap"]) <= 0.2,
        ),
        summary_row(
            "achieved GFLOP/s of the step over the best matmul of the same dtype",
            f"float32 {shares['float32']}, bf16 {shares['bfloat16']}",
        ),  # fmt: skip
    ]
    return {"title": TITLE, "parts": [speed_part, efficiency_part, *quality], "summary": summary}
