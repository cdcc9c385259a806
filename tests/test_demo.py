"""`make demo`'s script runs end to end (a few steps here; the full run is `make demo`)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModel

import hf_vq

ROOT = Path(__file__).resolve().parents[1]


def test_demo_script_trains_saves_reloads_and_reports_psnr(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "--output_dir",
            str(tmp_path),
            "--vqgan_steps",
            "3",
            "--vae_steps",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"held-out digits \(360\): VQ-GAN PSNR (\d+\.\d+) dB, codebook usage (\d+)%", result.stdout)
    assert match, result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(metrics["vqgan"]["psnr"] - float(match.group(1))) < 0.01
    assert abs(100 * metrics["vqgan"]["codebook_usage"] - int(match.group(2))) <= 1
    # the training run's own held-out evaluation agrees with the reloaded model's
    run_metrics = json.loads((tmp_path / "vqgan" / "metrics.json").read_text())
    assert abs(run_metrics["eval_psnr"] - metrics["vqgan"]["psnr"]) < 1e-3

    for name in ("reconstructions.png", "samples.png"):
        with Image.open(tmp_path / name) as image:
            assert image.width > 64 and image.height > 64
    vae = AutoModel.from_pretrained(tmp_path / "vae" / "model")
    assert type(vae) is hf_vq.VAEModel and vae.config.in_channels == 1 and vae.config.sample_size == 16
    assert torch.isfinite(vae.sample(2)).all()
    vqgan = AutoModel.from_pretrained(tmp_path / "vqgan" / "model")
    assert type(vqgan) is hf_vq.VQGANModel
    assert (tmp_path / "vqgan" / "discriminator" / "model.safetensors").is_file()
