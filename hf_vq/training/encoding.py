"""Tokenizing an image dataset: a trained VQ model turns every image into its code indices, once, for the prior.

Each process encodes its own shard of each split (batched, no gradients) and writes it with `save_to_disk`; process 0
then joins the shards into one `DatasetDict` and moves it into place in one rename, so that an interrupted run
leaves no half-written dataset. Next to the splits, `hf_vq_codes.json` records the VQ model, the token grid, the
codebook size and the number of records read and skipped per split (`train_prior.py` reads the VQ model from it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    Value,
    concatenate_datasets,
    disable_progress_bars,
    enable_progress_bars,
    is_progress_bar_enabled,
    load_from_disk,
)
from datasets import Sequence as SequenceFeature
from tqdm.auto import tqdm

from ..data import ImageStream, image_dataloader, load_image_dataset
from ..utils.configuration_utils import latent_side
from ..utils.errors import UsageError

logger = logging.getLogger(__name__)

CODES_INFO_NAME = "hf_vq_codes.json"


def _label_feature(source_features, label_column: str | None):
    if label_column is None:
        return None
    feature = source_features.get(label_column) if source_features is not None else None
    return feature if isinstance(feature, ClassLabel) else Value("int64")


def _describe_model(name_or_path: str | os.PathLike) -> str:
    """A local model folder as an absolute path (training may run elsewhere), a Hub id as it is."""
    return str(Path(name_or_path).resolve()) if os.path.isdir(name_or_path) else str(name_or_path)


@torch.no_grad()
def encode_dataset(
    vq_model: torch.nn.Module,
    source: str,
    output_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "test"),
    *,
    vq_model_name_or_path: str | os.PathLike | None = None,
    image_column: str = "image",
    label_column: str | None = None,
    resolution: int | None = None,
    batch_size: int = 64,
    dataset_config: str | None = None,
    accelerator: Accelerator | None = None,
    quiet: bool = False,
) -> DatasetDict | None:
    """Encode `splits` of an image dataset with `vq_model` into `output_dir` (a `DatasetDict` saved to disk).

    Columns: `indices` (the h*w codes of each image, raster order, int32; with a residual quantizer h*w*depth, the
    stages of each position in a row) and, with `label_column`, `label`. Images
    are resized and center-cropped to `resolution` (default: the model's `sample_size`); records that cannot be
    decoded are skipped and counted in `hf_vq_codes.json`. Returns the dataset on process 0, None elsewhere.

    The main process shows a progress bar per split on stderr when stderr is a terminal, unless `quiet`; when it
    shows none, neither does `datasets` (saving and joining the shards).
    """
    output_dir = Path(output_dir)
    if output_dir.exists():
        raise UsageError(f"--output_dir {output_dir} already exists: choose a new folder (nothing was written)")
    if not hasattr(vq_model, "encode_indices"):
        raise UsageError(f"`vq_model` must be a VQ model (with encode_indices), got {type(vq_model).__name__}")
    if batch_size < 1:
        raise UsageError(f"`batch_size` must be >= 1, got {batch_size}")
    accelerator = accelerator or Accelerator(cpu=not torch.accelerator.is_available())
    resolution = resolution or vq_model.config.sample_size
    latent_side(vq_model.config, resolution)  # checks the resolution
    vq_model = vq_model.to(accelerator.device).eval()
    show_progress = not quiet and accelerator.is_main_process and sys.stderr.isatty()
    staging = output_dir.with_name(output_dir.name + ".partial")
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)  # left by an interrupted run
    accelerator.wait_for_everyone()

    with _datasets_progress_bars(show_progress):
        counts = {
            split: _encode_split(
                vq_model, load_image_dataset(source, split, dataset_config), split, resolution, image_column,
                label_column, batch_size, staging, accelerator, show_progress,
            )
            for split in splits
        }  # fmt: skip
    totals = _summed_counts(counts, accelerator)
    accelerator.wait_for_everyone()
    result = None
    if accelerator.is_main_process:
        info = {
            "vq_model": _describe_model(vq_model_name_or_path) if vq_model_name_or_path else None,
            "vq_model_class": type(vq_model).__name__,
            "codebook_size": vq_model.config.num_vq_embeddings,
            "token_grid_size": [latent_side(vq_model.config, resolution)] * 2,
            "codes_per_position": vq_model.config.codes_per_position,  # residual VQ: its depth, stage fastest
            "resolution": resolution,
            "source": source,
            "image_column": image_column,
            "label_column": label_column,
        }
        with _datasets_progress_bars(show_progress):
            result = _join_shards(staging, output_dir, totals, accelerator.num_processes, info)
    accelerator.wait_for_everyone()
    return result


@contextmanager
def _datasets_progress_bars(enabled: bool) -> Iterator[None]:
    """`datasets`' own progress bars (a global switch) off while `enabled` is False, then as they were."""
    was_enabled = is_progress_bar_enabled()
    if was_enabled and not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            enable_progress_bars()


def _encode_split(
    vq_model: torch.nn.Module,
    dataset: Any,
    split: str,
    resolution: int,
    image_column: str,
    label_column: str | None,
    batch_size: int,
    staging: Path,
    accelerator: Accelerator,
    show_progress: bool,
) -> dict[str, Any]:
    """Encode this process's shard of one split into the staging folder; its records read and skipped."""
    stream = ImageStream(
        dataset,
        resolution,
        num_channels=vq_model.config.in_channels,
        image_column=image_column,
        label_column=label_column,
        shuffle_buffer=1,  # the dataset's own order
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    label_feature = _label_feature(dataset.features, label_column)
    progress = {"desc": f"encoding {split}", "disable": not show_progress}
    shard = _encode_shard(vq_model, stream, label_feature, batch_size, accelerator.device, progress)
    shard.save_to_disk(str(_shard_path(staging, split, accelerator.process_index)))
    logger.info(
        "split %s, rank %d: %d images encoded, %d records skipped",
        split,
        accelerator.process_index,
        stream.records_yielded,
        stream.records_read - stream.records_yielded,
    )
    return {"records_read": stream.records_read, "skipped": dict(stream.skip_counts)}


def _join_shards(
    staging: Path, output_dir: Path, totals: dict[str, dict[str, Any]], num_processes: int, info: dict[str, Any]
) -> DatasetDict:
    """Process 0: every process's shards joined per split, saved with the info file, moved into place in one
    rename (a reader never sees a half-written dataset)."""
    result = DatasetDict(
        {
            split: concatenate_datasets(
                [load_from_disk(str(_shard_path(staging, split, rank))) for rank in range(num_processes)]
            )
            for split in totals
        }
    )
    final = staging / "dataset"
    result.save_to_disk(str(final))
    info["splits"] = {
        split: {"records_read": counts["records_read"], "encoded": len(result[split]), "skipped": counts["skipped"]}
        for split, counts in totals.items()
    }
    (final / CODES_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    del result  # its files are about to move
    os.replace(final, output_dir)
    shutil.rmtree(staging)
    return load_from_disk(str(output_dir))


def _shard_path(staging: Path, split: str, rank: int) -> Path:
    return staging / "shards" / split / f"rank-{rank}"


def _encode_shard(
    vq_model: torch.nn.Module,
    stream: ImageStream,
    label_feature: Any,
    batch_size: int,
    device: torch.device,
    progress: dict[str, Any],
) -> Dataset:
    """This process's shard of one split as a `Dataset`: the codes of each image (h*w*depth, int32) and, with a
    `label_feature` (the label column's feature), its label. `progress`: tqdm's options for the bar over batches."""
    indices, labels = [], []
    for batch in tqdm(image_dataloader(stream, batch_size, drop_last=False), unit="batch", **progress):
        codes = vq_model.encode_indices(batch["pixel_values"].to(device))  # (B, h, w) or (B, h, w, depth)
        indices.append(codes.flatten(1).to(torch.int32).cpu().numpy())  # (B, h*w*depth): the stages fastest
        if label_feature is not None:
            labels.append(batch["labels"].numpy())
    num_codes = latent_side(vq_model.config, stream.resolution) ** 2 * vq_model.config.codes_per_position
    features = {"indices": SequenceFeature(Value("int32"), length=num_codes)}
    columns: dict[str, Any] = {"indices": list(np.concatenate(indices)) if indices else []}
    if label_feature is not None:
        features["label"] = label_feature
        columns["label"] = np.concatenate(labels).tolist() if labels else []
    return Dataset.from_dict(columns, features=Features(features))


def _summed_counts(counts: dict[str, dict[str, Any]], accelerator: Accelerator) -> dict[str, dict[str, Any]]:
    """Records read and skipped per split (per reason), summed over every process (for the info file)."""
    splits = list(counts)
    reasons = list(counts[splits[0]]["skipped"])
    totals = torch.tensor(
        [[counts[s]["records_read"], *counts[s]["skipped"].values()] for s in splits], device=accelerator.device
    )
    totals = accelerator.reduce(totals, reduction="sum").cpu()
    return {
        split: {"records_read": int(row[0]), "skipped": dict(zip(reasons, (int(v) for v in row[1:]), strict=True))}
        for split, row in zip(splits, totals, strict=True)
    }


def read_codes_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The `hf_vq_codes.json` of a code dataset folder, or None (a Hub dataset, or written by other tools)."""
    info = Path(path) / CODES_INFO_NAME
    return json.loads(info.read_text()) if info.is_file() else None
