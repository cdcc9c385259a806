"""The training loop, run for a few steps on tiny models: outputs, multi-process equivalence, kill-and-resume,
bad data, non-finite losses."""

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from datasets import Dataset, Features, Image
from PIL import Image as PILImage
from safetensors.torch import load_file
from transformers import AutoModel

import hf_vq
import hf_vq.data
from hf_vq.training import FAMILIES, NonFiniteLossError, Trainer, main, parse_arguments

from ..conftest import ROOT, finished, launch

TINY_MODELS = {
    "autoencoder": dict(
        in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
        latent_channels=4, sample_size=8, corruption="gaussian", sparsity_k=40,
    ),
    "vae": dict(
        in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
        latent_channels=4, sample_size=8, beta=0.1, free_bits=0.5,
    ),
    "vqvae": dict(
        in_channels=1, out_channels=1, hidden_channels=16, residual_hidden_channels=8, num_residual_layers=1,
        num_downsamples=1, num_vq_embeddings=16, vq_embed_dim=4, sample_size=8,
    ),
    "vqgan": dict(
        in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
        latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, sample_size=8, vq_codebook_update="ema",
    ),
}  # fmt: skip
TINY_DISCRIMINATOR = dict(num_layers=1, num_filters=8, norm_type="group", norm_num_groups=8)


pytestmark = pytest.mark.slow  # every test here trains


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def write_recipe(path: Path, family: str, **overrides) -> Path:
    recipe = {
        "dataset": "builtin:digits",
        "resolution": 8,
        "train_batch_size": 8,
        "max_train_steps": 4,
        "checkpointing_steps": 2,
        "validation_steps": 2,
        "logging_steps": 1,
        "max_eval_images": 32,
        "shuffle_buffer": 16,
        "report_to": "none",
        "learning_rate": 1e-3,
        "model": TINY_MODELS[family],
    }
    if FAMILIES[family].adversarial:
        recipe.update({"disc_start": 2, "discriminator": TINY_DISCRIMINATOR})
    recipe.update(overrides)
    path.write_text(yaml.safe_dump(recipe))
    return path


def train(tmp_path: Path, family: str, *extra: str, **overrides) -> tuple[Path, dict]:
    output_dir = tmp_path / family
    recipe = write_recipe(tmp_path / f"{family}.yaml", family, **overrides)
    metrics = main(family, ["--config", str(recipe), "--output_dir", str(output_dir), *extra])
    return output_dir, metrics


IMAGE_FAMILIES = [
    name for name, family in FAMILIES.items() if family.data == "images"
]  # the prior: test_prior_training


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_each_family_trains_and_its_outputs_load_back(tmp_path, family):
    output_dir, metrics = train(tmp_path, family)
    model = AutoModel.from_pretrained(output_dir / "model")
    assert type(model) is FAMILIES[family].model_class
    assert model.config.in_channels == 1 and model.config.sample_size == 8
    assert metrics["step"] == 4 and metrics["eval_num_images"] == 32
    assert 0 < metrics["eval_psnr"] < 100
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved["eval_psnr"] == pytest.approx(metrics["eval_psnr"])
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (output_dir / "samples" / "step-2.png").is_file() and (output_dir / "samples" / "step-4.png").is_file()
    arguments = json.loads((output_dir / "training_args.json").read_text())
    assert arguments["family"] == family and arguments["training"]["max_train_steps"] == 4
    if family in ("vqvae", "vqgan"):
        assert 0 < metrics["eval_codebook_usage"] <= 1
    if family == "vqgan":
        discriminator = AutoModel.from_pretrained(output_dir / "discriminator")
        assert type(discriminator).__name__ == "PatchDiscriminator"
        assert (output_dir / "checkpoint-4" / "discriminator.safetensors").is_file()


def test_training_script_runs_from_the_command_line(tmp_path):
    recipe = write_recipe(tmp_path / "vae.yaml", "vae", max_train_steps=2)
    result = subprocess.run(
        [sys.executable, str(ROOT / "training" / "train_vae.py"), "--config", str(recipe),
         "--output_dir", str(tmp_path / "run"), "--learning_rate", "5e-4"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    arguments = json.loads((tmp_path / "run" / "training_args.json").read_text())
    assert arguments["training"]["learning_rate"] == 5e-4  # the flag overrides the recipe
    assert AutoModel.from_pretrained(tmp_path / "run" / "model").config.beta == 0.1


def png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mixed_parquet(directory: Path, bad_only: bool = False) -> Path:
    """A parquet dataset of RGB, grayscale, RGBA, palette, tiny and corrupt images."""
    rng = torch.Generator().manual_seed(0)
    good = []
    for i in range(40):
        pixels = (torch.rand(12, 12, 3, generator=rng) * 255).to(torch.uint8).numpy()
        image = PILImage.fromarray(pixels)
        good.append(png([image, image.convert("L"), image.convert("RGBA"), image.convert("P")][i % 4]))
    bad = [b"not an image at all"] * 5 + [png(PILImage.new("RGB", (2, 2)))] * 3
    records = bad if bad_only else good + bad
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"image": {"bytes": data, "path": None}} for data in records]
    Dataset.from_list(rows, features=Features({"image": Image()})).to_parquet(str(directory / "data.parquet"))
    return directory


def test_a_stream_with_bad_images_trains_and_reports_its_skips(tmp_path):
    data = mixed_parquet(tmp_path / "mixed")
    _, metrics = train(
        tmp_path, "autoencoder", dataset=str(data), eval_split="none", train_batch_size=8, max_train_steps=6
    )
    assert metrics["step"] == 6 and "eval_psnr" not in metrics
    skipped = metrics["data_skipped"]
    assert skipped.get("undecodable") == 5 and skipped.get("tiny") == 3


def test_an_all_corrupt_stream_fails_clearly(tmp_path):
    data = mixed_parquet(tmp_path / "corrupt", bad_only=True)
    with pytest.raises(ValueError, match="image"):
        train(tmp_path, "autoencoder", dataset=str(data), eval_split="none")


def nan_at(steps: set[int], term: str = "reconstruction"):
    family = FAMILIES["vqvae"]
    calls = {"n": 0}

    def objective(model, batch, context):
        terms, output = family.objective(model, batch, context)
        calls["n"] += 1
        if calls["n"] in steps:
            terms[term] = terms[term] * float("nan")
        return terms, output

    return dataclasses.replace(family, objective=objective)


def run_trainer(tmp_path: Path, family, family_name: str = "vqvae", **overrides) -> tuple[Trainer, dict]:
    recipe = write_recipe(tmp_path / "r.yaml", family_name, **overrides)
    parsed = parse_arguments(argv=["--config", str(recipe), "--output_dir", str(tmp_path / "run")])
    trainer = family.trainer_class(family, parsed)
    return trainer, trainer.run()


@pytest.mark.parametrize("family", ["vqgan", "vae"])
def test_a_trainer_holds_only_the_attributes_its_init_declares(tmp_path, family):
    recipe = write_recipe(tmp_path / "r.yaml", family, max_train_steps=2)
    spec = FAMILIES[family]
    parsed = parse_arguments(with_gan=spec.adversarial, argv=["--config", str(recipe), "--output_dir", str(tmp_path)])
    trainer = spec.trainer_class(spec, parsed)
    declared = set(vars(trainer))
    assert trainer.accelerator is None and trainer.model is None and trainer.stream is None
    trainer.run()
    assert set(vars(trainer)) == declared
    assert trainer.global_step == 2 and trainer.stream is not None
    assert (trainer.adversarial is not None) == spec.adversarial


def test_a_nan_in_the_loss_is_skipped(tmp_path):
    _, metrics = run_trainer(tmp_path, nan_at({2}))
    assert metrics["step"] == 4 and metrics["nonfinite_steps_skipped"] == 1
    model = AutoModel.from_pretrained(tmp_path / "run" / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(model.quantize.embedding.weight).all()


def test_persistent_nans_stop_the_run_naming_the_term_and_keep_the_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="quantizer") as error:
        run_trainer(tmp_path, nan_at(set(range(3, 100)), term="quantizer"), max_nonfinite_steps=3)
    assert "checkpoint-2" in str(error.value)
    assert (tmp_path / "run" / "checkpoint-2" / "trainer_state.json").is_file()


def test_checkpoints_total_limit_and_incomplete_saves(tmp_path):
    output_dir = tmp_path / "vqvae"
    output_dir.mkdir()
    (output_dir / ".tmp-checkpoint-99").mkdir()  # a save that was killed midway
    train(tmp_path, "vqvae", max_train_steps=6, checkpoints_total_limit=2)
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert not list(output_dir.glob(".tmp-*"))


def test_two_processes_and_one_with_the_same_global_batch_end_with_the_same_parameters(tmp_path):
    # One parquet file (one shard) and no shuffling: process r reads records r, r + 2, ..., so that together the two
    # processes see exactly the one-process batches.
    data = tmp_path / "digits"
    data.mkdir()
    hf_vq.data.load_builtin("digits", split="train").select(range(64)).to_parquet(str(data / "train.parquet"))
    common = dict(
        dataset=str(data), eval_split="none", shuffle_buffer=1, max_train_steps=3, checkpointing_steps=10,
        validation_steps=10, disc_start=100, learning_rate=1e-4,
    )  # fmt: skip
    # No parameter whose true gradient is 0 (attention key biases, conv biases before a one-channel GroupNorm): Adam
    # turns their float noise into steps of size lr, which no two summation orders share.
    model = {
        **TINY_MODELS["vqgan"], "norm_num_groups": 4, "mid_block_add_attention": False,
        "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
    }  # fmt: skip
    one = write_recipe(tmp_path / "one.yaml", "vqgan", train_batch_size=8, model=model, **common)
    two = write_recipe(tmp_path / "two.yaml", "vqgan", train_batch_size=4, model=model, **common)
    script = str(ROOT / "training" / "train_vqgan.py")
    finished(launch([script, "--config", str(one), "--output_dir", str(tmp_path / "one")]))
    finished(launch([script, "--config", str(two), "--output_dir", str(tmp_path / "two")], num_processes=2))
    # a single process with the per-process batch only: what the two processes would give without synchronization
    finished(launch([script, "--config", str(two), "--output_dir", str(tmp_path / "alone")]))

    def parameters(run: str, part: str) -> dict[str, torch.Tensor]:
        return load_file(tmp_path / run / part / "model.safetensors")

    for part in ("model", "discriminator"):
        a, b = parameters("one", part), parameters("two", part)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=f"{part}: {key}")
        alone = parameters("alone", part)
        assert max((a[k].float() - alone[k].float()).abs().max().item() for k in a) > 1e-4  # the test can fail
    ema = parameters("one", "model")["quantize.ema_cluster_size"]
    assert not torch.equal(ema, torch.ones_like(ema))  # the EMA codebook moved, identically on both processes


def test_a_run_killed_mid_training_and_resumed_ends_like_an_uninterrupted_one(tmp_path):
    recipe = write_recipe(
        tmp_path / "r.yaml", "vqgan", max_train_steps=60, checkpointing_steps=5, checkpoints_total_limit=2,
        validation_steps=1000, logging_steps=1000, disc_start=2, random_flip=True,
    )  # fmt: skip
    command = [sys.executable, str(ROOT / "training" / "train_vqgan.py"), "--config", str(recipe)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(output_dir: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*command, "--output_dir", str(output_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
        )  # fmt: skip

    finished(run(tmp_path / "straight"))
    interrupted = tmp_path / "interrupted"
    process = run(interrupted)
    deadline = time.time() + 240
    while not (interrupted / "checkpoint-10").exists():
        assert process.poll() is None, process.communicate()[0][-4000:]
        assert time.time() < deadline, "no checkpoint-10 in time"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL and not (interrupted / "model").exists()
    finished(run(interrupted, "--resume_from_checkpoint", "latest"))

    for part in ("model", "discriminator"):
        a = load_file(tmp_path / "straight" / part / "model.safetensors")
        b = load_file(interrupted / part / "model.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{part}: {key}")
