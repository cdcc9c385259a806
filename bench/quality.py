"""Quality section: a VQ-GAN trained for the same number of steps on builtin:photos with a plain vector quantizer
(diffusers-style: codebook trained by its loss term, no normalization, random init, no restarts) and with hf_vq's
quantizer settings, at K = 1024 and 16384 codes; held-out PSNR and codebook usage over the held-out set."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from common import REPO_ROOT, markdown_table, run_isolated

sys.path.insert(0, str(REPO_ROOT))

TITLE = "Quality at equal compute: plain VQ against hf_vq's quantizer"
PRELOAD = ("hf_vq", "hf_vq.training")

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


def train(quantizer: str, codes: int, steps: int, output_dir: str) -> dict:
    """Run in a fresh process: one training run through `training/train_vqgan.py`'s loop; its held-out metrics."""
    from hf_vq.training import main

    config = Path(output_dir) / "model.json"
    Path(output_dir).mkdir(parents=True)
    config.write_text(json.dumps({**MODEL, **QUANTIZERS[quantizer], "num_vq_embeddings": codes}))
    metrics = main("vqgan", [
        "--output_dir", str(Path(output_dir) / "run"), "--dataset", "builtin:photos", "--resolution", "32",
        "--model_config", str(config), "--max_train_steps", str(steps), "--train_batch_size", "16",
        "--learning_rate", "2e-4", "--disc_start", str(10 * steps), "--checkpointing_steps", str(steps),
        "--validation_steps", str(steps), "--max_eval_images", "1000", "--report_to", "none",
    ])  # fmt: skip
    return {key: metrics[f"eval_{key}"] for key in ("psnr", "codebook_usage", "codebook_perplexity", "num_images")}


def run(quick: bool, context: dict) -> str:
    steps = 5 if quick else 600
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for codes in SIZES:
            for quantizer in QUANTIZERS:
                folder = str(Path(scratch) / f"{quantizer}-{codes}")
                results[quantizer, codes] = run_isolated("quality:train", timeout_s=3600, quantizer=quantizer,
                                                         codes=codes, steps=steps, output_dir=folder)  # fmt: skip
    rows = []
    for codes in SIZES:
        for quantizer, label in (("plain", "plain VQ (diffusers-style)"), ("hf_vq", "hf_vq settings")):
            result = results[quantizer, codes]
            rows.append([f"{codes:,}", label, f"{result['psnr']:.2f}", f"{result['codebook_usage']:.1%}",
                         f"{result['codebook_perplexity']:.0f}"])  # fmt: skip
    settings = ", ".join(f"{name}={value}" for name, value in QUANTIZERS["hf_vq"].items())
    images = results["plain", SIZES[0]]["num_images"]
    return (
        f"## {TITLE}\n\n"
        f"VQ-GAN {MODEL['block_out_channels']} (f4: 8x8 codes per 32x32 crop), latents of dimension 32, trained "
        f"{steps} steps at batch 16 on random 32x32 crops of `builtin:photos` (no adversarial term: the same "
        f"reconstruction objective for both), learning rate 2e-4, seed 0. Plain: `vq_codebook_update=loss`, random "
        f"codebook, no normalization, no restarts. hf_vq: {settings}. Held-out: {images} fixed crops of the held-out "
        "photographs; usage is the share of the K codes used over that whole set (64 codes per crop, so at most "
        f"{64 * images:,} slots). Goal: usage >= 95% at both sizes, and higher PSNR.\n\n"
        + markdown_table(["K", "quantizer", "held-out PSNR (dB)", "codebook usage", "perplexity"], rows)
    )


if __name__ == "__main__":
    print(run("--quick" in sys.argv, {}))
