"""Checkpoint directories that are never half-written.

A checkpoint is written into `.tmp-checkpoint-<step>/` and renamed to `checkpoint-<step>/` only once every process
has finished writing, so a run killed during a save leaves the previous checkpoint as the latest loadable one.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TEMPORARY_PREFIX = ".tmp-checkpoint-"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def remove_incomplete_checkpoints(output_dir: str | Path) -> None:
    """Delete the temporary directories of saves that were interrupted."""
    output_dir = Path(output_dir)
    if output_dir.is_dir():
        for path in output_dir.glob(TEMPORARY_PREFIX + "*"):
            shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | Path,
    step: int,
    write_extra_state: Callable[[Path], None],
    total_limit: int | None = None,
) -> Path:
    """Save the accelerator's state plus `write_extra_state(directory)` (called on every process) as
    `checkpoint-<step>`, atomically; then keep only the newest `total_limit` checkpoints."""
    output_dir = Path(output_dir)
    temporary = output_dir / f"{TEMPORARY_PREFIX}{step}"
    final = output_dir / f"checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    write_extra_state(temporary)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        _fsync_tree(temporary)
        os.replace(temporary, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _fsync_tree(directory: Path) -> None:
    """Flush the files to disk before the rename publishes them (a crash must not leave empty files behind)."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
