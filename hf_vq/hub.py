"""Sharing trained models on the Hugging Face Hub: model cards and uploads."""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

# Every card is header.md + the family's body + footer.md (metadata, title and summary; evaluation, training,
# limitations), rendered by `ModelCard.from_template`.
CARD_PARTS = ("header.md", "{body}.md", "footer.md")
# metrics.json keys that go into `model-index`, with the metric type and a readable name.
INDEXED_METRICS = {
    "psnr": ("psnr", "PSNR (dB)"),
    "codebook_usage": ("codebook_usage", "Codebook usage"),
    "bits_per_dim": ("bits_per_dim", "Bits per dimension"),
    "bits_per_dim_uniform_prior": ("bits_per_dim", "Bits per dimension (uniform prior)"),
    "sample_class_accuracy": ("accuracy", "Class accuracy of samples"),
    "rfid": ("rfid", "rFID"),
}


def card_template(body: str) -> str:
    """The Jinja template of one card: the shared header and footer around `model_cards/<body>.md`."""
    folder = resources.files("hf_vq") / "model_cards"
    return "".join((folder / part.format(body=body)).read_text() for part in CARD_PARTS)


def render_model_card(
    body: str,
    *,
    model_name: str,
    summary: str,
    dataset: str | None,
    metrics: dict[str, Any],
    task: tuple[str, str],
    tags: list[str],
    limitations: str,
    training: dict[str, Any] | None = None,
    eval_description: str = "the held-out split",
    eval_split: str | None = None,
    license: str = "apache-2.0",
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    **template_values: Any,
) -> ModelCard:
    """A model card as a pure function of its inputs: YAML metadata (with `model-index` holding the metrics of
    `INDEXED_METRICS`), then the family's sections. `task` is the (task type, task name) of the evaluation."""
    eval_results = [
        EvalResult(
            task_type=task[0],
            task_name=task[1],
            dataset_type=dataset or "unknown",
            dataset_name=dataset or "unknown",
            dataset_split=eval_split,
            metric_type=INDEXED_METRICS[name][0],
            metric_name=INDEXED_METRICS[name][1],
            metric_value=round(float(value), 4),
        )
        for name, value in metrics.items()
        if name in INDEXED_METRICS
    ]
    card_data = ModelCardData(
        library_name="hf_vq",
        license=license,
        tags=["hf_vq", *tags],
        datasets=[dataset] if dataset and not dataset.startswith("builtin:") else None,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    shown = {name: f"{value:.4g}" if isinstance(value, float) else value for name, value in metrics.items()}
    return ModelCard.from_template(
        card_data,
        template_str=card_template(body),
        model_name=model_name,
        summary=summary,
        metrics=shown,
        training=training or {},
        eval_description=eval_description,
        limitations=limitations,
        **template_values,
    )


# What a training run publishes, as (local path relative to the output dir, path in the repo). The model's own
# files go to the repo root, so that `AutoModel.from_pretrained(repo_id)` loads it; checkpoints never leave.
PUBLISHED = (("model", ""), ("discriminator", "discriminator"), ("samples", "samples"))
# A prior's run publishes its pipeline (vq_model/ + prior/ + pipeline_config.json) at the root instead.
PUBLISHED_PIPELINE = (("pipeline", ""), ("samples", "samples"))
PUBLISHED_FILES = ("metrics.json", "training_args.json", "README.md")


def push_training_outputs(
    output_dir: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    published: tuple[tuple[str, str], ...] = PUBLISHED,
) -> str:
    """Upload a training run's final model (and discriminator, sample grids, metrics) in one commit.

    `published` maps the run's folders to repo paths (`PUBLISHED`, or `PUBLISHED_PIPELINE` for a prior); the first
    must exist. Returns the URL of the commit. The `checkpoint-*` states are never uploaded.
    """
    output_dir = Path(output_dir)
    if not (output_dir / published[0][0]).is_dir():
        raise ValueError(f"{output_dir} has no final {published[0][0]}/ directory to push (did the run finish?)")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        for local, remote in published:
            if (output_dir / local).is_dir():
                shutil.copytree(output_dir / local, staging / remote, dirs_exist_ok=True)
        for name in PUBLISHED_FILES:
            if (output_dir / name).is_file():
                shutil.copy2(output_dir / name, staging / name)
        commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message="Upload hf_vq model")
    return str(commit)
