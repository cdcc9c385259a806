"""Tokenizing a dataset and training the prior end to end, on a tiny VQ-GAN over 8x8 digits (4x4 codes)."""

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from accelerate.state import AcceleratorState
from datasets import Dataset, load_from_disk
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM

import hf_vq
from hf_vq.data import CodeStream, load_eval_images
from hf_vq.training import FAMILIES, PriorTrainer, encode_dataset, main, parse_arguments
from hf_vq.training.publishing import render_run_card

from ..conftest import ROOT, finished, launch, load_script

TINY_VQGAN = dict(
    in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=8,
    latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, sample_size=8,
)  # fmt: skip
TINY_PRIOR = dict(n_layer=1, n_head=2, n_embd=16)
TINY_PIXELCNN = dict(num_layers=3, hidden_channels=8, output_channels=16)


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def vq_model_dir(tmp_path_factory) -> Path:
    """An (untrained) tiny VQ-GAN saved to disk: its codes are as good as any for tokenizing and for the prior."""
    path = tmp_path_factory.mktemp("vqgan") / "model"
    torch.manual_seed(0)
    hf_vq.VQGANModel(hf_vq.VQGANConfig(**TINY_VQGAN)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def codes_dir(vq_model_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("codes") / "digits"
    script = load_script("encode_dataset")
    script.main(["--vq_model", str(vq_model_dir), "--dataset", "builtin:digits", "--label_column", "label",
                 "--output_dir", str(path), "--batch_size", "100"])  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    return path


def rows(dataset: Dataset) -> list[tuple]:
    return sorted((tuple(r["indices"]), r["label"]) for r in dataset)


@pytest.mark.slow
def test_encode_dataset_writes_every_image_as_its_codes(codes_dir, vq_model_dir):
    codes = load_from_disk(str(codes_dir))
    assert set(codes) == {"train", "test"} and (len(codes["train"]), len(codes["test"])) == (1437, 360)
    assert codes["train"].features["label"].num_classes == 10
    info = json.loads((codes_dir / "hf_vq_codes.json").read_text())
    assert info["vq_model"] == str(vq_model_dir.resolve())
    assert (info["codebook_size"], info["token_grid_size"]) == (16, [4, 4])
    assert info["splits"]["test"] == {"records_read": 360, "encoded": 360, "skipped": {"undecodable": 0, "tiny": 0,
                                                                                      "missing": 0}}  # fmt: skip
    # The codes are the model's codes of the images (compared as sets of rows: shards may reorder records).
    model = hf_vq.VQGANModel.from_pretrained(vq_model_dir).eval()
    images = load_eval_images("builtin:digits", "test", resolution=8, num_channels=1, limit=1000)
    with torch.no_grad():
        expected = sorted(tuple(c) for c in model.encode_indices(images).flatten(1).tolist())
    assert sorted(tuple(r["indices"]) for r in codes["test"]) == expected


@pytest.mark.slow
def test_encode_dataset_refuses_an_existing_output_and_non_vq_models(codes_dir, tmp_path):
    model = hf_vq.VQGANModel(hf_vq.VQGANConfig(**TINY_VQGAN))
    with pytest.raises(ValueError, match="already exists"):
        encode_dataset(model, "builtin:digits", codes_dir)
    with pytest.raises(ValueError, match="VQ model"):
        encode_dataset(hf_vq.VAEModel(hf_vq.VAEConfig()), "builtin:digits", tmp_path / "new")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_two_processes_encode_the_same_records_as_one(codes_dir, vq_model_dir, tmp_path):
    script = ROOT / "scripts" / "encode_dataset.py"
    arguments = ["--vq_model", str(vq_model_dir), "--dataset", "builtin:digits", "--splits", "test",
                 "--label_column", "label", "--output_dir", str(tmp_path / "two")]  # fmt: skip
    finished(launch([str(script), *arguments], num_processes=2))
    two = load_from_disk(str(tmp_path / "two"))
    assert rows(two["test"]) == rows(load_from_disk(str(codes_dir))["test"])
    assert not list(tmp_path.glob("*.partial"))


def code_records(**overrides) -> Dataset:
    record = {"indices": [1, 2, 3, 4], "label": 0} | overrides
    return Dataset.from_list([record] * 4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"indices": [1, 2, 3]}, "expected 4 codes in \\[0, 16\\).*found 3 codes"),
        ({"indices": [1, 2, 3, 16]}, "found 4 codes in \\[1, 16\\]"),
        ({"label": 10}, "label 10 is outside \\[0, 10\\)"),
    ],
)
def test_code_stream_rejects_codes_of_another_model_naming_the_record(overrides, message):
    stream = CodeStream(code_records(**overrides), num_codes=16, num_tokens=4, label_column="label", num_classes=10)
    with pytest.raises(ValueError, match=message) as info:
        list(stream)
    assert "record 0 of epoch 0" in str(info.value)


def test_code_stream_drops_classes_at_the_given_rate_and_reproducibly(caplog):
    records = Dataset.from_list([{"indices": [1, 2, 3, 4], "label": i % 10} for i in range(2000)])
    stream = CodeStream(records, 16, 4, label_column="label", num_classes=10, class_dropout_prob=0.25)
    labels = torch.tensor([sample["class_labels"] for sample in stream])
    assert 0.2 < (labels == -1).float().mean() < 0.3
    again = CodeStream(records, 16, 4, label_column="label", num_classes=10, class_dropout_prob=0.25)
    assert torch.equal(torch.tensor([s["class_labels"] for s in again]), labels)
    missing = CodeStream(Dataset.from_list([{"indices": None, "label": 0}, {"indices": [0] * 4, "label": 1}]), 16, 4,
                         label_column="label", num_classes=10)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="hf_vq.data.stream"):
        assert [s["class_labels"] for s in missing] == [1] and missing.skip_counts["missing"] == 1
    assert "epoch 0 on rank 0/1: 1 code sequences, 1 records skipped (missing: 1)" in caplog.messages


def write_prior_recipe(path: Path, **overrides) -> Path:
    recipe = {
        "label_column": "label", "train_batch_size": 16, "max_train_steps": 4, "checkpointing_steps": 2,
        "validation_steps": 2, "logging_steps": 1, "max_eval_images": 64, "shuffle_buffer": 64,
        "report_to": "none", "learning_rate": 1e-3, "class_dropout_prob": 0.5, "num_validation_images": 2,
        "sample_top_k": 4, "sample_guidance_scale": 2.0, "model": TINY_PRIOR,
    } | overrides  # fmt: skip
    path.write_text(yaml.safe_dump(recipe))
    return path


def train_prior(tmp_path: Path, codes_dir: Path, name: str, *extra: str, **overrides) -> tuple[Path, dict]:
    recipe = write_prior_recipe(tmp_path / f"{name}.yaml", **overrides)
    output_dir = tmp_path / name
    metrics = main("prior", ["--config", str(recipe), "--dataset", str(codes_dir), "--output_dir", str(output_dir),
                             *extra])  # fmt: skip
    return output_dir, metrics


@pytest.mark.slow
def test_the_prior_trainer_holds_only_the_attributes_its_init_declares(codes_dir, tmp_path):
    recipe = write_prior_recipe(tmp_path / "r.yaml", max_train_steps=2)
    argv = ["--config", str(recipe), "--dataset", str(codes_dir), "--output_dir", str(tmp_path / "run")]
    family = FAMILIES["prior"]
    trainer = family.trainer_class(family, parse_arguments(argv=argv, with_prior=True))
    assert isinstance(trainer, PriorTrainer)
    declared = set(vars(trainer))
    trainer.run()
    assert set(vars(trainer)) == declared
    assert trainer.global_step == 2 and trainer.vq_model is not None and trainer.eval_codes is not None


@pytest.mark.slow
def test_train_prior_end_to_end(codes_dir, vq_model_dir, tmp_path):
    output_dir, metrics = train_prior(tmp_path, codes_dir, "run")
    prior = AutoModelForCausalLM.from_pretrained(output_dir / "model")
    assert isinstance(prior, hf_vq.VQPriorForCausalLM)
    # The VQ model, the token grid, the codebook and the classes come from the codes and their VQ model.
    assert prior.config.codebook_size == 16 and prior.config.token_grid_size == (4, 4)
    assert prior.config.num_classes == 10 and prior.config.vq_model_name_or_path == str(vq_model_dir.resolve())
    assert metrics["step"] == 4 and metrics["eval_num_sequences"] == 64
    assert 0 < metrics["eval_nll_per_code"] < 2 * torch.log(torch.tensor(16.0)).item()
    assert (output_dir / "samples" / "step-4.png").is_file()
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    arguments = json.loads((output_dir / "training_args.json").read_text())
    assert arguments["family"] == "prior" and arguments["prior"]["class_dropout_prob"] == 0.5
    pipe = hf_vq.VQImageGenerationPipeline.from_pretrained(output_dir / "pipeline")
    images = pipe(class_labels=[3], num_images=2, guidance_scale=2.0, seed=0)
    assert len(images) == 2 and images[0].size == (8, 8)


@pytest.mark.slow
def test_train_prior_without_labels_gives_an_unconditional_prior(codes_dir, tmp_path):
    output_dir, metrics = train_prior(tmp_path, codes_dir, "unconditional", label_column=None, max_train_steps=2)
    pipe = hf_vq.VQImageGenerationPipeline.from_pretrained(output_dir / "pipeline")
    assert pipe.prior.config.num_classes == 0 and metrics["eval_nll_per_code"] > 0
    assert len(pipe(num_images=3, seed=0)) == 3


@pytest.mark.slow
def test_train_prior_type_pixelcnn_trains_the_gated_pixelcnn_on_the_same_loop(codes_dir, vq_model_dir, tmp_path):
    output_dir, metrics = train_prior(tmp_path, codes_dir, "pixelcnn", prior_type="pixelcnn", model=TINY_PIXELCNN)
    prior = AutoModel.from_pretrained(output_dir / "model")
    assert isinstance(prior, hf_vq.PixelCNNPriorModel)
    assert prior.config.codebook_size == 16 and prior.config.token_grid_size == (4, 4)
    assert prior.config.num_classes == 10 and prior.config.vq_model_name_or_path == str(vq_model_dir.resolve())
    assert metrics["step"] == 4 and 0 < metrics["eval_nll_per_code"] < 2 * torch.log(torch.tensor(16.0)).item()
    arguments = json.loads((output_dir / "training_args.json").read_text())
    assert arguments["family"] == "pixelcnn_prior" and arguments["prior"]["prior_type"] == "pixelcnn"
    pipe = hf_vq.VQImageGenerationPipeline.from_pretrained(output_dir / "pipeline")
    assert isinstance(pipe.prior, hf_vq.PixelCNNPriorModel)
    assert len(pipe(class_labels=[3], num_images=2, guidance_scale=2.0, seed=0)) == 2
    card = render_run_card(output_dir, repo_id="org/pixelcnn-digits")
    assert "gated PixelCNN prior" in str(card) and "AutoModel.from_pretrained" in str(card)


@pytest.mark.slow
@pytest.mark.parametrize("prior_type", ["gpt", "pixelcnn"])
def test_train_prior_resumes_exactly(codes_dir, tmp_path, prior_type):
    model = {"model": TINY_PIXELCNN} if prior_type == "pixelcnn" else {}
    straight, _ = train_prior(tmp_path, codes_dir, "straight", prior_type=prior_type, **model)
    resumed, _ = train_prior(tmp_path, codes_dir, "resumed", max_train_steps=2, prior_type=prior_type, **model)
    AcceleratorState._reset_state(reset_partial_state=True)
    train_prior(tmp_path, codes_dir, "resumed", "--resume_from_checkpoint", "latest", max_train_steps=4,
                prior_type=prior_type, **model)  # fmt: skip
    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(resumed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": {**TINY_PRIOR, "codebook_size": 32}}, "codebook_size"),
        ({"model": {**TINY_PRIOR, "token_grid_size": [2, 2]}}, "token_grid_size"),
        ({"label_column": "digit"}, "`label_column` 'digit' is not a column"),
        ({"label_column": None, "model": {**TINY_PRIOR, "num_classes": 10}}, "label_column"),
        ({"class_dropout_prob": 1.5}, "class_dropout_prob"),
        ({"prior_type": "transformer"}, "prior_type"),
        ({"resolution": 7}, "`resolution` \\(7\\) must be divisible by the model's downsampling factor 2"),
    ],
)
def test_train_prior_rejects_inconsistent_settings(codes_dir, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train_prior(tmp_path, codes_dir, "bad", **overrides)


@pytest.mark.slow
def test_a_residual_quantizer_s_codes_train_the_gpt_prior_with_the_stages_of_a_position_in_a_row(tmp_path):
    vq_path = tmp_path / "rvq"
    config = hf_vq.VQGANConfig(**TINY_VQGAN | {"quantizer_type": "residual", "residual_depth": 2})
    vq_model = hf_vq.VQGANModel(config).eval()
    vq_model.save_pretrained(vq_path)
    codes_path = tmp_path / "codes"
    encode_dataset(vq_model, "builtin:digits", codes_path, vq_model_name_or_path=vq_path, label_column="label",
                   quiet=True)  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    info = json.loads((codes_path / "hf_vq_codes.json").read_text())
    assert info["codes_per_position"] == 2
    row = torch.tensor(load_from_disk(str(codes_path))["test"][0]["indices"])
    image = load_eval_images("builtin:digits", "test", resolution=8, num_channels=1, limit=1)
    with torch.no_grad():
        assert torch.equal(row, vq_model.encode_indices(image).flatten().to(row.dtype))  # (4, 4, 2): stages fastest

    output_dir, metrics = train_prior(tmp_path, codes_path, "gpt", max_train_steps=2)
    pipe = hf_vq.VQImageGenerationPipeline.from_pretrained(output_dir / "pipeline")
    assert pipe.prior.config.codes_per_position == 2 and pipe.prior.config.num_image_tokens == 32
    assert pipe.prior.sample_codes([1, 2]).shape == (2, 4, 4, 2)
    assert pipe(class_labels=[3], num_images=2, output_type="pt").shape == (2, 1, 8, 8)
    assert metrics["eval_nll_per_code"] > 0
    with pytest.raises(ValueError, match="completion takes one code per grid position"):
        pipe.complete(torch.zeros(1, 4, 4, 2, dtype=torch.long), torch.ones(4, 4, dtype=torch.bool), [0])
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match="PixelCNNPriorModel models one code per grid position.*residual_depth=2"):
        train_prior(tmp_path, codes_path, "pixelcnn", prior_type="pixelcnn", model=TINY_PIXELCNN)
