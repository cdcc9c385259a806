"""Publishing a training run (`hf_vq.training.publishing`, `scripts/push_to_hub.py`, `--push_to_hub`): what is
staged, and a tiny training run pushed to a loopback Hub and loaded back by name, online, offline and as remote
code."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

import hf_vq
from hf_vq.training.publishing import stage_training_outputs

from ..conftest import ROOT, load_script
from ..hub.conftest import METRICS, MODELS, TOKEN, TRAINING_ARGS, run_python, run_script
from ..hub_server import LoopbackHub
from .test_trainer import write_recipe

# ----- staging a training run -----


def fake_run(tmp_path: Path, name: str = "vqgan") -> Path:
    """A finished run's output folder as the trainer leaves it."""
    run = tmp_path / "run"
    MODELS[name]().save_pretrained(run / "model")
    hf_vq.PatchDiscriminator(hf_vq.PatchDiscriminatorConfig(num_layers=1, num_filters=8)).save_pretrained(
        run / "discriminator"
    )
    (run / "samples").mkdir()
    for step in (5, 10):
        (run / "samples" / f"step-{step}.png").write_bytes(b"png")
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-10" / "optimizer.bin").write_bytes(b"state")
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / "training_args.json").write_text(json.dumps(TRAINING_ARGS))
    return run


def test_staging_a_run_publishes_the_model_card_and_grids_never_checkpoints(tmp_path):
    run = fake_run(tmp_path)
    files = stage_training_outputs(run, tmp_path / "plain", "org/vqgan-x")
    assert files == ["README.md", "config.json", "metrics.json", "model.safetensors", "samples/step-10.png",
                     "samples/step-5.png"]  # fmt: skip
    card = ModelCard((tmp_path / "plain" / "README.md").read_text())
    assert "![samples](samples/step-10.png)" in card.text  # the last grid
    assert {r.metric_type for r in card.data.eval_results} == {"psnr", "codebook_usage"}

    files = stage_training_outputs(run, tmp_path / "all", "org/vqgan-x", push_discriminator=True,
                                   push_training_args=True, export_code=True)  # fmt: skip
    assert {"discriminator/config.json", "discriminator/model.safetensors", "training_args.json"} <= set(files)
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "modules_backbone.py", "modules_quantizers.py"} <= {*files}
    assert not any("checkpoint" in name or name.endswith(".bin") for name in files)
    assert "trust_remote_code=True" in (tmp_path / "all" / "README.md").read_text()

    with pytest.raises(ValueError, match="no final model/"):
        stage_training_outputs(tmp_path / "nothing", tmp_path / "x", "org/x")
    (run / "training_args.json").unlink()
    with pytest.raises(ValueError, match="no training_args.json"):
        stage_training_outputs(run, tmp_path / "y", "org/x", push_training_args=True)
    (run / "model" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no safetensors weights"):
        stage_training_outputs(run, tmp_path / "z", "org/x")


def test_push_script_dry_run_lists_what_would_be_uploaded(tmp_path, capsys):
    run = fake_run(tmp_path)
    script = load_script("push_to_hub")
    assert script.main([str(run), "org/vqgan-x", "--dry_run", str(tmp_path / "staged"), "--export_code"]) == 0
    listed = capsys.readouterr().out.split()
    assert "modeling_vqgan.py" in listed and "README.md" in listed and "discriminator/config.json" not in listed
    with pytest.raises(hf_vq.UsageError, match="no final model/"):
        script.main([str(tmp_path / "none"), "org/x", "--dry_run", str(tmp_path / "s2")])


# ----- a training run, pushed by its script, loaded by name -----


@pytest.fixture(scope="module")
def module_hub():
    with LoopbackHub() as server:
        yield server


@pytest.fixture(scope="module")
def pushed_run(module_hub, tmp_path_factory):
    """A tiny VQ-GAN trained by training/train_vqgan.py, which pushes it (with its code) to org/vqgan-tiny."""
    tmp = tmp_path_factory.mktemp("pushed")
    recipe = write_recipe(tmp / "vqgan.yaml", "vqgan", max_train_steps=2, checkpointing_steps=2, validation_steps=2)
    run = tmp / "run"
    trained = run_script(
        [str(ROOT / "training" / "train_vqgan.py"), "--config", str(recipe), "--output_dir", str(run),
         "--push_to_hub", "--hub_model_id", "org/vqgan-tiny", "--export_code"],
        module_hub, tmp / "home",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert TOKEN not in trained.stdout + trained.stderr
    return run


@pytest.mark.slow
def test_a_training_script_pushes_weights_card_grids_and_code_never_checkpoints(module_hub, pushed_run):
    files = sorted(module_hub.repos["org/vqgan-tiny"].files)
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "samples/step-2.png"} <= set(files)
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "models_modeling_utils.py"} <= set(files)
    assert (pushed_run / "checkpoint-2").is_dir() and (pushed_run / "discriminator").is_dir()
    assert not any(name.startswith(("checkpoint-", "discriminator")) or name == "training_args.json" for name in files)
    card = module_hub.repos["org/vqgan-tiny"].files["README.md"]
    assert card == (pushed_run / "README.md").read_bytes()
    assert card.decode() in module_hub.validated  # the client had the server validate it before committing


@pytest.mark.slow
def test_the_pushed_model_loads_by_name_online_then_offline_and_its_card_parses_and_runs(
    module_hub, pushed_run, tmp_path
):
    check = f"""
import json, re, torch, hf_vq
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModel
model = AutoModel.from_pretrained("org/vqgan-tiny")
assert type(model) is hf_vq.VQGANModel
saved = load_file({str(pushed_run / "model" / "model.safetensors")!r})
assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())
card = ModelCard.load("org/vqgan-tiny")
metrics = json.loads(open({str(pushed_run / "metrics.json")!r}).read())
assert card.data.eval_results is None  # builtin:digits is no Hub dataset: the figures are in the card's text
rows = dict(re.findall(r"^[|] (\\w+) [|] ([-+.0-9eE]+) [|]$", card.text, flags=re.M))
assert abs(float(rows["psnr"]) - metrics["eval_psnr"]) < 0.01, (rows, metrics)
assert abs(float(rows["codebook_usage"]) - metrics["eval_codebook_usage"]) < 0.01
assert card.data.library_name == "hf_vq" and "vq-gan" in card.data.tags
(snippet,) = re.findall(r"```python\\n(.*?)```", card.text, flags=re.S)
namespace = {{}}
exec(snippet, namespace)
assert namespace["reconstruction"].shape == namespace["images"].shape
print("ok")
"""
    online = run_python(check, module_hub, tmp_path / "home")
    assert online.returncode == 0 and "ok" in online.stdout, online.stderr[-3000:]
    cache = tmp_path / "home" / "hub" / "models--org--vqgan-tiny"
    commit = (cache / "refs" / "main").read_text()
    assert (
        commit == module_hub.repos["org/vqgan-tiny"].sha and (cache / "snapshots" / commit / "config.json").is_file()
    )
    requests = len(module_hub.requests)
    offline = run_python(check, module_hub, tmp_path / "home", offline=True)
    assert offline.returncode == 0 and "ok" in offline.stdout, offline.stderr[-3000:]
    assert len(module_hub.requests) == requests  # not one request reached the server
    assert TOKEN not in online.stdout + online.stderr + offline.stdout + offline.stderr


@pytest.mark.slow
def test_the_pushed_code_loads_with_trust_remote_code_where_hf_vq_cannot_be_imported(module_hub, pushed_run, tmp_path):
    remote = f"""
import torch
from safetensors.torch import load_file
from transformers import AutoModel
model = AutoModel.from_pretrained("org/vqgan-tiny", trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
saved = load_file({str(pushed_run / "model" / "model.safetensors")!r})
assert all(torch.equal(model.state_dict()[key], value) for key, value in saved.items())
images = torch.rand(2, 1, 8, 8) * 2 - 1
assert torch.equal(model.decode_indices(model.encode_indices(images)), model(images).reconstruction)
print("ok")
"""
    loaded = run_python(remote, module_hub, tmp_path / "home", hf_vq_importable=False)
    assert loaded.returncode == 0 and "ok" in loaded.stdout, loaded.stderr[-3000:]


@pytest.mark.slow
def test_push_script_failing_commit_leaves_all_as_it_was_and_a_retry_succeeds(module_hub, pushed_run, tmp_path):
    before = {path: path.read_bytes() for path in pushed_run.rglob("*") if path.is_file()}
    push = [str(ROOT / "scripts" / "push_to_hub.py"), str(pushed_run), "org/vqgan-full", "--push_discriminator",
            "--push_training_args"]  # fmt: skip
    module_hub.failing_commits = 6  # the first attempt and the client's 5 retries
    failed = run_script(push, module_hub, tmp_path / "home")
    assert failed.returncode == 1 and "Traceback" in failed.stderr  # a failed upload is no usage error
    assert "the upload to org/vqgan-full failed, nothing was committed" in failed.stderr and "500" in failed.stderr
    assert module_hub.repos["org/vqgan-full"].files == {} and module_hub.repos["org/vqgan-full"].commits == []
    assert {path: path.read_bytes() for path in pushed_run.rglob("*") if path.is_file()} == before

    module_hub.failing_commits = 0
    retried = run_script(push, module_hub, tmp_path / "home")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "pushed" in retried.stdout and len(module_hub.repos["org/vqgan-full"].commits) == 1
    files = set(module_hub.repos["org/vqgan-full"].files)
    assert {"discriminator/config.json", "discriminator/model.safetensors", "training_args.json"} <= files
    assert not any(name.startswith("checkpoint-") or name.endswith(".py") for name in files)
    assert {path: path.read_bytes() for path in pushed_run.rglob("*") if path.is_file()} == before
    assert TOKEN not in failed.stdout + failed.stderr + retried.stdout + retried.stderr
