"""What every hf_vq model adds to transformers' `PreTrainedModel`: safetensors-only loading and our own model card
when pushed.

This module is part of the code exported to the Hub (`hf_vq.remote_code`), so it imports nothing from hf_vq.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CONVERSION_COMMAND = "python scripts/convert_to_safetensors.py {source} <output_dir>"


def pickled_weight_files(path_or_repo: str | os.PathLike, subfolder: str = "", **hub_kwargs: Any) -> list[str]:
    """The pickled weight files (`.bin`, `.pt`, ...) of a local folder or Hub repo (empty when it cannot tell)."""
    folder = Path(path_or_repo) / subfolder
    if Path(path_or_repo).is_dir():
        names = [path.name for path in folder.glob("*")] if folder.is_dir() else []
    else:
        from huggingface_hub import HfApi, constants

        if constants.HF_HUB_OFFLINE or hub_kwargs.get("local_files_only"):
            return []
        try:
            names = HfApi().list_repo_files(
                str(path_or_repo), revision=hub_kwargs.get("revision"), token=hub_kwargs.get("token")
            )
        except Exception:  # the repo cannot be listed: keep the original error
            return []
        prefix = f"{subfolder.strip('/')}/" if subfolder else ""
        names = [name[len(prefix) :] for name in names if name.startswith(prefix) and "/" not in name[len(prefix) :]]
    return sorted(name for name in names if name.endswith(PICKLE_WEIGHT_SUFFIXES))


class HubMixin:
    """Put first in the bases of every hf_vq `PreTrainedModel`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, reading weights from safetensors only: nothing is ever unpickled. A folder
        or repo holding only pickled weights (`pytorch_model.bin`, `.pt`) gets an error naming the conversion
        script."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError(
                "hf_vq loads weights only from safetensors (`use_safetensors=False` would unpickle them); convert "
                f"pickled weights once with `{CONVERSION_COMMAND.format(source=pretrained_model_name_or_path)}`"
            )
        kwargs["use_safetensors"] = True
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except OSError as error:
            if pretrained_model_name_or_path is None:
                raise
            hub_kwargs = {key: kwargs.get(key) for key in ("revision", "token", "local_files_only")}
            pickled = pickled_weight_files(pretrained_model_name_or_path, kwargs.get("subfolder") or "", **hub_kwargs)
            if not pickled:
                raise
            source = pretrained_model_name_or_path
            raise OSError(
                f"{source} has no safetensors weights, only pickled ones ({', '.join(pickled)}); hf_vq never "
                "unpickles weights when loading, since a pickle can run code. Convert them once (tensors only, with "
                f"`torch.load(weights_only=True)`): `{CONVERSION_COMMAND.format(source=source)}` from the hf_vq "
                "repository, or `hf_vq.hub.convert_to_safetensors(...)`, then load the converted folder."
            ) from error

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        *,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        metrics: dict[str, Any] | None = None,
        dataset: str | None = None,
        export_code: bool = False,
        model_card: str | None = None,
    ) -> str:
        """Upload the model (safetensors + config) with the hf_vq model card (`hf_vq.hub.model_card` from the config,
        `metrics` and `dataset`, unless `model_card` is given) in one commit; with `export_code`, also the modeling
        code and `auto_map` for `trust_remote_code=True`. Returns the commit URL.

        transformers' own `push_to_hub` would write its generic card (library_name: transformers).
        """
        # Imported by name, not `from .hub import`: this module is exported to the Hub, where the package may be
        # absent, and transformers copies every module a relative import names.
        try:
            hub = importlib.import_module("hf_vq.hub")
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError("push_to_hub with the hf_vq model card needs `pip install hf_vq`") from error
        return hub.push_model(
            self,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
            metrics=metrics,
            dataset=dataset,
            export_code=export_code,
            model_card=model_card,
        )
