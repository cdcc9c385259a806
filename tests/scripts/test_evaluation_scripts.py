"""scripts/evaluate.py and scripts/interpolate.py end to end on the builtin digits."""

import json
import re
import sys

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import save_file
from transformers.utils import logging as transformers_logging

import hf_vq
from hf_vq.metrics.inception import FIDInceptionV3
from hf_vq.training.publishing import render_run_card
from hf_vq.utils.cli import run_script

from ..conftest import load_script

BACKBONE = dict(in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
                sample_size=8)  # fmt: skip


def saved_vqgan(folder):
    model = hf_vq.VQGANModel(hf_vq.VQGANConfig(**BACKBONE, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16))
    model.save_pretrained(folder)
    return model


def exit_status(script, argv: list[str]) -> int:
    """The exit status of `script` run with `argv` as from the command line (`run_script`)."""
    with pytest.raises(SystemExit) as exit_:
        run_script(lambda: script.main(argv))
    return exit_.value.code


@pytest.fixture
def library_bars():
    """The libraries' progress bars as they were before a script's --quiet turned them off (for the next tests)."""
    enabled = transformers_logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled()
    yield
    if enabled[0]:
        transformers_logging.enable_progress_bar()
    if enabled[1]:
        datasets.enable_progress_bars()


def inception_file(path):
    """FID Inception weights with the right layout (random values; the real file cannot be downloaded here)."""
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.rand(value.shape, generator=generator) + 0.5
        if key.endswith("running_var")
        else torch.randn(value.shape, generator=generator) * 0.05
        for key, value in FIDInceptionV3().state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    save_file(state, path)
    return path


@pytest.mark.slow
def test_evaluate_a_vq_model_with_its_prior_and_rfid_and_feed_the_runs_card(tmp_path, capsys):
    saved_vqgan(tmp_path / "run" / "model")
    prior = hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), num_classes=10,
                                                         n_layer=1, n_head=2, n_embd=16))  # fmt: skip
    prior.save_pretrained(tmp_path / "prior")
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"step": 10, "eval_psnr": 1.0}))
    (tmp_path / "run" / "training_args.json").write_text(json.dumps({"training": {"dataset": "builtin:digits"}}))
    script = load_script("evaluate")
    code = script.main([
        "--model", str(tmp_path / "run" / "model"), "--dataset", "builtin:digits", "--split", "test",
        "--max_images", "16", "--batch_size", "10", "--output_dir", str(tmp_path / "eval"),
        "--prior", str(tmp_path / "prior"), "--label_column", "label",
        "--inception_weights", str(inception_file(tmp_path / "inception.safetensors")),
        "--update_run", str(tmp_path / "run"),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 16 and metrics["dataset"] == "builtin:digits"
    assert 0 < metrics["codebook_usage"] <= 1 and metrics["codebook_perplexity"] >= 1
    assert metrics["bits_per_dim"] > 0 and metrics["bits_per_dim_uniform_prior"] > 0
    assert metrics["rfid"] >= 0 and metrics["active_units"] <= metrics["num_latent_channels"] == 4
    assert "ssim" not in metrics  # 8x8 images are smaller than SSIM's 11x11 window
    # 8 originals over their reconstructions, each 8x8 digit shown at 64x64 with make_grid's 2-pixel padding
    assert Image.open(tmp_path / "eval" / "reconstructions.png").size == (8 * 66 + 2, 2 * 66 + 2)
    # The run's metrics.json gains eval_<name>, keeping what it had; its card indexes the new figures.
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run_metrics["step"] == 10 and run_metrics["eval_psnr"] == metrics["psnr"]
    card = ModelCard(str(render_run_card(tmp_path / "run", "org/vqgan-digits")))
    assert card.data.eval_results is None  # builtin:digits is no Hub dataset: the figures are in the card's text
    rows = dict(re.findall(r"^[|] (\w+) [|] ([-+.0-9eE]+) [|]$", card.text, flags=re.M))
    assert float(rows["rfid"]) == pytest.approx(metrics["rfid"], rel=1e-3, abs=0.01)
    assert float(rows["bits_per_dim"]) == pytest.approx(metrics["bits_per_dim"], rel=1e-3, abs=0.01)
    assert "rfid: " in capsys.readouterr().out


def test_evaluate_a_vae_gives_its_bound_and_kl_per_channel_and_names_bad_input(tmp_path, capsys, monkeypatch):
    config = hf_vq.VAEConfig(**BACKBONE, latent_channels=3)
    hf_vq.VAEModel(config).save_pretrained(tmp_path / "vae")
    script = load_script("evaluate")
    args = ["--model", str(tmp_path / "vae"), "--max_images", "12", "--output_dir", str(tmp_path / "eval")]
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: each pass over the set shows a bar
    assert script.main([*args, "--num_samples", "4", "--batch_size", "8"]) == 0
    bars = capsys.readouterr().err
    assert "reconstruction: 100%" in bars and "latents: 100%" in bars and "2/2" in bars
    assert "bits/dim (importance samples): 100%" in bars
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["bits_per_dim_num_samples"] == 4
    assert metrics["bits_per_dim"] <= metrics["elbo_bits_per_dim"] + 1e-3
    assert len(metrics["kl_per_channel"]) == 3 and sum(metrics["kl_per_channel"]) == pytest.approx(metrics["kl"], 1e-3)
    assert exit_status(script, [*args, "--split", "nope"]) == 2  # a user's mistake: one line, status 2
    errors = capsys.readouterr().err
    message = "error: builtin dataset 'builtin:digits' has no split 'nope'; available: ['train', 'test']\n"
    assert "Traceback" not in errors and errors.endswith(message)


def test_evaluate_shows_no_progress_bar_with_quiet(tmp_path, capsys, monkeypatch, library_bars):
    hf_vq.VAEModel(hf_vq.VAEConfig(**BACKBONE, latent_channels=3)).save_pretrained(tmp_path / "vae")
    script = load_script("evaluate")
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = ["--model", str(tmp_path / "vae"), "--max_images", "4", "--num_samples", "1", "--quiet"]
    assert script.main([*argv, "--output_dir", str(tmp_path / "eval")]) == 0
    assert "\r" not in capsys.readouterr().err  # no bar of ours, transformers' or datasets' (they redraw with \r)


def test_evaluate_names_a_prior_of_another_grid_and_a_missing_label_column(tmp_path, capsys):
    saved_vqgan(tmp_path / "vq")  # 8x8 images -> 4x4 codes

    def saved_prior(name, **config):
        config = dict(codebook_size=16, token_grid_size=(4, 4), n_layer=1, n_head=2, n_embd=16) | config
        hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(**config)).save_pretrained(tmp_path / name)
        return str(tmp_path / name)

    script = load_script("evaluate")
    args = ["--model", str(tmp_path / "vq"), "--output_dir", str(tmp_path / "eval"), "--max_images", "4"]
    capsys.readouterr()
    assert exit_status(script, [*args, "--prior", saved_prior("wide", token_grid_size=(8, 8))]) == 2
    assert "prior models 8x8 code grids" in capsys.readouterr().err
    conditional = saved_prior("conditional", num_classes=10)
    assert exit_status(script, [*args, "--prior", conditional]) == 2
    assert "class-conditional (10 classes): pass --label_column" in capsys.readouterr().err
    wide_at_16 = [*args, "--prior", str(tmp_path / "wide"), "--resolution", "16"]  # 16x16 images: 8x8 codes
    assert exit_status(script, [*wide_at_16, "--label_column", "label"]) == 2
    assert "unconditional (num_classes = 0): it takes no --label_column" in capsys.readouterr().err
    # At --resolution 16 the VQ model makes 8x8 grids: the wide prior fits, and evaluates.
    assert script.main(wide_at_16) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["bits_per_dim"] > 0


def test_interpolate_script_writes_a_strip_from_a_dataset_or_from_files(tmp_path, capsys):
    saved_vqgan(tmp_path / "model")
    script = load_script("interpolate")
    output = tmp_path / "strip.png"
    args = ["--model", str(tmp_path / "model"), "--steps", "5", "--output", str(output)]
    assert script.main([*args, "--dataset", "builtin:digits", "--index_a", "0", "--index_b", "3"]) == 0
    assert Image.open(output).size == (7 * 66 + 2, 66 + 2)  # A, 5 points, B; 8x8 digits shown at 64x64, padded
    for name, value in (("a.png", 30), ("b.png", 220)):
        Image.new("L", (20, 20), value).save(tmp_path / name)
    files = ["--image_a", str(tmp_path / "a.png"), "--image_b", str(tmp_path / "b.png"), "--method", "lerp"]
    assert script.main([*args, *files]) == 0
    assert exit_status(script, [*args, "--steps", "1", *files]) == 2
    assert "steps" in capsys.readouterr().err
    assert exit_status(script, args) == 2
    assert "--image_a" in capsys.readouterr().err


def saved_pixelcnn(path, **config):
    config = (
        dict(codebook_size=16, token_grid_size=(4, 4), num_layers=3, hidden_channels=8, output_channels=16) | config
    )
    hf_vq.PixelCNNPriorModel(hf_vq.PixelCNNPriorConfig(**config)).save_pretrained(path)
    return str(path)


def test_evaluate_reports_bits_per_dim_with_a_pixelcnn_prior_and_refuses_what_is_no_prior(tmp_path, capsys):
    saved_vqgan(tmp_path / "vq")  # 8x8 images -> 4x4 codes
    script = load_script("evaluate")
    args = ["--model", str(tmp_path / "vq"), "--output_dir", str(tmp_path / "eval"), "--max_images", "4", "--quiet"]
    prior = saved_pixelcnn(tmp_path / "pixelcnn", num_classes=10)
    assert script.main([*args, "--prior", prior, "--label_column", "label"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0 < metrics["bits_per_dim"] != metrics["bits_per_dim_uniform_prior"]
    assert exit_status(script, [*args, "--prior", str(tmp_path / "vq")]) == 2
    assert "not a prior over codes" in capsys.readouterr().err


def test_complete_script_writes_originals_masked_inputs_and_completions(tmp_path, capsys):
    vq_model = saved_vqgan(tmp_path / "vq")
    prior = hf_vq.PixelCNNPriorModel.from_pretrained(saved_pixelcnn(tmp_path / "pixelcnn", num_classes=10))
    hf_vq.VQImageGenerationPipeline(vq_model, prior).save_pretrained(tmp_path / "pipeline")
    script = load_script("complete")
    output = tmp_path / "completions.png"
    args = ["--pipeline", str(tmp_path / "pipeline"), "--dataset", "builtin:digits", "--label_column", "label",
            "--num_images", "3", "--num_completions", "2", "--output", str(output)]  # fmt: skip
    for mask in ("top", "center", "random", "first:5"):
        assert script.main([*args, "--mask", mask]) == 0
        assert Image.open(output).size == (3 * 66 + 2, 4 * 66 + 2)  # originals, masked, 2 rows of completions
    assert exit_status(script, [*args, "--mask", "diagonal"]) == 2
    assert "--mask must be one of" in capsys.readouterr().err
    assert exit_status(script, [*args, "--mask", "first:17"]) == 2
    assert "first:N needs 0 <= N <= 16" in capsys.readouterr().err
    assert exit_status(script, args[:4]) == 2  # no --label_column for a class-conditional prior
    assert "--label_column" in capsys.readouterr().err


def test_complete_script_with_a_gpt_prior_takes_raster_prefixes_and_names_the_masks_that_work(tmp_path, capsys):
    vq_model = saved_vqgan(tmp_path / "vq")
    prior = hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), n_layer=1,
                                                         n_head=2, n_embd=16))  # fmt: skip
    hf_vq.VQImageGenerationPipeline(vq_model, prior).save_pretrained(tmp_path / "pipeline")
    script = load_script("complete")
    args = ["--pipeline", str(tmp_path / "pipeline"), "--dataset", "builtin:digits", "--num_images", "2",
            "--num_completions", "1", "--top_p", "0.9", "--output", str(tmp_path / "c.png")]  # fmt: skip
    assert script.main([*args, "--mask", "first:6"]) == 0
    assert exit_status(script, [*args, "--mask", "left"]) == 2
    assert "completes only a raster prefix" in capsys.readouterr().err
