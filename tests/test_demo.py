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
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--output_dir", str(tmp_path), "--max_train_steps", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"held-out reconstruction PSNR on 360 test digits: (\d+\.\d+) dB", result.stdout)
    assert match, result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(metrics["test_psnr"] - float(match.group(1))) < 0.01

    for name in ("reconstructions.png", "samples.png"):
        with Image.open(tmp_path / name) as image:
            assert image.width > 64 and image.height > 64
    model = AutoModel.from_pretrained(tmp_path / "model")
    assert type(model) is hf_vq.VAEModel
    assert model.config.in_channels == 1 and model.config.sample_size == 16
    assert torch.isfinite(model.sample(2)).all()
