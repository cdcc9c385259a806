"""Section `quality`: a VQ-GAN trained for the same number of steps on builtin:photos with a plain vector quantizer
(diffusers-style: codebook trained by its loss term, no normalization, random init, no restarts) and with hf_vq's
quantizer settings, at K = 1024 and 16384 codes; held-out PSNR and codebook usage over the held-out set (and over
crops of the training photographs)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import run_isolated, summary_row, table

TITLE = "Quality at equal compute: plain VQ against hf_vq's quantizer"

MODEL = {
    "block_out_channels": [32, 64, 128], "layers_per_block": 1, "norm_num_groups": 16, "latent_channels": 32,
    "vq_embed_dim": 32, "sample_size": 32,
}  # fmt: skip
QUANTIZERS = {
    "plain": {"vq_codebook_update": "loss"},
    "hf_vq": {
        "vq_codebook_update": "ema", "vq_use_l2_norm": True, "vq_codebook_dim": 8, "vq_kmeans_init": True,
        "vq_dead_code_threshold": 20,
    },
}  # fmt: skip
SIZES = (1024, 16384)
BATCH = 16
LATENTS_PER_STEP = BATCH * 8 * 8  # 8x8 codes per 32x32 crop
# Held-out crops: 512,000 code slots, 31 per code at K = 16384. With 1,000 crops (64,000 slots) even a perfectly
# uniform code distribution would leave 1 - exp(-64000 / 16384) = 98% of the codes as the ceiling, and any real one
# far less: the set must be large for usage to measure the codebook rather than the sample.
EVAL_CROPS = 8000
HEADERS = ["K", "quantizer", "dead-code threshold (steps)", "held-out PSNR (dB)", "codebook usage", "perplexity",
           "usage on training-photo crops"]  # fmt: skip


def quantizer_settings(quantizer: str, codes: int) -> dict:
    settings = dict(QUANTIZERS[quantizer])
    if "vq_dead_code_threshold" in settings:
        # A code used at the average rate is hit threshold * 1024 / K times per window (1,024 latents per step):
        # ~20 at K = 1024, and at K = 16384 still 6 with 96 steps; with 20 there, 29% of such codes would be
        # restarted at every check (P(no hit) = exp(-1.25)) and never settle.
        settings["vq_dead_code_threshold"] = max(20, 6 * codes // LATENTS_PER_STEP)
    return settings


def train(quantizer: str, codes: int, steps: int, eval_crops: int, output_dir: str) -> dict:
    """Run in a fresh process: one training run through `training/train_vqgan.py`'s loop; its held-out metrics, and
    the codebook usage over fixed crops of the training photographs."""
    import hf_vq
    from hf_vq.data import load_eval_images
    from hf_vq.metrics import codebook_statistics
    from hf_vq.training import main

    config = Path(output_dir) / "model.json"
    Path(output_dir).mkdir(parents=True)
    config.write_text(json.dumps({**MODEL, **quantizer_settings(quantizer, codes), "num_vq_embeddings": codes}))
    run = Path(output_dir) / "run"
    # The discriminator neither trains nor reaches the generator (both starts after the last step): the comparison
    # is of the quantizers under one reconstruction objective.
    metrics = main("vqgan", [
        "--output_dir", str(run), "--dataset", "builtin:photos", "--resolution", "32",
        "--model_config", str(config), "--max_train_steps", str(steps), "--train_batch_size", str(BATCH),
        "--learning_rate", "2e-4", "--disc_start", str(10 * steps), "--disc_train_start", str(10 * steps),
        "--checkpointing_steps", str(steps), "--validation_steps", str(steps),
        "--max_eval_images", str(eval_crops), "--report_to", "none",
    ])  # fmt: skip
    result = {key: metrics[f"eval_{key}"] for key in ("psnr", "codebook_usage", "codebook_perplexity", "num_images")}
    model = hf_vq.VQGANModel.from_pretrained(run / "model")
    crops = load_eval_images("builtin:photos", "train", MODEL["sample_size"], limit=eval_crops)
    result["train_usage"] = codebook_statistics(model, crops, batch_size=256)["codebook_usage"]
    return result


def run(quick: bool, context: dict) -> dict:
    steps, eval_crops = (5, 64) if quick else (600, EVAL_CROPS)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for codes in SIZES:
            for quantizer in QUANTIZERS:
                folder = str(Path(scratch) / f"{quantizer}-{codes}")
                results[quantizer, codes] = run_isolated("quality:train", timeout_s=3600, quantizer=quantizer,
                                                         codes=codes, steps=steps, eval_crops=eval_crops,
                                                         output_dir=folder)  # fmt: skip
    rows, summary = [], []
    for codes in SIZES:
        for quantizer, label in (("plain", "plain VQ (diffusers-style)"), ("hf_vq", "hf_vq settings")):
            result = results[quantizer, codes]
            threshold = quantizer_settings(quantizer, codes).get("vq_dead_code_threshold", "-")
            rows.append([f"{codes:,}", label, threshold, f"{result['psnr']:.2f}", f"{result['codebook_usage']:.1%}",
                         f"{result['codebook_perplexity']:,.0f}", f"{result['train_usage']:.1%}"])  # fmt: skip
        plain, ours = results["plain", codes], results["hf_vq", codes]
        summary.append(summary_row(
            f"codebook usage and held-out PSNR at K = {codes:,}, plain VQ -> hf_vq, {steps} equal steps",
            f"usage {plain['codebook_usage']:.1%} -> {ours['codebook_usage']:.1%}; "
            f"PSNR {plain['psnr']:.2f} -> {ours['psnr']:.2f} dB",
            "usage >= 95%, higher PSNR", ours["codebook_usage"] >= 0.95 and ours["psnr"] > plain["psnr"],
        ))  # fmt: skip
    settings = ", ".join(f"{name}={value}" for name, value in QUANTIZERS["hf_vq"].items() if "threshold" not in name)
    images = results["plain", SIZES[0]]["num_images"]
    text = (
        f"VQ-GAN {MODEL['block_out_channels']} (f4: 8x8 codes per 32x32 crop), latents of dimension 32, trained "
        f"{steps} steps at batch {BATCH} ({LATENTS_PER_STEP:,} latents per step) on random 32x32 crops of "
        "`builtin:photos` (no adversarial term and no discriminator: the same reconstruction objective for both), "
        "learning rate 2e-4, seed 0. Plain: `vq_codebook_update=loss`, random codebook, no normalization, no "
        f"restarts. hf_vq: {settings}, and vq_dead_code_threshold scaled with K (a code used at the average rate "
        f"is hit ~6 times or more in the window). Held-out: {images:,} fixed crops of the three held-out "
        f"photographs ({64 * images:,} code slots); usage is the share of the K codes used over that whole set, "
        "perplexity the exponential of the code histogram's entropy. The last column counts usage over as many "
        "fixed crops of the training photographs: codes the training distribution still reaches (the held-out "
        "photographs are a cat, coffee and a flower, while the training ones include a star field, microscopy and "
        "a retina). Goal: usage >= 95% at both sizes, and higher PSNR."
    )
    return {"title": TITLE, "parts": [{"text": text, "table": table(HEADERS, rows)}], "summary": summary}
