"""Pushing to and loading from the Hub through the real huggingface_hub client, against a loopback Hub server.

`HF_ENDPOINT` is read when huggingface_hub is imported, so every client runs in a subprocess with it set.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from .conftest import ROOT
from .hub_server import LoopbackHub
from .test_training import write_recipe

TOKEN = "hf_loopback_secret_token"
SCRIPT_TIMEOUT = 300

TINY = """
import torch, hf_vq
vq = hf_vq.VQGANModel(hf_vq.VQGANConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
                                        latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, sample_size=8))
prior = hf_vq.VQPriorForCausalLM(hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), num_classes=3,
                                                     n_layer=1, n_head=2, n_embd=16))
pipe = hf_vq.VQImageGenerationPipeline(vq, prior)
"""


@pytest.fixture
def hub():
    with LoopbackHub() as server:
        yield server


BLOCK_HF_VQ = """
import sys
sys.modules["hf_vq"] = None  # hf_vq cannot be imported in this process
"""


def client_env(hub: LoopbackHub, home: Path, offline: bool = False, hf_vq_importable: bool = True) -> dict:
    """The environment of a client process: the loopback endpoint, its own cache, a token that must never show."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": TOKEN,
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if not hf_vq_importable:
        env.pop("PYTHONPATH")
    return env


def run_python(
    code: str,
    hub: LoopbackHub,
    home: Path,
    offline: bool = False,
    cwd: Path | None = None,
    hf_vq_importable: bool = True,
) -> subprocess.CompletedProcess:
    """Run `code` in a fresh process; with `hf_vq_importable=False`, hf_vq is blocked (`BLOCK_HF_VQ`) and the
    process runs outside the source tree."""
    if not hf_vq_importable:
        code = BLOCK_HF_VQ + textwrap.dedent(code) + "\nassert not any(m.startswith('hf_vq.') for m in sys.modules)"
        home.mkdir(parents=True, exist_ok=True)
        cwd = cwd or home
    env = client_env(hub, home, offline, hf_vq_importable)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT, cwd=cwd)  # fmt: skip


def test_a_pushed_pipeline_loads_by_name_in_a_fresh_process(hub, tmp_path):
    pushed = run_python(TINY + f"""
pipe.push_to_hub("org/digits-pipe", metrics={{"bits_per_dim": 4.5}}, dataset="builtin:digits", export_code=True)
torch.save(pipe(class_labels=[1, 2], seed=0, output_type="pt"), {str(tmp_path / "images.pt")!r})
""", hub, tmp_path / "home-a")  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    files = set(hub.repos["org/digits-pipe"].files)
    assert {"README.md", "pipeline_config.json", "prior/config.json", "prior/generation_config.json",
            "prior/model.safetensors", "vq_model/config.json", "vq_model/model.safetensors"} <= files  # fmt: skip
    # The code of each sub-model, in its folder and (where transformers 5 looks with `subfolder=`) at the root.
    assert {"vq_model/modeling_vqgan.py", "prior/modeling_prior.py", "modeling_vqgan.py", "modeling_prior.py"} <= files
    loaded_code = f"""
import torch, hf_vq
pipe = hf_vq.VQImageGenerationPipeline.from_pretrained("org/digits-pipe")
expected = torch.load({str(tmp_path / "images.pt")!r})
assert torch.equal(pipe(class_labels=[1, 2], seed=0, output_type="pt"), expected)
from transformers import AutoModel, AutoModelForCausalLM
prior = AutoModelForCausalLM.from_pretrained("org/digits-pipe", subfolder="prior")
assert all(torch.equal(value, pipe.prior.state_dict()[key]) for key, value in prior.state_dict().items())
assert type(AutoModel.from_pretrained("org/digits-pipe", subfolder="vq_model")) is hf_vq.VQGANModel
"""
    loaded = run_python(loaded_code, hub, tmp_path / "home-b")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert TOKEN not in pushed.stdout + pushed.stderr + loaded.stdout + loaded.stderr
    # Offline, from the snapshot the load left in the cache: refs/main names the commit, the files are under it.
    cache = tmp_path / "home-b" / "hub" / "models--org--digits-pipe"
    commit = (cache / "refs" / "main").read_text()
    assert commit == hub.repos["org/digits-pipe"].sha and len(commit) == 40
    assert (cache / "snapshots" / commit / "prior" / "model.safetensors").is_file()
    requests = len(hub.requests)
    offline = run_python(loaded_code, hub, tmp_path / "home-b", offline=True)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert len(hub.requests) == requests  # not one request reached the server

    remote = run_python("""
from transformers import AutoModel, AutoModelForCausalLM
vq_model = AutoModel.from_pretrained("org/digits-pipe", subfolder="vq_model", trust_remote_code=True)
prior = AutoModelForCausalLM.from_pretrained("org/digits-pipe", subfolder="prior", trust_remote_code=True)
assert type(prior).__module__.startswith("transformers_modules.")
codes = prior.sample_codes(class_labels=[1, 2], top_k=4)
assert vq_model.decode_indices(codes).shape == (2, 3, 8, 8)
""", hub, tmp_path / "home-c", hf_vq_importable=False)  # fmt: skip
    assert remote.returncode == 0, remote.stderr[-3000:]


def test_a_prior_pushed_alone_loads_by_name_with_its_card(hub, tmp_path):
    pushed = run_python(TINY + """
url = prior.push_to_hub("org/digits-prior")
print(url)
torch.save(prior.state_dict(), "prior.pt")
""", hub, tmp_path / "home", cwd=tmp_path)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    files = hub.repos["org/digits-prior"].files
    assert sorted(files) == ["README.md", "config.json", "generation_config.json", "model.safetensors"]
    assert b"library_name: hf_vq" in files["README.md"] and b"AutoModelForCausalLM" in files["README.md"]
    loaded = run_python("""
import torch, hf_vq
from transformers import AutoModelForCausalLM
prior = AutoModelForCausalLM.from_pretrained("org/digits-prior")
assert type(prior) is hf_vq.VQPriorForCausalLM
expected = torch.load("prior.pt")
assert all(torch.equal(prior.state_dict()[key], value) for key, value in expected.items())
""", hub, tmp_path / "home-b", cwd=tmp_path)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]


# ----- a training run, pushed by its script, loaded by name -----


def run_script(args: list[str], hub: LoopbackHub, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=client_env(hub, home), capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT)  # fmt: skip


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


def test_a_training_script_pushes_weights_card_grids_and_code_never_checkpoints(module_hub, pushed_run):
    files = sorted(module_hub.repos["org/vqgan-tiny"].files)
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "samples/step-2.png"} <= set(files)
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "modeling_utils.py"} <= set(files)
    assert (pushed_run / "checkpoint-2").is_dir() and (pushed_run / "discriminator").is_dir()
    assert not any(name.startswith(("checkpoint-", "discriminator")) or name == "training_args.json" for name in files)
    card = module_hub.repos["org/vqgan-tiny"].files["README.md"]
    assert card == (pushed_run / "README.md").read_bytes()
    assert card.decode() in module_hub.validated  # the client had the server validate it before committing


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
results = {{result.metric_type: result.metric_value for result in card.data.eval_results}}
assert results["psnr"] == round(metrics["eval_psnr"], 4), (results, metrics)
assert results["codebook_usage"] == round(metrics["eval_codebook_usage"], 4)
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


def test_push_script_failing_commit_leaves_all_as_it_was_and_a_retry_succeeds(module_hub, pushed_run, tmp_path):
    before = {path: path.read_bytes() for path in pushed_run.rglob("*") if path.is_file()}
    push = [str(ROOT / "scripts" / "push_to_hub.py"), str(pushed_run), "org/vqgan-full", "--push_discriminator",
            "--push_training_args"]  # fmt: skip
    module_hub.failing_commits = 6  # the first attempt and the client's 5 retries
    failed = run_script(push, module_hub, tmp_path / "home")
    assert failed.returncode == 1
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


def test_a_repo_with_only_pickled_weights_gets_a_clear_error_and_converts(module_hub, tmp_path):
    upload = """
import torch, hf_vq
from huggingface_hub import HfApi
from safetensors.torch import load_file
model = hf_vq.VQGANModel(hf_vq.VQGANConfig(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
                                           latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, sample_size=8))
model.config.save_pretrained("old")
torch.save(model.state_dict(), "old/pytorch_model.bin")
torch.save(model.state_dict(), "expected.pt")
HfApi().create_repo("org/old-vqgan")
HfApi().upload_folder(repo_id="org/old-vqgan", folder_path="old")
from transformers import AutoModel
try:
    AutoModel.from_pretrained("org/old-vqgan")
except OSError as error:
    print("ERROR:", error)
"""
    uploaded = run_python(upload, module_hub, tmp_path / "home", cwd=tmp_path)
    assert uploaded.returncode == 0, uploaded.stderr[-3000:]
    assert "only pickled ones (pytorch_model.bin)" in uploaded.stdout
    assert "python scripts/convert_to_safetensors.py org/old-vqgan <output_dir>" in uploaded.stdout

    converted = run_script([str(ROOT / "scripts" / "convert_to_safetensors.py"), "org/old-vqgan",
                            str(tmp_path / "converted")], module_hub, tmp_path / "home")  # fmt: skip
    assert converted.returncode == 0, converted.stderr[-3000:]
    model = AutoModel.from_pretrained(tmp_path / "converted")
    expected = torch.load(tmp_path / "expected.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in expected.items())
