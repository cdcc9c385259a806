"""Pushing models and pipelines to a loopback Hub through the real huggingface_hub client (`hf_vq.hub.upload`,
`model.push_to_hub`, `VQImageGenerationPipeline.push_to_hub`), and loading them back by name in fresh processes."""

import pytest

from .conftest import TINY, TOKEN, run_python


@pytest.mark.slow
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


@pytest.mark.slow
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
