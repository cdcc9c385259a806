"""`make demo`'s script runs end to end (a few steps here; the full run is `make demo`)."""

import json
import re
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoModel

import hf_vq

from ..conftest import ROOT


@pytest.mark.slow
def test_demo_script_trains_tokenizes_samples_and_reports(tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--output_dir", str(tmp_path),
               "--vqgan_steps", "3", "--prior_steps", "3"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    match = re.search(
        r"held-out digits \(360\): PSNR (\d+\.\d+) dB, SSIM (0\.\d+), codebook usage (\d+)% .* bits/dim (\d+\.\d+) .*"
        r"class accuracy of 500 samples: (\d+\.\d)%",
        result.stdout,
    )
    assert match, result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert abs(metrics["psnr"] - float(match.group(1))) < 0.01
    assert abs(metrics["ssim"] - float(match.group(2))) < 1e-3
    assert abs(100 * metrics["codebook_usage"] - int(match.group(3))) <= 1
    assert abs(metrics["bits_per_dim"] - float(match.group(4))) < 1e-3
    assert abs(100 * metrics["sample_class_accuracy"] - float(match.group(5))) < 0.1
    # The VQ-GAN run's own held-out evaluation agrees with the reloaded pipeline's.
    run_metrics = json.loads((tmp_path / "vqgan" / "metrics.json").read_text())
    assert abs(run_metrics["eval_psnr"] - metrics["psnr"]) < 1e-3
    # bits/dim: the learned prior's part is what differs from the uniform prior's (6 bits per code of 256 pixels).
    assert metrics["bits_per_dim"] > 0 and metrics["bits_per_dim_uniform_prior"] > 16 * 6 / 256

    with Image.open(tmp_path / "samples.png") as image:
        assert image.size == (10 * 66 + 2, 10 * 66 + 2)  # 10 x 10 digits of 16 px at 4x, 2 px padding
    with Image.open(tmp_path / "reconstructions.png") as image:
        assert image.width > 64 and image.height > 64
    with Image.open(tmp_path / "interpolation.png") as image:
        assert image.size == (12 * 66 + 2, 66 + 2)  # a 3, ten decoded points, a 7
    pipe = hf_vq.VQImageGenerationPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.prior.config.num_classes == 10 and pipe.prior.config.token_grid_size == (4, 4)
    card = ModelCard.load(tmp_path / "pipeline" / "README.md")
    assert card.data.library_name == "hf_vq" and "hf_vq" in card.data.tags
    assert card.data.eval_results is None  # builtin:digits is no Hub dataset: the figures are in the card's text
    rows = dict(re.findall(r"^[|] (\w+) [|] ([-+.0-9eE]+) [|]$", card.text, flags=re.M))
    assert float(rows["sample_class_accuracy"]) == pytest.approx(metrics["sample_class_accuracy"], abs=0.01)
    assert type(AutoModel.from_pretrained(tmp_path / "vqgan" / "model")) is hf_vq.VQGANModel
