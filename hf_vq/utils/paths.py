"""Telling a local path from a Hub id, before anything asks the Hub.

A name that exists on disk, starts with `.`, `/` or `~`, or ends like a file (`.safetensors`, `.yaml`, ...) is
local; `builtin:<name>` is a builtin dataset; anything else is a Hub repo id. A local name that does not exist is a
`UsageError` at once: no request is made and nothing waits for the network.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id

from .errors import UsageError

BUILTIN_PREFIX = "builtin:"
LOCAL_PREFIXES = (".", "/", "~")
# A name ending like a file is a file: no Hub repo is called `lpips_vgg16.safetensors`.
FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".yaml", ".yml", ".parquet", ".png", ".jpg")


def is_local(name: str | os.PathLike) -> bool:
    """Whether `name` means a local file or folder: it exists, starts with `.`, `/` or `~`, or ends like a file."""
    text = os.fspath(name)
    return text.startswith(LOCAL_PREFIXES) or text.lower().endswith(FILE_SUFFIXES) or Path(text).exists()


def check_source(name: str | os.PathLike, what: str) -> str:
    """`name` checked as a local path (which must exist: returned with `~` expanded), a builtin, or a well-formed
    Hub repo id; `what` names the flag or argument in the error (e.g. "--dataset")."""
    text = os.fspath(name)
    if text.startswith(BUILTIN_PREFIX):
        return text
    if is_local(text):
        path = Path(text).expanduser()
        if not path.exists():
            raise UsageError(f"{what}: no such file or directory: {text}")
        return str(path)
    try:
        validate_repo_id(text)
    except HFValidationError as error:
        raise UsageError(
            f"{what}: {text!r} is neither an existing local path nor a Hub repo id ('org/name'): {error}"
        ) from None
    return text
