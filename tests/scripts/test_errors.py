"""A user's mistake is one line, not a traceback (issue 16, item 8): every entry point in `training/` and `scripts/`
run with `python` prints a `UsageError` as `error: <message>` and exits with status 2, writing nothing; anything
unexpected keeps its traceback and status 1. And the warnings that meant nothing are gone (item 9).

Each case starts a Python process (importing hf_vq takes seconds here), so all but one are marked slow."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import hf_vq
from hf_vq.utils.cli import run_script

from ..conftest import ROOT, launch

TINY_VAE = dict(in_channels=1, out_channels=1, block_out_channels=[8], layers_per_block=1, norm_num_groups=8,
                latent_channels=2, sample_size=8)  # fmt: skip


def run(script: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # offline: no case may reach the network
    command = [sys.executable, str(ROOT / script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def recipe(tmp_path: Path, learning_rate: float) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"dataset": "builtin:digits", "resolution": 8, "learning_rate": learning_rate}))
    return path


# Each case: tmp_path -> (script, arguments, what the error line names, the output it must not have written).
def training_case(family: str):
    def case(tmp_path):
        script, output_dir = f"training/train_{family}.py", tmp_path / "run"
        if family == "vae":  # a mistake in the recipe
            args = ["--config", recipe(tmp_path, learning_rate=-1), "--output_dir", output_dir]
            return script, args, "`learning_rate` must be > 0.0, got -1", output_dir
        args = ["--config", recipe(tmp_path, 1e-3), "--output_dir", output_dir, "--mixed_precision", "fp8"]
        return script, args, "`mixed_precision` must be one of ['no', 'fp16', 'bf16'], got 'fp8'", output_dir

    return case


def convert_to_safetensors(tmp_path):
    args = [tmp_path / "nowhere", tmp_path / "converted"]
    return "scripts/convert_to_safetensors.py", args, f"no such file or directory: {tmp_path / 'nowhere'}", args[1]


def convert_taming_checkpoint(tmp_path):
    args = ["--checkpoint", tmp_path / "last.ckpt", "--resolution", "16", "--output_dir", tmp_path / "converted"]
    return "scripts/convert_taming_checkpoint.py", args, f"--checkpoint: no such file: {args[1]}", args[-1]


def convert_lpips_weights(tmp_path):
    torch.save({}, tmp_path / "vgg.pth")
    output = tmp_path / "lpips.safetensors"
    args = ["--vgg16", tmp_path / "vgg16.pth", "--lpips", tmp_path / "vgg.pth", "--output", output]
    return "scripts/convert_lpips_weights.py", args, f"--vgg16: no such file: {args[1]}", output


def interpolate(tmp_path):
    hf_vq.VAEModel(hf_vq.VAEConfig(**TINY_VAE)).save_pretrained(tmp_path / "vae")
    output = tmp_path / "strip.png"
    args = ["--model", tmp_path / "vae", "--dataset", "builtin:digits", "--index_b", "5000", "--output", output]
    return "scripts/interpolate.py", args, "--index_a and --index_b must be < 360", output


def push_to_hub(tmp_path):
    (tmp_path / "run").mkdir()
    args = [tmp_path / "run", "org/x", "--dry_run", tmp_path / "staged"]
    return "scripts/push_to_hub.py", args, f"{tmp_path / 'run'} has no final model/", tmp_path / "staged"


def demo(tmp_path):
    args = ["--output_dir", tmp_path / "demo", "--vqgan_steps", "0"]
    return "scripts/demo.py", args, "--vqgan_steps must be >= 1, got 0", tmp_path / "demo"


CASES = {f"train_{family}": training_case(family) for family in ("autoencoder", "vae", "vqvae", "vqgan", "prior")}
CASES |= {case.__name__: case for case in (convert_to_safetensors, convert_taming_checkpoint, convert_lpips_weights,
                                           interpolate, push_to_hub, demo)}  # fmt: skip
FAST = "convert_to_safetensors"  # the one case of the fast subset


@pytest.mark.parametrize(
    "name", [name if name == FAST else pytest.param(name, marks=pytest.mark.slow) for name in CASES]
)
def test_a_checked_mistake_is_one_line_and_status_2_and_writes_nothing(name, tmp_path):
    script, args, named, output = CASES[name](tmp_path)
    result = run(script, *args)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and named in last, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert not output.exists()


@pytest.mark.slow
def test_under_accelerate_launch_the_worker_prints_the_line_and_accelerate_no_notice(tmp_path):
    process = launch([str(ROOT / "training" / "train_vae.py"), "--config", str(recipe(tmp_path, learning_rate=-1)),
                      "--output_dir", str(tmp_path / "run")])  # fmt: skip
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0  # accelerate's launcher reports the worker's status 2 with its own traceback
    assert "error: `learning_rate` must be > 0.0, got -1\n" in output
    assert "were not passed to `accelerate launch`" not in output  # launch() passes every value the notice lists
    assert not (tmp_path / "run").exists()


def test_run_script_exits_2_on_a_usage_error_and_keeps_anything_else(capsys):
    def mistake():
        raise hf_vq.UsageError("`x` must be >= 1, got 0")

    with pytest.raises(SystemExit) as exited:
        run_script(mistake)
    assert exited.value.code == 2 and capsys.readouterr().err == "error: `x` must be >= 1, got 0\n"

    def bug():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):  # uncaught: Python prints its traceback and exits with 1
        run_script(bug)
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as exited:
        run_script(lambda: 3)
    assert exited.value.code == 3


# ----- item 9: warnings that meant nothing -----


def test_vq_vae_gradients_keep_their_parameters_strides():
    """DDP warns "Grad strides do not match bucket view strides" when a gradient's strides differ from its
    parameter's: the quantizer's (B, D, h, w) output was a channels-last view, so the VQ-VAE's decoder ran
    channels-last and its last transposed conv's weight gradient came out channels-last."""
    config = hf_vq.VQVAEConfig(in_channels=1, out_channels=1, hidden_channels=16, residual_hidden_channels=8,
                               num_residual_layers=1, num_downsamples=1, num_vq_embeddings=16, vq_embed_dim=4,
                               sample_size=8)  # fmt: skip
    model = hf_vq.VQVAEModel(config)
    output = model(torch.rand(4, 1, 8, 8) * 2 - 1)
    (output.reconstruction.square().mean() + output.quantizer_loss).backward()
    assert output.quantized.is_contiguous()
    assert {name: p.grad.stride() for name, p in model.named_parameters() if p.grad is not None} == {
        name: p.stride() for name, p in model.named_parameters() if p.grad is not None
    }


def test_a_prior_checkpoint_saves_without_the_shared_tensor_warning_and_loads_tied(tmp_path, caplog):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from hf_vq.training.checkpointing import drop_tied_weights

    config = hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(2, 2), num_classes=2, n_layer=1, n_head=2,
                                 n_embd=16)  # fmt: skip
    accelerator = Accelerator(cpu=True)
    try:
        model = accelerator.prepare(hf_vq.VQPriorForCausalLM(config))
        accelerator.register_save_state_pre_hook(drop_tied_weights)
        with caplog.at_level(logging.WARNING):
            accelerator.save_state(str(tmp_path / "checkpoint"))
        assert "Removed shared tensor" not in caplog.text
        saved = model.transformer.wte.weight.detach().clone()
        with torch.no_grad():
            model.transformer.wte.weight.zero_()
        accelerator.load_state(str(tmp_path / "checkpoint"))
        assert torch.equal(model.transformer.wte.weight, saved)
        assert model.lm_head.weight is model.transformer.wte.weight
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
