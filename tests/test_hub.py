"""Pushing to and loading from the Hub through the real huggingface_hub client, against a loopback Hub server.

`HF_ENDPOINT` is read when huggingface_hub is imported, so every client runs in a subprocess with it set.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import ROOT
from .hub_server import LoopbackHub

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


def run_python(code: str, hub: LoopbackHub, home: Path, offline: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": "hf_loopback_secret_token",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_pushed_pipeline_loads_by_name_in_a_fresh_process(hub, tmp_path):
    pushed = run_python(TINY + f"""
pipe.push_to_hub("org/digits-pipe", model_card="---\\nlibrary_name: hf_vq\\n---\\n# card\\n")
torch.save(pipe(class_labels=[1, 2], seed=0, output_type="pt"), {str(tmp_path / "images.pt")!r})
""", hub, tmp_path / "home-a")  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert sorted(hub.repos["org/digits-pipe"].files) == [
        "README.md", "pipeline_config.json", "prior/config.json", "prior/generation_config.json",
        "prior/model.safetensors", "vq_model/config.json", "vq_model/model.safetensors",
    ]  # fmt: skip
    loaded_code = f"""
import torch, hf_vq
pipe = hf_vq.VQImageGenerationPipeline.from_pretrained("org/digits-pipe")
expected = torch.load({str(tmp_path / "images.pt")!r})
assert torch.equal(pipe(class_labels=[1, 2], seed=0, output_type="pt"), expected)
"""
    loaded = run_python(loaded_code, hub, tmp_path / "home-b")
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "hf_loopback_secret_token" not in pushed.stdout + pushed.stderr + loaded.stdout + loaded.stderr
    # Offline, from the snapshot the load left in the cache: refs/main names the commit, the files are under it.
    cache = tmp_path / "home-b" / "hub" / "models--org--digits-pipe"
    commit = (cache / "refs" / "main").read_text()
    assert commit == hub.repos["org/digits-pipe"].sha and len(commit) == 40
    assert (cache / "snapshots" / commit / "prior" / "model.safetensors").is_file()
    requests = len(hub.requests)
    offline = run_python(loaded_code, hub, tmp_path / "home-b", offline=True)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert len(hub.requests) == requests  # not one request reached the server


def test_a_failed_commit_says_so_leaves_the_local_run_alone_and_a_retry_succeeds(hub, tmp_path):
    run = tmp_path / "run"
    saved = run_python(TINY + f"pipe.save_pretrained({str(run / 'pipeline')!r})", hub, tmp_path / "home")
    assert saved.returncode == 0, saved.stderr[-3000:]
    (run / "samples").mkdir()
    (run / "samples" / "step-1.png").write_bytes(b"png")
    (run / "checkpoint-1").mkdir()
    (run / "checkpoint-1" / "optimizer.bin").write_bytes(b"state")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    push = f"""
from hf_vq.hub import PUBLISHED_PIPELINE, push_training_outputs
print(push_training_outputs({str(run)!r}, "org/prior-run", published=PUBLISHED_PIPELINE))
"""
    hub.failing_commits = 6  # the first attempt and the client's 5 retries
    failed = run_python(push, hub, tmp_path / "home")
    assert failed.returncode != 0 and "500" in failed.stderr and "Internal Error" in failed.stderr
    assert hub.repos["org/prior-run"].files == {}  # nothing half-committed
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # the local run untouched
    hub.failing_commits = 1  # a passing failure: the client's own retry gets through
    retried = run_python(push, hub, tmp_path / "home")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert len(hub.repos["org/prior-run"].commits) == 1
    files = sorted(hub.repos["org/prior-run"].files)
    assert "pipeline_config.json" in files and "prior/model.safetensors" in files and "samples/step-1.png" in files
    assert not any(name.startswith("checkpoint-") or "optimizer" in name for name in files)
