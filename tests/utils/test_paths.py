"""Missing local paths (datasets, models, pipelines, the scripts' flags) fail at once, without asking the Hub."""

import subprocess
import sys

import pytest
import torch

import hf_vq
from hf_vq import UsageError
from hf_vq.data import load_code_dataset, load_image_dataset

from ..conftest import ROOT, vqgan
from ..hub.conftest import SCRIPT_TIMEOUT, client_env
from ..hub_server import LoopbackHub

# Every call that must fail without a request; then, once the test has read the server's record, a Hub id that must
# reach the server (the control: the client really talks to the loopback endpoint, so an empty record means no
# request, not a client pointed elsewhere).
CLIENT = """
import importlib.util
import sys
from transformers import AutoModel
import hf_vq
from hf_vq.data import load_code_dataset, load_image_dataset

def script(name):
    spec = importlib.util.spec_from_file_location(name, f"scripts/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

evaluate, encode = script("evaluate"), script("encode_dataset")
calls = {
    "dataset": lambda: load_image_dataset("./no/such/dataset"),
    "codes": lambda: load_code_dataset("./no/such/codes"),
    "model class": lambda: hf_vq.VQGANModel.from_pretrained("./no/such/model"),
    "pipeline": lambda: hf_vq.VQImageGenerationPipeline.from_pretrained("~/no/such/pipeline"),
    "evaluate --model": lambda: evaluate.main(["--model", "./no/such/model", "--output_dir", "out"]),
    "evaluate --prior": lambda: evaluate.main(["--model", "org/vq", "--prior", "./no/such/prior",
                                               "--output_dir", "out"]),
    "encode --vq_model": lambda: encode.main(["--vq_model", "./no/such/model", "--dataset", "builtin:digits",
                                              "--output_dir", "out"]),
    "encode --dataset": lambda: encode.main(["--vq_model", "org/vq", "--dataset", "./no/such/dataset",
                                             "--output_dir", "out"]),
}
for name, call in calls.items():
    try:
        call()
    except hf_vq.UsageError as error:
        print(f"{name} | {error}")
    else:
        raise SystemExit(f"{name}: no error")
print("checked", flush=True)
sys.stdin.readline()
try:
    AutoModel.from_pretrained("org/control")
except OSError:
    print("control reached the hub")
"""


def test_missing_local_paths_fail_without_any_request_to_the_hub(tmp_path):
    with LoopbackHub() as hub:
        command = [sys.executable, "-c", CLIENT]
        stderr = tmp_path / "stderr.txt"  # a file: a full pipe that nobody reads would block the client
        with stderr.open("w") as errors, subprocess.Popen(
            command, env=client_env(hub, tmp_path / "home"), cwd=ROOT, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=errors,
        ) as client:  # fmt: skip
            lines = []
            while (line := client.stdout.readline()) not in ("", "checked\n"):
                lines.append(line.rstrip("\n"))
            during_checks = list(hub.requests)
            control, _ = client.communicate("go\n", timeout=SCRIPT_TIMEOUT)
        after = list(hub.requests)
    assert client.returncode == 0, stderr.read_text()[-3000:]
    assert during_checks == [], during_checks
    assert after and any("org/control" in path for _, path in after), after
    assert "control reached the hub" in control
    assert dict(line.split(" | ", 1) for line in lines) == {
        "dataset": "--dataset: no such file or directory: ./no/such/dataset",
        "codes": "--dataset: no such file or directory: ./no/such/codes",
        "model class": "VQGANModel.from_pretrained: no such file or directory: ./no/such/model",
        "pipeline": "VQImageGenerationPipeline.from_pretrained: no such file or directory: ~/no/such/pipeline",
        "evaluate --model": "--model: no such file or directory: ./no/such/model",
        "evaluate --prior": "--prior: no such file or directory: ./no/such/prior",
        "encode --vq_model": "--vq_model: no such file or directory: ./no/such/model",
        "encode --dataset": "--dataset: no such file or directory: ./no/such/dataset",
    }


def test_a_missing_local_source_is_a_usage_error_and_hub_ids_and_builtins_pass(tmp_path):
    for load in (load_image_dataset, load_code_dataset):
        with pytest.raises(UsageError, match="--dataset: no such file or directory: ./missing"):
            load("./missing")
    with pytest.raises(UsageError, match=f"no such file or directory: {tmp_path / 'model'}"):
        hf_vq.VQGANModel.from_pretrained(tmp_path / "model")
    assert load_image_dataset("builtin:digits", split="test").num_rows == 360


def test_a_model_path_with_a_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    model = vqgan()
    model.save_pretrained(tmp_path / "model")
    loaded = hf_vq.VQGANModel.from_pretrained("~/model")
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)
