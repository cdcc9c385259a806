"""Model cards, code export, safetensors-only loading and the conversion of pickled weights, without a Hub.

The round trips through the real Hub client (push, load by name, offline cache, a failing server) are in
test_hub.py.
"""

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM

import hf_vq
from hf_vq.hub import (
    FAMILY_CARDS,
    check_model_card,
    convert_to_safetensors,
    render_model_card,
    render_pipeline_card,
    stage_training_outputs,
)
from hf_vq.remote_code import export_code

from .conftest import ROOT, load_script

BACKBONE = dict(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8, sample_size=8)
MODELS = {
    "autoencoder": lambda: hf_vq.AutoencoderModel(hf_vq.AutoencoderConfig(**BACKBONE, latent_channels=4, top_k=8)),
    "vae": lambda: hf_vq.VAEModel(hf_vq.VAEConfig(**BACKBONE, latent_channels=4, free_bits=0.5)),
    "vqvae": lambda: hf_vq.VQVAEModel(
        hf_vq.VQVAEConfig(
            hidden_channels=16,
            residual_hidden_channels=8,
            num_residual_layers=1,
            num_downsamples=1,
            num_vq_embeddings=16,
            vq_embed_dim=4,
            sample_size=8,
        )  # fmt: skip
    ),
    "vqgan": lambda: hf_vq.VQGANModel(
        hf_vq.VQGANConfig(**BACKBONE, latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16)
    ),
    "vqgan_fsq": lambda: hf_vq.VQGANModel(
        hf_vq.VQGANConfig(
            **BACKBONE,
            latent_channels=8,
            vq_embed_dim=3,
            quantizer_type="fsq",
            fsq_levels=[3, 3, 2],
            num_vq_embeddings=None,
        )  # fmt: skip
    ),
    "prior": lambda: hf_vq.VQPriorForCausalLM(
        hf_vq.VQPriorConfig(codebook_size=16, token_grid_size=(4, 4), num_classes=3, n_layer=1, n_head=2, n_embd=16)
    ),
}
TRAINING_ARGS = {
    "family": "vqgan",
    "training": {"dataset": "org/celeba", "eval_split": "validation", "max_train_steps": 10, "learning_rate": 4.5e-6,
                 "lpips_weights": None, "perceptual_weight": 1.0, "output_dir": "runs/x"},
    "gan": {"disc_start": 5, "disc_weight": 0.8},
    "num_processes": 2,
}  # fmt: skip
METRICS = {"eval_psnr": 25.123456, "eval_codebook_usage": 0.75, "eval_num_images": 32, "step": 10, "data_skipped": {}}


def python_blocks(card: ModelCard | str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", str(card), flags=re.S)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_family_has_a_card_whose_metadata_and_results_parse_and_whose_snippet_runs(name, tmp_path):
    model = MODELS[name]()
    model.save_pretrained(tmp_path / name)
    repo_id = str(tmp_path / name)  # a local folder loads like a repo id: the snippet runs against it
    inputs = dict(repo_id=repo_id, metrics=METRICS, dataset="org/celeba", training_args=TRAINING_ARGS,
                  samples_image="samples/step-10.png")  # fmt: skip
    card = render_model_card(model.config, **inputs)
    assert str(card) == str(render_model_card(model.config, **inputs))  # a pure function of its inputs

    loaded = ModelCard(str(card))  # what the Hub and ModelCard.load read
    data = loaded.data
    assert data.library_name == "hf_vq" and data.license == "apache-2.0" and data.datasets == ["org/celeba"]
    assert data.tags[0] == "hf_vq" and FAMILY_CARDS[model.config.model_type][1][0] in data.tags
    results = {result.metric_type: result for result in data.eval_results}
    assert results["psnr"].metric_value == 25.1235 and results["codebook_usage"].metric_value == 0.75
    assert results["psnr"].dataset_name == "org/celeba" and results["psnr"].dataset_split == "validation"
    assert "![samples](samples/step-10.png)" in str(card)
    assert "| learning_rate | `4.5e-06` |" in str(card) and "| num_processes | `2` |" in str(card)
    assert "| steps_trained | `10` |" in str(card) and "output_dir" not in str(card)  # no local paths
    assert "perceptual_weight" not in str(card)  # no LPIPS in this run
    assert "## Limitations" in str(card) and "trust_remote_code" not in str(card)

    (snippet,) = python_blocks(card)
    namespace: dict = {}
    exec(snippet, namespace)  # the usage snippet runs as written
    if name == "prior":
        assert namespace["codes"].shape == (2, 4, 4)
    else:
        assert namespace["reconstruction"].shape == namespace["images"].shape


def test_the_pipeline_card_and_its_snippet(tmp_path):
    vq, prior = MODELS["vqgan"](), MODELS["prior"]()
    hf_vq.VQImageGenerationPipeline(vq, prior).save_pretrained(tmp_path / "pipe")
    card = render_pipeline_card(vq.config, prior.config, repo_id=str(tmp_path / "pipe"), dataset="builtin:digits",
                                metrics={"bits_per_dim": 4.5, "sample_class_accuracy": 0.9}, top_k=8,
                                guidance_scale=1.5)  # fmt: skip
    data = ModelCard(str(card)).data
    assert data.datasets is None  # a builtin dataset is no Hub dataset
    assert {"vq-gan", "vq-prior"} <= set(data.tags)
    assert {r.metric_type: r.metric_value for r in data.eval_results} == {"bits_per_dim": 4.5, "accuracy": 0.9}
    assert "upper bounds on the negative log-likelihood" in str(card)
    (snippet,) = python_blocks(card)
    os.chdir(tmp_path)  # the snippet saves sample.png
    exec(snippet, {})
    assert (tmp_path / "sample.png").is_file()


def test_templates_share_their_common_parts():
    """Each family template holds only what differs: the usage lines, the shared sections come from macros.md,
    header.md and footer.md."""
    folder = ROOT / "hf_vq" / "model_cards"
    bodies = {body for body, *_ in FAMILY_CARDS.values()} | {"pipeline"}
    assert {path.stem for path in folder.glob("*.md")} == bodies | {"macros", "header", "footer"}
    for body in bodies:
        text = (folder / f"{body}.md").read_text()
        assert "card_data" not in text and "## Evaluation" not in text and "## Limitations" not in text
        assert "from_pretrained" in text or "vq_usage()" in text or "load_model(" in text


def test_bad_cards_and_tokens_are_refused(tmp_path, monkeypatch):
    config = MODELS["vqgan"]().config
    with pytest.raises(ValueError, match="model_type 'hf_vq_patch_discriminator'"):
        render_model_card(hf_vq.PatchDiscriminatorConfig(), repo_id="org/d")
    with pytest.raises(ValueError, match="library_name hf_vq"):
        check_model_card("---\nlicense: mit\n---\n# a card\n")
    leaky = {**TRAINING_ARGS, "training": {**TRAINING_ARGS["training"], "dataset": "hf_" + "a1B2" * 9}}
    with pytest.raises(ValueError, match="access token"):
        render_model_card(config, repo_id="org/x", training_args=leaky)
    monkeypatch.setenv("HF_TOKEN", "my-very-own-secret")  # the configured token, whatever its shape
    with pytest.raises(ValueError, match="access token"):
        render_model_card(config, repo_id="org/my-very-own-secret")


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
    assert {"modeling_vqgan.py", "configuration_vqgan.py", "backbone.py", "quantizers.py"} <= set(files)
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
    assert script.main([str(tmp_path / "none"), "org/x", "--dry_run", str(tmp_path / "s2")]) == 1
    assert "no final model/" in capsys.readouterr().err


# ----- code export -----

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
    if name == "prior":
        assert model.sample_codes(class_labels=[0, 2], top_k=4).shape == (2, 4, 4)
    else:
        images = torch.rand(2, model.config.in_channels, 8, 8) * 2 - 1
        assert model(images).reconstruction.shape == images.shape
    print("loaded", name, type(model).__name__)
assert not any(name.startswith("hf_vq.") for name in sys.modules)
"""


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


# ----- safetensors only, and the conversion of pickled weights -----


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
def test_the_conversion_script_turns_pickled_weights_into_a_loadable_model(tmp_path, name, capsys):
    model = MODELS[name]()
    pickled_only(model, tmp_path / "pickled", name="model.pt")
    script = load_script("convert_to_safetensors")
    assert script.main([str(tmp_path / "pickled"), str(tmp_path / "converted")]) == 0
    auto = AutoModelForCausalLM if name == "prior" else AutoModel
    converted = auto.from_pretrained(tmp_path / "converted")
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    assert script.main([str(tmp_path / "pickled"), str(tmp_path / "converted")]) == 1  # never overwrites
    assert "not an empty folder" in capsys.readouterr().err


def test_the_conversion_refuses_pickles_that_are_not_tensors_and_weights_that_do_not_fit(tmp_path):
    model = MODELS["vqgan"]()
    folder = pickled_only(model, tmp_path / "evil")
    torch.save({"weight": torch.zeros(1), "payload": Path("x")}, folder / "pytorch_model.bin")  # not a tensor
    with pytest.raises(ValueError, match="Python objects other than tensors"):
        convert_to_safetensors(folder, tmp_path / "out")
    torch.save({"encoder.conv_in.weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="do not fit its config"):
        convert_to_safetensors(folder, tmp_path / "out")
    torch.save({}, folder / "extra.pt")
    with pytest.raises(ValueError, match="2 pickled weight files"):
        convert_to_safetensors(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_family_card_without_training_or_metrics_says_so():
    card = render_model_card(MODELS["vae"]().config, repo_id="org/vae")
    assert "No evaluation was recorded" in str(card) and "No training arguments were recorded" in str(card)
    assert ModelCard(str(card)).data.eval_results is None
    assert "free bits 0.5" in str(card)
