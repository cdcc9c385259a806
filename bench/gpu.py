"""Section `gpu`: the peers section's training step (hf_vq `VQGANModel` against diffusers' `VQModel`, same
architecture and weights) at 256x256 under bfloat16 autocast on a CUDA device: images/s, peak memory and MFU.

Without a CUDA device `run` measures nothing and returns None: the runner keeps the result of an earlier GPU run,
or writes `PLACEHOLDER`. Everything runs in the runner's process, which this section initializes CUDA in: it comes
last in the runner.
"""

from __future__ import annotations

import torch
from common import format_bytes, matmul_rates, summary_row, table, time_interleaved

TITLE = "GPU: training step against diffusers' VQModel at 256x256, bfloat16"

SIZES = {"resolution": 256, "batch": 16}
QUICK_SIZES = {"resolution": 32, "batch": 2}
VARIANTS = {"diffusers_bf16": "diffusers `VQModel`", "hf_vq_bf16": "hf_vq `VQGANModel`"}
STEPS_PER_RUN = 10  # one timed run: several steps, so that launch overheads and clock noise average out
MATMUL_SIZE = 8192

PLACEHOLDER_TEXT = (
    "No GPU figures exist yet: no run of `make bench` has had a CUDA device (this section measures only where "
    "`torch.cuda.is_available()`; every other section is CPU). On a GPU machine it times the peers section's step "
    "(block_out_channels (64, 128, 128, 256), two ResNet blocks per level, same weights for both) at 256x256, batch "
    "16, under bfloat16 autocast, for both models: images/s, peak memory and MFU against the device's measured "
    "bfloat16 matmul rate."
)
# The section's result where no GPU run exists.
PLACEHOLDER = {
    "title": TITLE,
    "parts": [{"text": PLACEHOLDER_TEXT}],
    "summary": [summary_row("GPU training step at 256x256, bf16, against diffusers", "no GPU figures yet")],
}


def peak_memory(device: str, step) -> int | None:
    """Device memory one step allocates at its peak above what was allocated before it (None on a CPU)."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    return torch.cuda.max_memory_allocated() - before


def measure(device: str, quick: bool) -> dict:
    """The section's result, measured on `device` (`run` passes "cuda"; "cpu" exercises the same code)."""
    from peers import build_step
    from torch.utils.flop_counter import FlopCounterMode

    sizes = QUICK_SIZES if quick else SIZES
    steps, memory = {}, {}
    for variant in VARIANTS:
        model, _, step = build_step(variant, quick, device=device, sizes=sizes)
        step()  # warm-up: the optimizer's state exists from here on
        memory[variant] = peak_memory(device, step)
        steps[variant] = step
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    with FlopCounterMode(display=False) as counter:
        steps["hf_vq_bf16"]()
    flops = counter.get_total_flops()
    timings = time_interleaved(
        {variant: (lambda step=step: [step() for _ in range(STEPS_PER_RUN)]) for variant, step in steps.items()},
        repeats=2 if quick else 5,
    )
    matmul_size = 1024 if quick else MATMUL_SIZE
    # the best bf16 matmul on this device: the practical peak for MFU
    peak = matmul_rates(matmul_size, device=device, dtypes=("bfloat16",))["bfloat16"]["max_gflops"] / 1e3
    seconds = {variant: timing.median / STEPS_PER_RUN for variant, timing in timings.items()}
    rows = []
    for variant, label in VARIANTS.items():
        achieved = flops / seconds[variant] / 1e12
        rows.append([
            label, timings[variant].cell(), f"{sizes['batch'] / seconds[variant]:,.1f}",
            f"{seconds['diffusers_bf16'] / seconds[variant]:.2f}x",
            "-" if memory[variant] is None else format_bytes(memory[variant]), f"{achieved:.1f}",
            f"{achieved / peak:.0%}",
        ])  # fmt: skip
    ratio = seconds["diffusers_bf16"] / seconds["hf_vq_bf16"]
    mfu = flops / seconds["hf_vq_bf16"] / 1e12 / peak
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    summary = summary_row(
        f"GPU training step at {sizes['resolution']}x{sizes['resolution']}, bf16, against diffusers ({name})",
        f"{ratio:.2f}x ({sizes['batch'] / seconds['hf_vq_bf16']:,.1f} vs "
        f"{sizes['batch'] / seconds['diffusers_bf16']:,.1f} images/s); MFU {mfu:.0%}",
        ">= 1x (not slower)",
        ratio >= 1,
    )
    cuda = f", CUDA {torch.version.cuda}" if device.startswith("cuda") else ""
    headers = ["step", f"seconds per {STEPS_PER_RUN} steps, median (min-max)", "images/s", "speed vs diffusers",
               "peak memory", "achieved TFLOP/s", "MFU"]  # fmt: skip
    text = (
        f"Device: {name}{cuda}, torch {torch.__version__}. The peers section's step (forward, L1 reconstruction + "
        f"quantizer loss, backward, AdamW) with block_out_channels (64, 128, 128, 256), two ResNet blocks per level "
        f"({parameters:.1f}M parameters), {sizes['resolution']}x{sizes['resolution']}, batch {sizes['batch']}, under "
        f"bfloat16 autocast, both models from the same weights. A timed run is {STEPS_PER_RUN} steps (the figures "
        "are per run), interleaved, after a warm-up. Peak memory: `torch.cuda.max_memory_allocated` during one "
        "step above the memory allocated before it. MFU: flops of one step (`FlopCounterMode`: convolutions and "
        f"matmuls, forward and backward; {flops / 1e9:.0f} GFLOP) per second, over the best bfloat16 "
        f"{matmul_size}^3 matmul on this device in the same run ({peak:,.1f} TFLOP/s)."
    )
    return {"title": TITLE, "parts": [{"text": text, "table": table(headers, rows)}], "summary": [summary]}


def run(quick: bool, context: dict) -> dict | None:
    if not torch.cuda.is_available():
        print("[gpu] no CUDA device: nothing measured", flush=True)
        return None
    return measure("cuda", quick)
