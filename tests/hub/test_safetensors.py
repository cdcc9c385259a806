"""Safetensors only: loading never unpickles, pickled weights get a clear error, and the one explicit conversion
(`hf_vq.conversion.safetensors`, `scripts/convert_to_safetensors.py`) reads tensors only."""

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM

import hf_vq
from hf_vq.conversion.safetensors import convert_to_safetensors
from hf_vq.models import MODEL_CLASSES

from ..conftest import ROOT, load_script
from .conftest import MODELS, run_python, run_script


def pickled_only(model, folder: Path, name: str = "pytorch_model.bin") -> Path:
    model.save_pretrained(folder)
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / name)
    return folder


def test_loading_never_unpickles_and_pickled_weights_get_a_clear_error(tmp_path, monkeypatch):
    model = MODELS["vqgan"]()
    model.save_pretrained(tmp_path / "safe")
    pickled_only(model, tmp_path / "pickled")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    AutoModel.from_pretrained(tmp_path / "safe")  # safetensors: fine
    with pytest.raises(OSError, match=r"only pickled ones \(pytorch_model.bin\).*scripts/convert_to_safetensors.py"):
        AutoModel.from_pretrained(tmp_path / "pickled")
    with pytest.raises(ValueError, match="use_safetensors=False"):
        hf_vq.VQGANModel.from_pretrained(tmp_path / "safe", use_safetensors=False)


@pytest.mark.parametrize("name", ["vqgan", "prior"])
def test_the_conversion_script_turns_pickled_weights_into_a_loadable_model(tmp_path, name):
    model = MODELS[name]()
    pickled_only(model, tmp_path / "pickled", name="model.pt")
    script = load_script("convert_to_safetensors")
    assert script.main([str(tmp_path / "pickled"), str(tmp_path / "converted")]) == 0
    auto = AutoModelForCausalLM if name == "prior" else AutoModel
    converted = auto.from_pretrained(tmp_path / "converted")
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    with pytest.raises(hf_vq.UsageError, match="not an empty folder"):  # never overwrites
        script.main([str(tmp_path / "pickled"), str(tmp_path / "converted")])


def test_the_conversion_refuses_pickles_that_are_not_tensors_and_weights_that_do_not_fit(tmp_path):
    model = MODELS["vqgan"]()
    folder = pickled_only(model, tmp_path / "evil")
    torch.save({"weight": torch.zeros(1), "payload": Path("x")}, folder / "pytorch_model.bin")  # not a tensor
    with pytest.raises(ValueError, match="Python objects other than tensors"):
        convert_to_safetensors(folder, tmp_path / "out", model_classes=MODEL_CLASSES)
    torch.save({"encoder.conv_in.weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="do not fit its config"):
        convert_to_safetensors(folder, tmp_path / "out", model_classes=MODEL_CLASSES)
    torch.save({}, folder / "extra.pt")
    with pytest.raises(ValueError, match="2 pickled weight files"):
        convert_to_safetensors(folder, tmp_path / "out", model_classes=MODEL_CLASSES)
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.slow
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


def test_a_cached_repo_with_only_pickled_weights_gets_our_error_offline(hub, tmp_path):
    """Offline, the Hub cannot be listed: the cached snapshot is, and the error still names the conversion script."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "home" / "hub" / "models--org--old-vqgan"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    pickled_only(MODELS["vqgan"](), repo / "snapshots" / commit)
    load = """
from transformers import AutoModel
import hf_vq
for load in (AutoModel.from_pretrained, hf_vq.VQGANModel.from_pretrained):
    try:
        load("org/old-vqgan")
    except OSError as error:
        print("ERROR:", error)
"""
    loaded = run_python(load, hub, tmp_path / "home", offline=True, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.count("only pickled ones (pytorch_model.bin)") == 2, loaded.stdout
    assert loaded.stdout.count("python scripts/convert_to_safetensors.py org/old-vqgan <output_dir>") == 2
