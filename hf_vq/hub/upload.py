"""Uploads to the Hub: a staged folder in one commit (`upload_to_hub`) and one model with its card (`push_model`,
what `model.push_to_hub` calls).

This module is part of the code exported to the Hub with a model (`hf_vq.hub.remote_code`), so at module level it
imports only the standard library, huggingface_hub and its flat-exportable siblings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import HfApi

from .cards import check_no_token, render_model_card
from .remote_code import export_code as export_model_code

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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
            export_model_code(model, staging)
        if model_card is None:
            model_card = render_model_card(model.config, repo_id=repo_id, metrics=metrics, dataset=dataset,
                                           code_exported=export_code)  # fmt: skip
        check_no_token(str(model_card))
        (Path(staging) / "README.md").write_text(str(model_card))
        return upload_to_hub(staging, repo_id, private=private, token=token, revision=revision, create_pr=create_pr,
                             commit_message=commit_message)  # fmt: skip
