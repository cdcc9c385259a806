"""Sharing models on the Hugging Face Hub: model cards, uploads, code export and weight conversion.

A card is a pure function of the config, the training arguments, the dataset id and the metrics
(`render_model_card`, `render_pipeline_card`), rendered by `ModelCard.from_template` from the Jinja templates in
`model_cards/`: `macros.md` (pieces shared by every card) + `header.md` + the family's template + `footer.md`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token, snapshot_download
from transformers import PretrainedConfig, PreTrainedModel

from . import remote_code
from .modeling_utils import PICKLE_WEIGHT_SUFFIXES, pickled_weight_files
from .models import MODEL_CLASSES
from .utils.configuration_utils import latent_side

CARD_PARTS = ("macros.md", "header.md", "{body}.md", "footer.md")
# model_type -> (family template, tags, pipeline tag, (task type, task name) of its evaluation results)
RECONSTRUCTION = ("image-to-image", "Image reconstruction")
FAMILY_CARDS = {
    "hf_vq_autoencoder": ("autoencoder", ["autoencoder"], "image-to-image", RECONSTRUCTION),
    "hf_vq_vae": ("vae", ["vae"], "image-to-image", RECONSTRUCTION),
    "hf_vq_vqvae": ("vqvae", ["vq-vae", "image-tokenizer"], "image-to-image", RECONSTRUCTION),
    "hf_vq_vqgan": ("vqgan", ["vq-gan", "image-tokenizer"], "image-to-image", RECONSTRUCTION),
    "hf_vq_prior": ("prior", ["vq-prior", "image-generation"], None, ("image-generation", "Image code modelling")),
}
# Metrics (without their `eval_` prefix) that go into `model-index`: metric type and readable name.
INDEXED_METRICS = {
    "psnr": ("psnr", "PSNR (dB)"),
    "ssim": ("ssim", "SSIM"),
    "lpips": ("lpips", "LPIPS distance"),
    "codebook_usage": ("codebook_usage", "Codebook usage"),
    "bits_per_dim": ("bits_per_dim", "Bits per dimension"),
    "bits_per_dim_uniform_prior": ("bits_per_dim", "Bits per dimension (uniform prior)"),
    "rfid": ("rfid", "rFID"),
    "fid": ("fid", "FID"),
    "nll_per_code": ("nll", "NLL per code (nats)"),
    "sample_class_accuracy": ("accuracy", "Class accuracy of samples"),
}
# Records of the run in metrics.json that describe training, not the model's quality.
TRAINING_RECORDS = ("step", "train_images_per_second", "nonfinite_steps_skipped", "data_skipped")
# Training arguments shown in a card, by section of training_args.json.
CARD_SETTINGS = {
    "training": (
        "dataset", "dataset_config", "dataset_split", "resolution", "random_flip", "max_train_steps",
        "train_batch_size", "gradient_accumulation_steps", "learning_rate", "scale_lr", "lr_scheduler",
        "lr_warmup_steps", "adam_beta1", "adam_beta2", "adam_weight_decay", "max_grad_norm", "mixed_precision",
        "reconstruction_loss", "perceptual_weight", "codebook_weight", "seed",
    ),
    "gan": ("disc_start", "disc_weight", "disc_loss", "disc_learning_rate", "lecam_weight"),
    "prior": ("class_dropout_prob",),
}  # fmt: skip
# A Hugging Face access token (user or organization), which must never reach a card.
TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def card_template(body: str) -> str:
    """The Jinja template of one card: the shared parts around `model_cards/<body>.md`."""
    folder = resources.files("hf_vq") / "model_cards"
    return "".join((folder / part.format(body=body)).read_text() for part in CARD_PARTS)


def card_metrics(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The quality metrics of a run's metrics.json (scalars, `eval_` prefix dropped), without its training records."""
    return {
        name.removeprefix("eval_"): value
        for name, value in (metrics or {}).items()
        if name not in TRAINING_RECORDS and isinstance(value, (int, float, str)) and not isinstance(value, bool)
    }


def training_setup(training_args: dict[str, Any] | None, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of a run worth a reader's time, from its training_args.json (and steps from metrics.json)."""
    if not training_args:
        return {}
    setup: dict[str, Any] = {}
    for section, names in CARD_SETTINGS.items():
        values = training_args.get(section) or {}
        setup.update({name: values[name] for name in names if values.get(name) is not None})
    if not (training_args.get("training") or {}).get("lpips_weights"):
        setup.pop("perceptual_weight", None)
    if training_args.get("num_processes"):
        setup["num_processes"] = training_args["num_processes"]
    if metrics and "step" in metrics:
        setup["steps_trained"] = metrics["step"]
    return setup


def _render(
    body: str,
    *,
    repo_id: str,
    tags: list[str],
    task: tuple[str, str],
    pipeline_tag: str | None,
    metrics: dict[str, Any] | None,
    dataset: str | None,
    training_args: dict[str, Any] | None,
    base_model: str | None,
    license: str,
    eval_description: str | None = None,
    **template_values: Any,
) -> ModelCard:
    """Render `model_cards/<body>.md` with the metadata, metrics and training setup every card has, and check it."""
    shown = card_metrics(metrics)
    split = ((training_args or {}).get("training") or {}).get("eval_split")
    eval_results = [
        EvalResult(
            task_type=task[0],
            task_name=task[1],
            dataset_type=dataset or "unknown",
            dataset_name=dataset or "unknown",
            dataset_split=split,
            metric_type=INDEXED_METRICS[name][0],
            metric_name=INDEXED_METRICS[name][1],
            metric_value=round(float(value), 4),
        )
        for name, value in shown.items()
        if name in INDEXED_METRICS
    ]
    model_name = repo_id.split("/")[-1]
    # A local folder or a builtin dataset is no Hub dataset (the card is rendered where the run's data is).
    on_hub = dataset is not None and not dataset.startswith("builtin:") and not os.path.exists(dataset)
    card_data = ModelCardData(
        library_name="hf_vq",
        license=license,
        tags=["hf_vq", *tags],
        datasets=[dataset] if on_hub else None,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_str=card_template(body),
        repo_id=repo_id,
        model_name=model_name,
        dataset=dataset,
        metrics={name: f"{value:.4g}" if isinstance(value, float) else value for name, value in shown.items()},
        training=training_setup(training_args, metrics),
        eval_description=eval_description
        or (f"the `{split}` split of `{dataset}`" if split and dataset else "held-out data"),
        **template_values,
    )
    check_model_card(card)
    return card


def _config_dict(config: PretrainedConfig) -> dict[str, Any]:
    return {**config.to_dict(), "model_type": config.model_type}


def render_model_card(
    config: PretrainedConfig,
    *,
    repo_id: str,
    metrics: dict[str, Any] | None = None,
    dataset: str | None = None,
    training_args: dict[str, Any] | None = None,
    samples_image: str | None = None,
    base_model: str | None = None,
    code_exported: bool = False,
    license: str = "apache-2.0",
    eval_description: str | None = None,
) -> ModelCard:
    """The model card of one hf_vq model (any family, or the prior) from its config, its run's training arguments
    (training_args.json), the dataset id and the metrics (metrics.json). `samples_image` is a repo path."""
    if config.model_type not in FAMILY_CARDS:
        raise ValueError(f"no model card template for model_type {config.model_type!r} ({sorted(FAMILY_CARDS)})")
    body, tags, pipeline_tag, task = FAMILY_CARDS[config.model_type]
    values: dict[str, Any] = {}
    if config.model_type != "hf_vq_prior":
        values = {
            "resolution": config.sample_size,
            "latent_size": latent_side(config),
            "downsample": config.downsample_factor,
        }
    return _render(
        body,
        repo_id=repo_id,
        tags=tags,
        task=task,
        pipeline_tag=pipeline_tag,
        metrics=metrics,
        dataset=dataset,
        training_args=training_args,
        base_model=base_model,
        license=license,
        eval_description=eval_description,
        config=_config_dict(config),
        samples_image=samples_image,
        code_exported=code_exported,
        **values,
    )


def render_pipeline_card(
    vq_config: PretrainedConfig,
    prior_config: PretrainedConfig,
    *,
    repo_id: str,
    metrics: dict[str, Any] | None = None,
    dataset: str | None = None,
    training_args: dict[str, Any] | None = None,
    samples_image: str | None = None,
    top_k: int | None = None,
    guidance_scale: float = 1.0,
    code_exported: bool = False,
    license: str = "apache-2.0",
    eval_description: str | None = None,
) -> ModelCard:
    """The model card of a `VQImageGenerationPipeline` from its VQ model's and prior's configs (the rest as in
    `render_model_card`; `top_k` and `guidance_scale` go into the usage snippet)."""
    conditional = bool(prior_config.num_classes)
    height, width = prior_config.token_grid_size
    return _render(
        "pipeline",
        repo_id=repo_id,
        tags=[FAMILY_CARDS[vq_config.model_type][1][0], "vq-prior", "image-generation"],
        task=("image-generation", "Class-conditional image generation")
        if conditional
        else ("unconditional-image-generation", "Unconditional image generation"),
        pipeline_tag=None if conditional else "unconditional-image-generation",
        metrics=metrics,
        dataset=dataset,
        training_args=training_args,
        base_model=None,
        license=license,
        eval_description=eval_description,
        vq_config=_config_dict(vq_config),
        prior_config=_config_dict(prior_config),
        vq_model_class=MODEL_CLASSES[vq_config.model_type].__name__,
        resolution=vq_config.sample_size,
        grid=f"{height}x{width}",
        samples_image=samples_image,
        top_k=top_k,
        guidance_scale=guidance_scale,
        code_exported=code_exported,
    )


def check_model_card(card: ModelCard | str) -> None:
    """Check one of our cards offline the way the Hub reads it (`ModelCard.validate` needs the network): its metadata
    parses, names hf_vq as library and tag and a license, its `model-index` parses into evaluation results, and it
    holds no access token. A `ValueError` names what is wrong."""
    text = str(card)
    data = ModelCard(text).data
    if data.library_name != "hf_vq" or "hf_vq" not in (data.tags or []):
        raise ValueError("model card: the metadata must have library_name hf_vq and the tag hf_vq")
    if not data.license:
        raise ValueError("model card: the metadata has no license")
    if "model-index" in text and not data.eval_results:
        raise ValueError("model card: its model-index does not parse into evaluation results")
    check_no_token(text)


def check_no_token(text: str) -> None:
    """A `ValueError` if `text` (a card about to be written or uploaded) holds a Hugging Face access token: the
    configured one, or anything shaped like one."""
    token = get_token()
    if TOKEN_PATTERN.search(text) or (token and len(token) >= 8 and token in text):
        raise ValueError("model card: it contains a Hugging Face access token; remove it before sharing the card")


# ----- pushing -----

MODEL_FOLDER, PIPELINE_FOLDER = "model", "pipeline"
PIPELINE_PARTS = ("vq_model", "prior")  # the sub-model folders of a saved pipeline
SAMPLES_FOLDER = "samples"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _load_config(folder: Path) -> PretrainedConfig:
    """The config of a saved hf_vq model, without the Auto classes (so this works before `import hf_vq` registers)."""
    model_type = (_read_json(folder / "config.json") or {}).get("model_type")
    if model_type not in MODEL_CLASSES:
        raise ValueError(f"{folder}/config.json is not the config of an hf_vq model (model_type {model_type!r})")
    return MODEL_CLASSES[model_type].config_class.from_pretrained(folder)


def _check_safetensors(folder: Path) -> None:
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"{folder} has no safetensors weights; hf_vq publishes safetensors only")


def latest_sample_grid(output_dir: str | Path) -> str | None:
    """The repo path of a run's last sample grid (`samples/step-<n>.png` with the largest n), if any."""
    grids = list((Path(output_dir) / SAMPLES_FOLDER).glob("step-*.png"))
    steps = [(int(grid.stem.split("-")[1]), grid.name) for grid in grids if grid.stem.split("-")[1].isdigit()]
    return f"{SAMPLES_FOLDER}/{max(steps)[1]}" if steps else None


def render_run_card(output_dir: str | Path, repo_id: str, code_exported: bool = False) -> ModelCard:
    """The card of a finished training run, from its model config(s), training_args.json and metrics.json."""
    output_dir = Path(output_dir)
    training_args = _read_json(output_dir / "training_args.json")
    metrics = _read_json(output_dir / "metrics.json")
    dataset = ((training_args or {}).get("training") or {}).get("dataset")
    shared = dict(
        repo_id=repo_id,
        metrics=metrics,
        dataset=dataset,
        training_args=training_args,
        samples_image=latest_sample_grid(output_dir),
        code_exported=code_exported,
    )
    if (output_dir / PIPELINE_FOLDER).is_dir():
        vq_config, prior_config = (_load_config(output_dir / PIPELINE_FOLDER / part) for part in PIPELINE_PARTS)
        sampling = (training_args or {}).get("prior") or {}
        return render_pipeline_card(
            vq_config,
            prior_config,
            top_k=sampling.get("sample_top_k"),
            guidance_scale=sampling.get("sample_guidance_scale", 1.0),
            **shared,
        )
    return render_model_card(
        _load_config(output_dir / MODEL_FOLDER), base_model=(training_args or {}).get("base_model"), **shared
    )


def stage_training_outputs(
    output_dir: str | Path,
    staging: str | Path,
    repo_id: str,
    *,
    push_discriminator: bool = False,
    push_training_args: bool = False,
    export_code: bool = False,
    model_card: str | None = None,
) -> list[str]:
    """Assemble in `staging` what a finished run publishes; returns the repo paths.

    The final model (`model/`, or for a prior's run the pipeline: `vq_model/`, `prior/`, `pipeline_config.json`)
    goes to the repo root, so that `from_pretrained(repo_id)` loads it; then README.md (`model_card`, or the card
    rendered by `render_run_card`), the sample grids, metrics.json and, on request, `discriminator/`,
    training_args.json and the modeling code (`export_code`). The `checkpoint-*` states never leave.
    """
    output_dir, staging = Path(output_dir), Path(staging)
    pipeline = (output_dir / PIPELINE_FOLDER).is_dir()
    final = output_dir / (PIPELINE_FOLDER if pipeline else MODEL_FOLDER)
    if not final.is_dir():
        raise ValueError(
            f"{output_dir} has no final {MODEL_FOLDER}/ or {PIPELINE_FOLDER}/ folder (did the run finish?)"
        )
    model_folders = list(PIPELINE_PARTS) if pipeline else [""]
    for part in model_folders:
        _check_safetensors(final / part)
    shutil.copytree(final, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    if (output_dir / SAMPLES_FOLDER).is_dir():
        shutil.copytree(output_dir / SAMPLES_FOLDER, staging / SAMPLES_FOLDER, dirs_exist_ok=True)
    wanted = {"metrics.json": True, "training_args.json": push_training_args, "discriminator": push_discriminator}
    for name, requested in wanted.items():
        source = output_dir / name
        if requested and not source.exists():
            raise ValueError(f"{output_dir} has no {name} to push")
        if requested and source.is_dir():
            _check_safetensors(source)
            shutil.copytree(source, staging / name)
        elif requested:
            shutil.copy2(source, staging / name)
    if export_code and pipeline:
        remote_code.export_pipeline_code(staging, PIPELINE_PARTS)
    elif export_code:
        remote_code.export_code(MODEL_CLASSES[_load_config(staging).model_type], staging)
    card = model_card if model_card is not None else render_run_card(output_dir, repo_id, code_exported=export_code)
    check_no_token(str(card))
    (staging / "README.md").write_text(str(card))
    return sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())


def upload_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
) -> str:
    """Create the repo if needed and upload `folder` as one commit (`HfApi.upload_folder`); returns the commit URL.
    The token goes to the client only: nothing here prints or logs it."""
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message or "Upload hf_vq model",
        revision=revision,
        create_pr=create_pr,
    )
    return str(commit)


def push_training_outputs(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    push_discriminator: bool = False,
    push_training_args: bool = False,
    export_code: bool = False,
    model_card: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Publish a finished training run (see `stage_training_outputs`) in one commit; returns the commit URL.

    Everything is staged in a temporary folder first: the run's output folder is only read, and a failed upload
    leaves it (and the repo) as it was.
    """
    with tempfile.TemporaryDirectory() as staging:
        stage_training_outputs(
            output_dir,
            staging,
            repo_id,
            push_discriminator=push_discriminator,
            push_training_args=push_training_args,
            export_code=export_code,
            model_card=model_card,
        )
        return upload_to_hub(staging, repo_id, private=private, token=token, revision=revision,
                             commit_message=commit_message)  # fmt: skip


def push_model(
    model: PreTrainedModel,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    metrics: dict[str, Any] | None = None,
    dataset: str | None = None,
    export_code: bool = False,
    model_card: str | None = None,
) -> str:
    """Upload one model (what `save_pretrained` writes) with its hf_vq card in one commit (`model.push_to_hub`)."""
    with tempfile.TemporaryDirectory() as staging:
        model.save_pretrained(staging)
        if export_code:
            remote_code.export_code(model, staging)
        if model_card is None:
            model_card = render_model_card(model.config, repo_id=repo_id, metrics=metrics, dataset=dataset,
                                           code_exported=export_code)  # fmt: skip
        check_no_token(str(model_card))
        (Path(staging) / "README.md").write_text(str(model_card))
        return upload_to_hub(staging, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
                             commit_message=commit_message)  # fmt: skip


# ----- converting pickled weights -----


def save_pretrained_atomically(model: PreTrainedModel, output_dir: str | Path) -> list[Path]:
    """`save_pretrained` into a temporary folder beside `output_dir`, then rename it into place: a failure leaves no
    partial model. `output_dir` must not exist or be empty. Returns the files written."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ValueError(f"{output_dir} exists and is not an empty folder; choose another output folder")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = output_dir.parent / f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        model.save_pretrained(staging)
        if output_dir.exists():
            output_dir.rmdir()  # empty; a rename cannot replace a folder on every platform
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(output_dir.iterdir())


def _pickled_shards(folder: Path, weights_name: str | None) -> list[Path]:
    if weights_name is not None:
        if not (folder / weights_name).is_file():
            raise ValueError(f"{folder} has no weights file {weights_name!r}")
        return [folder / weights_name]
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():  # sharded: the index names the shards
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    found = pickled_weight_files(folder)
    if len(found) != 1:
        raise ValueError(
            f"{folder} has {len(found)} pickled weight files ({', '.join(found) or 'none'}); name the one to convert "
            "with `weights_name`"
        )
    return [folder / found[0]]


def convert_to_safetensors(
    source: str | Path,
    output_dir: str | Path,
    *,
    subfolder: str = "",
    weights_name: str | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> list[Path]:
    """Convert an hf_vq model whose weights are pickled (`pytorch_model.bin`, `.pt`, ...: a local folder or a Hub
    repo) into a safetensors folder that `from_pretrained` loads. Returns the files written.

    The pickles are read with `torch.load(weights_only=True)`, which restores tensors and plain containers only and
    refuses anything that would run code; the tensors must then fit the model the config describes exactly.
    """
    if Path(source).is_dir():
        folder = Path(source) / subfolder
    else:
        prefix = f"{subfolder.strip('/')}/" if subfolder else ""
        patterns = [f"{prefix}*.json", *(f"{prefix}*{suffix}" for suffix in PICKLE_WEIGHT_SUFFIXES)]
        folder = (
            Path(snapshot_download(str(source), revision=revision, token=token, allow_patterns=patterns)) / subfolder
        )
    config = _load_config(folder)
    state_dict: dict[str, torch.Tensor] = {}
    for path in _pickled_shards(folder, weights_name):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"{path} holds Python objects other than tensors; it is not converted, since unpickling them could "
                f"run code ({str(error).splitlines()[0]})"
            ) from error
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):  # a training checkpoint
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
            raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
        state_dict.update(loaded)
    model = MODEL_CLASSES[config.model_type](config)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shapes that differ from the config's
        raise ValueError(f"the weights in {folder} do not fit its config ({config.model_type}): {error}") from error
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})  # restored with the weight they share
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise ValueError(
            f"the weights in {folder} do not fit its config ({config.model_type}): missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return save_pretrained_atomically(model, output_dir)
