"""What a run checks before it writes anything: that it will not overwrite a finished or interrupted run, that its
output directory can be written, that every path it names exists and that a push can succeed. A refused run leaves
the disk as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from huggingface_hub import constants, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..modules.lpips import DEFAULT_FILENAME as LPIPS_WEIGHTS_NAME
from ..utils.errors import UsageError
from ..utils.paths import check_source
from .arguments import PriorArguments, TrainingArguments
from .checkpointing import TEMPORARY_PREFIX, list_checkpoints

# What a run writes into its output directory, and so what `--overwrite_output_dir` removes first (with the
# checkpoints), so that rotation and `latest` see only the new run.
RUN_OUTPUTS = (
    "model",
    "discriminator",
    "pipeline",
    "samples",
    "logs",
    "metrics.json",
    "training_args.json",
    "README.md",
)


def used_by(output_dir: Path) -> list[str]:
    """The traces of an earlier run in `output_dir`: its final model and its checkpoints."""
    found = [name for name in ("model", "pipeline") if (output_dir / name).is_dir()]
    return found + [path.name for path in list_checkpoints(output_dir)]


def check_run(args: TrainingArguments, prior_args: PriorArguments | None = None) -> None:
    """Refuse, with a `UsageError` naming the flag and the way on, anything that would fail later or lose work. Local
    paths come back into `args` with `~` expanded."""
    output_dir = Path(args.output_dir).expanduser()
    args.output_dir = str(output_dir)
    traces = used_by(output_dir)
    checkpoints = list_checkpoints(output_dir)
    resume = args.resume_from_checkpoint
    if resume is not None and args.overwrite_output_dir:
        raise UsageError("--resume_from_checkpoint and --overwrite_output_dir contradict each other: choose one")
    # Resuming continues the run this folder holds; a checkpoint from elsewhere would write over that run.
    inside = resume not in (None, "latest") and Path(resume).expanduser().resolve().parent == output_dir.resolve()
    continues_here = resume == "latest" or inside
    if traces and not continues_here and not args.overwrite_output_dir:
        way_on = "continue it with --resume_from_checkpoint latest, or start" if checkpoints else "start"
        raise UsageError(
            f"--output_dir {output_dir} holds an earlier run ({', '.join(traces[:3])}"
            f"{', ...' if len(traces) > 3 else ''}): {way_on} afresh with --overwrite_output_dir (which deletes its "
            f"{', '.join(RUN_OUTPUTS)} and checkpoints), or choose another --output_dir"
        )
    if resume == "latest" and not checkpoints:
        raise UsageError(
            f"--resume_from_checkpoint latest: {output_dir} holds no checkpoint; leave the flag out to start a new run"
        )
    if resume not in (None, "latest"):
        if not Path(resume).expanduser().is_dir():
            raise UsageError(f"--resume_from_checkpoint: no such file or directory: {resume}")
        args.resume_from_checkpoint = str(Path(resume).expanduser())
    _check_writable(output_dir)
    args.dataset = check_source(args.dataset, "--dataset")
    if args.pretrained_model:
        args.pretrained_model = check_source(args.pretrained_model, "--pretrained_model")
    if args.lpips_weights:
        args.lpips_weights = check_source(args.lpips_weights, "--lpips_weights")
        folder = Path(args.lpips_weights)
        if folder.is_dir() and not (folder / LPIPS_WEIGHTS_NAME).is_file():
            raise UsageError(
                f"--lpips_weights: {folder} holds no {LPIPS_WEIGHTS_NAME} (scripts/convert_lpips_weights.py makes it)"
            )
    if prior_args is not None and prior_args.vq_model:
        prior_args.vq_model = check_source(prior_args.vq_model, "--vq_model")
    if args.hub_model_id:
        try:
            validate_repo_id(args.hub_model_id)
        except HFValidationError as error:
            message = f"--hub_model_id {args.hub_model_id!r} is not a Hub repo id ('org/name'): {error}"
            raise UsageError(message) from None
    if args.push_to_hub:
        # Offline, no upload can succeed, with a token or without.
        if constants.HF_HUB_OFFLINE:
            raise UsageError("--push_to_hub: HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it or drop it")
        if get_token() is None:
            raise UsageError("--push_to_hub needs a Hub token: set HF_TOKEN or run `hf auth login`")


def _check_writable(output_dir: Path) -> None:
    """The output directory, or the folder it will be created in, must be writable (checked without writing)."""
    existing = output_dir
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--output_dir {output_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output_dir {output_dir}: {existing} is not writable")


def clear_run(output_dir: Path) -> list[str]:
    """`--overwrite_output_dir`: delete an earlier run's outputs and checkpoints (complete or interrupted) from
    `output_dir`, if it holds a run; returns the names removed. Anything else in the folder stays."""
    if not used_by(output_dir):
        return []  # not a run's folder: its README.md, logs/ ... are someone else's
    removed = []
    for path in [*list_checkpoints(output_dir), *output_dir.glob(TEMPORARY_PREFIX + "*")]:
        shutil.rmtree(path)
        removed.append(path.name)
    for name in RUN_OUTPUTS:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed
