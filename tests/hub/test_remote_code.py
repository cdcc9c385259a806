"""Code export: flat modules and `auto_map`, so that `trust_remote_code=True` loads a model without hf_vq."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM

import hf_vq
from hf_vq.hub import export_code

from .conftest import MODELS

REMOTE_LOAD = """
import sys
sys.modules["hf_vq"] = None  # hf_vq cannot be imported in this process
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM
for name, folder in {folders!r}.items():
    auto = AutoModelForCausalLM if name == "prior" else AutoModel
    model = auto.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
    saved = load_file(folder + "/model.safetensors")
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in saved.items()), name
    if name in ("prior", "pixelcnn_prior"):
        assert model.sample_codes(class_labels=[0, 2], top_k=4).shape == (2, 4, 4)
    elif name == "sequence_vae":
        melodies = torch.randint(0, 90, (2, model.config.sequence_length))
        assert model(melodies).logits.shape == (2, model.config.sequence_length, 90)
        assert model.sample(2).shape == melodies.shape
    else:
        images = torch.rand(2, model.config.in_channels, 8, 8) * 2 - 1
        assert model(images).reconstruction.shape == images.shape
    print("loaded", name, type(model).__name__)
model = AutoModel.from_pretrained({folders!r}["vqgan"], trust_remote_code=True)
try:  # a push renders our card, whose templates come with the package only
    model.push_to_hub("org/remote-vqgan")
except ModuleNotFoundError as error:
    assert "model card templates are not installed" in str(error) and "pip install hf_vq" in str(error), error
else:
    raise AssertionError("pushed without the card templates")
assert not any(name.startswith("hf_vq.") for name in sys.modules)
"""


@pytest.mark.slow
def test_exported_code_loads_with_trust_remote_code_where_hf_vq_cannot_be_imported(tmp_path):
    folders = {}
    for name, make in MODELS.items():
        model = make()
        model.save_pretrained(tmp_path / name)
        auto_map = export_code(model, tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["auto_map"] == auto_map
        for path in (tmp_path / name).glob("*.py"):  # flat: no hf_vq, no sub-package, no `from . import x`
            source = path.read_text()
            assert not re.search(r"^\s*(from|import) hf_vq", source, flags=re.M)
            assert "from . import" not in source and "from .." not in source
        folders[name] = str(tmp_path / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-c", REMOTE_LOAD.format(folders=folders)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("loaded") == len(MODELS)

    # With hf_vq imported, its registered class wins over the repo's code.
    model = AutoModel.from_pretrained(tmp_path / "vqgan", trust_remote_code=True)
    assert type(model) is hf_vq.VQGANModel
    prior = AutoModelForCausalLM.from_pretrained(tmp_path / "prior", trust_remote_code=True)
    assert type(prior) is hf_vq.VQPriorForCausalLM


def test_only_hf_vq_models_export():
    with pytest.raises(ValueError, match="not an hf_vq model"):
        export_code(torch.nn.Linear, ".")


def test_exported_files_are_flat_and_shadow_no_installed_module(tmp_path):
    """Everything a model file reaches is exported (its hub and conversion modules too); outside the family's folder
    a module gets its package path in front (`hf_vq/conversion/safetensors.py`: `conversion_safetensors.py`)."""
    prior = MODELS["prior"]()
    prior.save_pretrained(tmp_path)
    auto_map = export_code(prior, tmp_path)
    assert auto_map == {
        "AutoConfig": "configuration_prior.VQPriorConfig",
        "AutoModelForCausalLM": "modeling_prior.VQPriorForCausalLM",
    }
    files = {path.name for path in tmp_path.glob("*.py")}
    assert {"models_modeling_utils.py", "hub_cards.py", "hub_upload.py", "hub_remote_code.py"} <= files
    assert {"conversion_safetensors.py", "utils_configuration_utils.py"} <= files
    assert not files & {f"{name}.py" for name in sys.stdlib_module_names | {"safetensors", "torch", "transformers"}}
    assert "from .conversion_safetensors import" in (tmp_path / "models_modeling_utils.py").read_text()
