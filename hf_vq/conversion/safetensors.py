"""Pickled weights -> safetensors: finding pickled weight files, converting them once (tensors only), and writing a
model folder atomically.

hf_vq loads safetensors only (`HubMixin.from_pretrained`); this module is the one place that reads a pickle, with
`torch.load(weights_only=True)`. It imports no model class: `convert_to_safetensors` takes the classes by
`model_type` (`hf_vq.models.MODEL_CLASSES`) from its caller.

The models' `from_pretrained` uses `pickled_weight_files` and `CONVERSION_COMMAND`, so this module is part of the code
exported to the Hub (`hf_vq.hub.remote_code`): at module level it imports only the standard library and what every
model needs (torch, huggingface_hub).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from huggingface_hub import HfApi, constants, snapshot_download

from ..utils.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CONVERSION_COMMAND = "python scripts/convert_to_safetensors.py {source} <output_dir>"


def pickled_weight_files(path_or_repo: str | os.PathLike, subfolder: str = "", **hub_kwargs: Any) -> list[str]:
    """The pickled weight files (`.bin`, `.pt`, ...) of a local folder or Hub repo (empty when it cannot tell).

    A repo is listed with the Hub API; offline (`HF_HUB_OFFLINE`, `local_files_only`), or when the Hub cannot be
    reached, its snapshot in the local cache is listed instead."""
    folder = Path(path_or_repo) / subfolder
    if Path(path_or_repo).is_dir():
        names = [path.name for path in folder.glob("*")] if folder.is_dir() else []
        return sorted(name for name in names if name.endswith(PICKLE_WEIGHT_SUFFIXES))
    revision = hub_kwargs.get("revision")
    names = None
    if not (constants.HF_HUB_OFFLINE or hub_kwargs.get("local_files_only")):
        try:
            names = HfApi().list_repo_files(str(path_or_repo), revision=revision, token=hub_kwargs.get("token"))
        except Exception:  # the repo cannot be listed: try the cache, else keep the original error
            names = None
    if names is None:
        names = _cached_repo_files(str(path_or_repo), revision, hub_kwargs.get("cache_dir"))
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    names = [name[len(prefix) :] for name in names if name.startswith(prefix) and "/" not in name[len(prefix) :]]
    return sorted(name for name in names if name.endswith(PICKLE_WEIGHT_SUFFIXES))


def _cached_repo_files(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None = None) -> list[str]:
    """The files (relative paths) of a model repo's snapshot in the local Hub cache: the commit that
    `refs/<revision>` names (`main` by default), or `revision` itself when it is a commit id. Empty when not cached."""
    repo_folder = Path(cache_dir or constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    revision = revision or "main"
    ref = repo_folder / "refs" / revision
    try:
        commit = ref.read_text().strip() if ref.is_file() else revision
        snapshot = repo_folder / "snapshots" / commit
        if not commit or not snapshot.is_dir():
            return []
        return [path.relative_to(snapshot).as_posix() for path in snapshot.rglob("*") if path.is_file()]
    except (OSError, ValueError):  # an unreadable cache or a revision that is no folder name
        return []


def save_pretrained_atomically(model: PreTrainedModel, output_dir: str | Path) -> list[Path]:
    """`save_pretrained` into a temporary folder beside `output_dir`, then rename it into place: a failure leaves no
    partial model. `output_dir` must not exist or be empty. Returns the files written."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise UsageError(f"{output_dir} exists and is not an empty folder; choose another output folder")
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
            raise UsageError(f"{folder} has no weights file {weights_name!r}")
        return [folder / weights_name]
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():  # sharded: the index names the shards
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    found = pickled_weight_files(folder)
    if len(found) != 1:
        raise UsageError(
            f"{folder} has {len(found)} pickled weight files ({', '.join(found) or 'none'}); name the one to convert "
            "with `weights_name`"
        )
    return [folder / found[0]]


def _model_class(folder: Path, model_classes: Mapping[str, type[PreTrainedModel]]) -> type[PreTrainedModel]:
    """The class of the hf_vq model saved in `folder`, by the `model_type` of its config.json."""
    config_path = folder / "config.json"
    model_type = (json.loads(config_path.read_text()) if config_path.is_file() else {}).get("model_type")
    if model_type not in model_classes:
        raise UsageError(f"{folder}/config.json is not the config of an hf_vq model (model_type {model_type!r})")
    return model_classes[model_type]


def convert_to_safetensors(
    source: str | Path,
    output_dir: str | Path,
    *,
    model_classes: Mapping[str, type[PreTrainedModel]],
    subfolder: str = "",
    weights_name: str | None = None,
    revision: str | None = None,
    token: str | None = None,
) -> list[Path]:
    """Convert an hf_vq model whose weights are pickled (`pytorch_model.bin`, `.pt`, ...: a local folder or a Hub
    repo) into a safetensors folder that `from_pretrained` loads. Returns the files written.

    `model_classes` maps each `model_type` to its model class (`hf_vq.models.MODEL_CLASSES`). The pickles are read
    with `torch.load(weights_only=True)`, which restores tensors and plain containers only and refuses anything that
    would run code; the tensors must then fit the model the config describes exactly.
    """
    if Path(source).is_dir():
        folder = Path(source) / subfolder
    else:
        prefix = f"{subfolder.strip('/')}/" if subfolder else ""
        patterns = [f"{prefix}*.json", *(f"{prefix}*{suffix}" for suffix in PICKLE_WEIGHT_SUFFIXES)]
        folder = (
            Path(snapshot_download(str(source), revision=revision, token=token, allow_patterns=patterns)) / subfolder
        )
    model_class = _model_class(folder, model_classes)
    config = model_class.config_class.from_pretrained(folder)
    state_dict: dict[str, torch.Tensor] = {}
    for path in _pickled_shards(folder, weights_name):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise UsageError(
                f"{path} holds Python objects other than tensors; it is not converted, since unpickling them could "
                f"run code ({str(error).splitlines()[0]})"
            ) from error
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):  # a training checkpoint
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
            raise UsageError(f"{path} does not hold a state dict (a mapping of names to tensors)")
        state_dict.update(loaded)
    model = model_class(config)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shapes that differ from the config's
        raise UsageError(f"the weights in {folder} do not fit its config ({config.model_type}): {error}") from error
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})  # restored with the weight they share
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:
        raise UsageError(
            f"the weights in {folder} do not fit its config ({config.model_type}): missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return save_pretrained_atomically(model, output_dir)
