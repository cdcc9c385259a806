"""Section `priors`: the GPT prior against the gated PixelCNN (the VQ-VAE paper's prior) on the codes of the demo's
digits VQ-GAN: held-out bits/dim, class accuracy of samples, parameters, training time to the same loss, sampling
speed. Both train through the shared loop (`train_prior.py`, `--prior_type gpt | pixelcnn`) on one code dataset."""

from __future__ import annotations

import importlib.util
import math
import tempfile
import time
from pathlib import Path

from common import REPO_ROOT, run_isolated, summary_row, table, time_interleaved

TITLE = "Priors over codes: GPT against gated PixelCNN"

RECIPES = REPO_ROOT / "training" / "configs"
PRIORS = {"gpt": "prior_digits.yaml", "pixelcnn": "pixelcnn_prior_digits.yaml"}
SMOOTHING = 50  # training loss: the mean of the last 50 steps, for "time to the same loss"


def _demo():
    """scripts/demo.py as a module: its digits, its sampling settings and its sample classifier."""
    spec = importlib.util.spec_from_file_location("demo", REPO_ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_vq_model(output_dir: str, steps: int | None) -> str:
    """Run in a fresh process: the demo's VQ-GAN and its code dataset; returns the code dataset's folder."""
    from transformers import AutoModel

    from hf_vq.training import encode_dataset

    demo = _demo()
    demo.run("vqgan", "vqgan_digits.yaml", Path(output_dir) / "vqgan", steps)
    vq_path = Path(output_dir) / "vqgan" / "model"
    codes = Path(output_dir) / "codes"
    encode_dataset(AutoModel.from_pretrained(vq_path), "builtin:digits", codes, vq_model_name_or_path=vq_path,
                   label_column="label", quiet=True)  # fmt: skip
    return str(codes)


def train_prior(prior_type: str, codes: str, output_dir: str, steps: int | None) -> dict:
    """Run in a fresh process: one prior through the shared loop, recording the wall-clock time and the training
    loss of every step; then its held-out bits/dim, sample accuracy and sampling time."""

    from hf_vq import VQImageGenerationPipeline
    from hf_vq.metrics import bits_per_dim
    from hf_vq.training import FAMILIES, PRIOR_FAMILIES, parse_arguments

    family = FAMILIES[PRIOR_FAMILIES[prior_type]]
    curve: list[tuple[float, float]] = []  # (seconds since the first step, training NLL)

    paused = [0.0]  # seconds spent in validation and checkpoints, which are no training time

    class TimedTrainer(family.trainer_class):
        def _after_step(self, logs):
            now = time.perf_counter()
            curve.append((now - paused[0], logs["nll"]))
            super()._after_step(logs)
            paused[0] += time.perf_counter() - now

    argv = ["--config", str(RECIPES / PRIORS[prior_type]), "--dataset", codes, "--output_dir", output_dir]
    demo = _demo()
    argv += demo.steps_arguments(steps)
    metrics = TimedTrainer(family, parse_arguments(argv=argv, with_prior=True)).run()
    pipe = VQImageGenerationPipeline.from_pretrained(Path(output_dir) / "pipeline")
    train, test = demo.digits("train"), demo.digits("test")
    scale = bits_per_dim(pipe.vq_model, train[0])["decoder_scale"]
    bound = bits_per_dim(pipe.vq_model, test[0], pipe.prior, class_labels=test[1], decoder_scale=scale)
    accuracies = demo.sample_accuracies(pipe, train, test)
    start = curve[0][0]
    return {
        "parameters": sum(p.numel() for p in pipe.prior.parameters()),
        "curve": [(t - start, loss) for t, loss in curve],
        "eval_nll_per_code": metrics["eval_nll_per_code"],
        "bits_per_dim": bound["bits_per_dim"],
        "prior_bits_per_dim": bound["prior_bits_per_dim"],
        "sample_class_accuracy": accuracies["sample_class_accuracy"],
        "plain_sample_class_accuracy": accuracies["sample_class_accuracy_without_top_k_or_guidance"],
        "grid": list(pipe.prior.config.token_grid_size),
        "steps": metrics["step"],
    }


def sampling_speed(pipelines: dict[str, str]) -> dict[str, float]:
    """Run in a fresh process: seconds per call of each pipeline sampling 100 images (10 per class, top-k 16),
    the pipelines interleaved call by call."""
    from hf_vq import VQImageGenerationPipeline

    labels = list(range(10))
    calls = {}
    for name, path in pipelines.items():
        pipe = VQImageGenerationPipeline.from_pretrained(path)
        calls[name] = lambda pipe=pipe: pipe(class_labels=labels, num_images=10, top_k=16, seed=0, output_type="pt")
    return {name: timing.median for name, timing in time_interleaved(calls, repeats=5).items()}


def smoothed(curve: list[list[float]]) -> list[tuple[float, float]]:
    """(seconds, mean training loss over the last `SMOOTHING` steps), from the `SMOOTHING`-th step on."""
    losses = [loss for _, loss in curve]
    return [
        (curve[i][0], sum(losses[i + 1 - SMOOTHING : i + 1]) / SMOOTHING) for i in range(SMOOTHING - 1, len(curve))
    ]


def time_to(curve: list[list[float]], target: float) -> float:
    """Seconds until the smoothed training loss first reaches `target` (inf if it never does)."""
    return next((seconds for seconds, loss in smoothed(curve) if loss <= target), math.inf)


def run(quick: bool, context: dict) -> dict:
    vq_steps, prior_steps = (10, 60) if quick else (None, None)  # None: the recipes' steps
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        codes = run_isolated("priors:train_vq_model", timeout_s=3600, output_dir=str(Path(scratch) / "vq"),
                             steps=vq_steps)  # fmt: skip
        for prior_type in PRIORS:
            results[prior_type] = run_isolated("priors:train_prior", timeout_s=3600, prior_type=prior_type,
                                               codes=codes, output_dir=str(Path(scratch) / prior_type),
                                               steps=prior_steps)  # fmt: skip
        pipelines = {prior_type: str(Path(scratch) / prior_type / "pipeline") for prior_type in PRIORS}
        for prior_type, seconds in run_isolated("priors:sampling_speed", pipelines=pipelines).items():
            results[prior_type]["sampling_seconds"] = seconds
    # The loss both reach: the higher of the two final smoothed training losses.
    target = max(smoothed(result["curve"])[-1][1] for result in results.values())
    rows = []
    for prior_type, label in (("gpt", "GPT-2 (KV cache)"), ("pixelcnn", "gated PixelCNN")):
        result = results[prior_type]
        rows.append([
            label, f"{result['parameters'] / 1e6:.2f}M", f"{result['eval_nll_per_code']:.3f}",
            f"{result['bits_per_dim']:.3f}", f"{result['sample_class_accuracy']:.1%}",
            f"{result['plain_sample_class_accuracy']:.1%}", f"{time_to(result['curve'], target):.0f}",
            f"{result['curve'][-1][0]:.0f}", f"{100 / result['sampling_seconds']:.0f}",
        ])  # fmt: skip
    gpt, pixelcnn = results["gpt"], results["pixelcnn"]
    height, width = gpt["grid"]
    summary = [
        summary_row(
            "held-out bits/dim of the digits with the GPT prior -> the gated PixelCNN (same VQ-GAN, same codes)",
            f"{gpt['bits_per_dim']:.3f} -> {pixelcnn['bits_per_dim']:.3f}; sample accuracy "
            f"{gpt['sample_class_accuracy']:.1%} -> {pixelcnn['sample_class_accuracy']:.1%}",
        ),
        summary_row(
            "prior sampling speed, GPT (KV cache) -> PixelCNN (one pass per code)",
            f"{100 / gpt['sampling_seconds']:.0f} -> {100 / pixelcnn['sampling_seconds']:.0f} images/s",
        ),
    ]
    text = (
        f"The demo's VQ-GAN (`vqgan_digits.yaml`: 16x16 digits to {height}x{width} codes) and its code dataset; each "
        f"prior trained {gpt['steps']} steps with its recipe (`{PRIORS['gpt']}`, `{PRIORS['pixelcnn']}`: batch 64, "
        "learning rate 1e-3, cosine, class dropout 0.1) through `train_prior.py`. Bits/dim: the held-out digits' "
        "bound with the decoder scale fitted on the training digits (as the demo). Sample accuracy: the demo's "
        "logistic regression reads 500 samples (50 per digit) drawn with top-k 16 and guidance 1.5, and without "
        f"either. Time to the same loss: seconds until the training loss (mean of the last {SMOOTHING} steps) first "
        f"reaches {target:.3f} nats per code, the higher of the two final values. Sampling: 100 images (10 per "
        "class, top-k 16) per call, both pipelines interleaved call by call, median of 5 calls; the GPT prior "
        "samples with its KV cache, the PixelCNN runs the network once per code on the rows up to the current one "
        "(hf_vq has no cache for it; Fast PixelCNN++'s caching of the convolutions' states is not implemented)."
    )
    headers = ["prior", "parameters", "held-out NLL per code (nats)", "bits/dim", "sample accuracy (top-k, guidance)",
               "sample accuracy (plain)", "seconds to the same loss", "training seconds",
               "images/s sampled"]  # fmt: skip
    return {"title": TITLE, "parts": [{"text": text, "table": table(headers, rows)}], "summary": summary}
