"""Publishing a finished training run on the Hub: its card (`render_run_card`), the folder of what it uploads
(`stage_training_outputs`) and the one-commit upload (`push_training_outputs`, what `--push_to_hub` and
`scripts/push_to_hub.py` call).

A run's output folder holds the final model in `model/` (or, for a prior's run, the pipeline in `pipeline/`), the
sample grids in `samples/`, `metrics.json`, `training_args.json`, `discriminator/` and the `checkpoint-*` states. This
module reads the model classes and the pipeline layout, so it sits in the training layer, above `hf_vq.hub` (cards,
uploads, code export), which it calls.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard
from transformers import PretrainedConfig

from ..hub import check_no_token, remote_code, render_model_card, render_pipeline_card, upload_to_hub
from ..models import MODEL_CLASSES
from ..pipelines import PIPELINE_PARTS
from ..utils.errors import UsageError

MODEL_FOLDER, PIPELINE_FOLDER = "model", "pipeline"
SAMPLES_FOLDER = "samples"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _load_config(folder: Path) -> PretrainedConfig:
    """The config of a saved hf_vq model, without the Auto classes (so this works before `import hf_vq` registers)."""
    model_type = (_read_json(folder / "config.json") or {}).get("model_type")
    if model_type not in MODEL_CLASSES:
        raise UsageError(f"{folder}/config.json is not the config of an hf_vq model (model_type {model_type!r})")
    return MODEL_CLASSES[model_type].config_class.from_pretrained(folder)


def _check_safetensors(folder: Path) -> None:
    if not any(folder.glob("*.safetensors")):
        raise UsageError(f"{folder} has no safetensors weights; hf_vq publishes safetensors only")


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
        raise UsageError(
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
            raise UsageError(f"{output_dir} has no {name} to push")
        if requested and source.is_dir():
            _check_safetensors(source)
            shutil.copytree(source, staging / name)
        elif requested:
            shutil.copy2(source, staging / name)
    if export_code and pipeline:  # (`export_code` is the flag here; the function is `remote_code.export_code`)
        models = {part: MODEL_CLASSES[_load_config(staging / part).model_type] for part in PIPELINE_PARTS}
        remote_code.export_pipeline_code(staging, models)
    elif export_code:
        remote_code.export_code(MODEL_CLASSES[_load_config(staging).model_type], staging)
    card = model_card if model_card is not None else render_run_card(output_dir, repo_id, code_exported=export_code)
    check_no_token(str(card))
    (staging / "README.md").write_text(str(card))
    return sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())


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
