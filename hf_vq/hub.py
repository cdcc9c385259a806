"""Sharing trained models on the Hugging Face Hub."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

# What a training run publishes, as (local path relative to the output dir, path in the repo). The model's own
# files go to the repo root, so that `AutoModel.from_pretrained(repo_id)` loads it; checkpoints never leave.
PUBLISHED = (("model", ""), ("discriminator", "discriminator"), ("samples", "samples"))
PUBLISHED_FILES = ("metrics.json", "training_args.json", "README.md")


def push_training_outputs(
    output_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Upload a training run's final model (and discriminator, sample grids, metrics) in one commit.

    Returns the URL of the commit. The `checkpoint-*` states are never uploaded.
    """
    output_dir = Path(output_dir)
    if not (output_dir / "model").is_dir():
        raise ValueError(f"{output_dir} has no final model/ directory to push (did the run finish?)")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        for local, remote in PUBLISHED:
            if (output_dir / local).is_dir():
                shutil.copytree(output_dir / local, staging / remote, dirs_exist_ok=True)
        for name in PUBLISHED_FILES:
            if (output_dir / name).is_file():
                shutil.copy2(output_dir / name, staging / name)
        commit = api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message="Upload hf_vq model")
    return str(commit)
