"""Checkpoint directories that are never half-written.

A checkpoint is written into `.tmp-checkpoint-<step>/` and renamed to `checkpoint-<step>/` only once every process
has finished writing, so a run killed during a save leaves the previous checkpoint as the latest loadable one. Each
checkpoint carries its run's identity (`run_id` in `trainer_state.json`, kept across resumes), and rotation counts
only the checkpoints of the current run, so it never deletes the checkpoint the run has just written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TEMPORARY_PREFIX = ".tmp-checkpoint-"
TRAINER_STATE_NAME = "trainer_state.json"


def drop_tied_weights(models: list, weights: list[dict], output_dir: str) -> None:
    """A `save_state` pre-hook: leave out the weights a model declares tied to another (the prior's
    `lm_head.weight` is `transformer.wte.weight`), as `save_pretrained` does. safetensors cannot store one tensor
    under two names, so Accelerate would drop the alias itself and warn at every checkpoint; `load_state` restores
    it through the tie."""
    for model, state in zip(models, weights, strict=False):
        tied = getattr(extract_model_from_parallel(model), "all_tied_weights_keys", None) or {}
        for key in [key for key in state if any(key == name or key.endswith(f".{name}") for name in tied)]:
            del state[key]


def checkpoint_step(checkpoint: Path) -> int | None:
    """The step of a `checkpoint-<step>` folder (None for a folder named otherwise)."""
    match = CHECKPOINT_PATTERN.match(checkpoint.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def checkpoint_run_id(checkpoint: Path) -> str | None:
    """The identity of the run that wrote `checkpoint` (None for a checkpoint without a readable one)."""
    try:
        return json.loads((checkpoint / TRAINER_STATE_NAME).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


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
    run_id: str | None = None,
) -> Path:
    """Save the accelerator's state plus `write_extra_state(directory)` (called on every process, which writes
    `trainer_state.json` with `run_id`) as `checkpoint-<step>`, atomically; then keep only the newest `total_limit`
    checkpoints of run `run_id`, by step, always including the one just written."""
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
        _fsync_tree(temporary)
        replaced = None
        if final.exists():  # a checkpoint of this step from before a resume: set aside, deleted once replaced
            replaced = output_dir / f"{TEMPORARY_PREFIX}{step}-replaced"
            os.replace(final, replaced)
        os.replace(temporary, final)
        if replaced is not None:
            shutil.rmtree(replaced)
        if total_limit is not None:
            # the run's other checkpoints, oldest first; the one just written is always kept
            others = [path for path in list_checkpoints(output_dir) if path != final]
            ours = [path for path in others if checkpoint_run_id(path) == run_id]
            for old in ours[: max(len(ours) - (total_limit - 1), 0)]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _fsync_tree(directory: Path) -> None:
    """Flush the files to disk before the rename publishes them (a crash must not leave empty files behind)."""
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def find_damaged_file(checkpoint: Path, expected: list[str]) -> str | None:
    """The first file of `checkpoint` that is missing among `expected` or cannot be read back whole (a truncated or
    corrupt safetensors, pickle or JSON file), or None when every file reads."""
    import torch  # only on this error path
    from safetensors.torch import load_file

    for name in expected:
        if not (checkpoint / name).is_file():
            return name
    for path in sorted(checkpoint.rglob("*")):
        if not path.is_file():
            continue
        try:
            if path.suffix == ".safetensors":
                load_file(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix in (".bin", ".pkl", ".pt"):
                torch.load(path, map_location="cpu", weights_only=False)  # our own run's state, as Accelerate reads it
        except Exception:  # any failure to read the file back means it is damaged
            return str(path.relative_to(checkpoint))
    return None
