"""The sharded, shuffled, resumable record streams: a `datasets` dataset as a torch `IterableDataset`.

`ImageStream` turns an image dataset into `{"pixel_values": (C, H, W) in [-1, 1]}` (plus `"labels"`), `CodeStream` a
dataset of code indices into prior training samples, `SequenceStream` melody tunes into windows of bars of tokens;
all are `RecordStream`s: streamed, shuffled, sharded per process, each record turned into a sample on the fly.
Records that cannot be used (undecodable bytes, images smaller than `min_size`, missing values) are skipped, counted
in `skip_counts` and logged (logger `hf_vq.data.stream`, under `hf_vq.data`); a stream whose first `max_bad_records`
records are all bad, or with nothing usable at all, raises a `ValueError` naming the column and the first bad record.

Multi-process training (Accelerate): build one stream per process with `rank=accelerator.process_index` and
`world_size=accelerator.num_processes`. The stream shards itself with `datasets.distributed.split_dataset_by_node`,
so its DataLoader must NOT go through `accelerator.prepare`: for an iterable dataset Accelerate would either
dispatch the batches of process 0 to every process (the default; the other shards are never read) or, with
`dispatch_batches=False`, keep one batch in `world_size` of each process's shard (half the data silently unused on 2
processes). Use `image_dataloader(stream, batch_size)` as it is and move each batch to `accelerator.device`.
Processes can see different numbers of records in an epoch (shards differ in size): with `repeat=True` the stream
never ends, so a loop that counts optimizer steps stays in step on every process.

Resuming: `RecordStream.state_dict()` is the position of the next record, the epoch and the skip counts (plain JSON
types); `load_state_dict` on a freshly built stream with the same seed, shuffle buffer, rank and world size resumes at
exactly that record, with the same shuffle order and the same random crops and flips. Each process has its own
state: save one per rank (Accelerate's `register_for_checkpointing` writes process 0's only).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from datasets.distributed import split_dataset_by_node
from PIL import Image as PILImage

from ..music.encoding import NUM_SPECIAL_TOKENS, VOCAB_SIZE
from ..utils.errors import UsageError
from .images import ImageDecoder, augmented_pixels, undecoded_image_column
from .melodies import cut_melody_windows
from .sources import check_columns

logger = logging.getLogger(__name__)

SKIP_REASONS = ("undecodable", "tiny", "missing")
SKIP_LOG_EVERY = 1000  # after the first skip of each reason, a summary every this many skips
_STATE_FORMAT = 1
# Tags that keep the two kinds of seeded generators (block order, per-record augmentation) independent.
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1


def _shard_order_epoch(seed: int, epoch: int) -> int:
    """The epoch number handed to datasets, which shuffles the shard order with it.

    datasets shuffles the shards on `set_epoch(e)` with `default_rng(e)` and not at all for e = 0, the same for every
    seed; a nonzero number drawn from (seed, epoch) shuffles the first epoch too and makes the order depend on the
    seed. Every process computes the same number, so the shards are assigned consistently.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1)) + 1


def _describe(record: dict, limit: int = 200) -> str:
    """A short, printable form of a record, with image bytes truncated."""

    def short(value: Any) -> Any:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value[:16]) + (b"..." if len(value) > 16 else b"")
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items()}
        if isinstance(value, PILImage.Image):
            return f"<PIL {value.mode} {value.width}x{value.height}>"
        return value

    text = repr({key: short(value) for key, value in record.items()})
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RecordStream(torch.utils.data.IterableDataset):
    """A `datasets` dataset as a shuffled, sharded, resumable stream; subclasses turn each record into a sample.

    Shuffling: datasets shuffles the shard order every epoch; then `shuffle_buffer` records at a time are read and
    yielded in a random order (a block shuffle). Unlike datasets' own rolling buffer, whose content is lost on resume,
    a block can be read again, which makes resuming exact. The order (and any per-record randomness a subclass draws
    from `_record_rng`) depends only on `seed`, the epoch, `rank` and the position in the stream.

    The stream is a cursor: iterating continues from the current position, and when an epoch ends the stream moves to
    the start of the next one (and, with `repeat`, goes on into it). `set_epoch(e)` jumps to the start of epoch `e`
    unless the stream is already in it. One iterator at a time; use it with `num_workers=0` (`image_dataloader`).

    Subclasses implement `_sample(record, position)`, returning the sample or `self._skip(...)` for a record that
    cannot be used, and may override `_prepare(dataset)` (column checks, decoding off), `_noun` and `_column`
    (named in errors).
    """

    _noun, _column = "record", "the dataset"  # named in errors

    def __init__(
        self,
        dataset: Dataset | IterableDataset,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        repeat: bool = False,
        max_bad_records: int = 100,
    ):
        super().__init__()
        if shuffle_buffer < 1:
            raise UsageError(f"`shuffle_buffer` must be >= 1, got {shuffle_buffer}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"`rank` must be in [0, world_size) and `world_size` >= 1, got {rank} and {world_size}")
        if seed < 0:
            raise UsageError(f"`seed` must be >= 0, got {seed}")
        if max_bad_records < 1:
            raise UsageError(f"`max_bad_records` must be >= 1, got {max_bad_records}")
        if isinstance(dataset, Dataset):
            # Several shards, so that the shard order can be shuffled each epoch and split between processes, but
            # not of a handful of rows each: every shard costs ~1 ms to open.
            dataset = dataset.to_iterable_dataset(num_shards=min(64, max(1, len(dataset) // 16)))
        elif not isinstance(dataset, IterableDataset):
            raise TypeError(f"`dataset` must be a datasets Dataset or IterableDataset, got {type(dataset).__name__}")
        self.dataset = self._prepare(dataset)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.repeat = repeat
        self.max_bad_records = max_bad_records
        self.skip_counts = dict.fromkeys(SKIP_REASONS, 0)
        self.records_read = 0  # over the stream's life, restored on resume
        self.records_yielded = 0
        self._first_bad: str | None = None
        self._start_epoch(0)

    def _prepare(self, dataset: IterableDataset) -> IterableDataset:
        return dataset

    def _sample(self, record: dict, position: int) -> dict[str, Any] | None:
        raise NotImplementedError

    def _record_rng(self, position: int) -> np.random.Generator:
        """The random generator of one record (augmentations, class dropout): the same after a resume."""
        return np.random.default_rng([_AUGMENT_STREAM, self.seed, self.rank, self.epoch, position])

    # ----------------------------------------------------------------------------------------------- position

    def _start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._block = 0  # index of the block (of `shuffle_buffer` records) in this epoch
        self._offset = 0  # records of the block already read (yielded or skipped)
        self._block_source_state: dict | None = None  # datasets' state at the start of the block; None: epoch start
        self._epoch_read = 0
        self._epoch_yielded = 0

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of `epoch`, unless the stream is already in it (e.g. at a restored position)."""
        if epoch != self.epoch:
            self._start_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The position of the next record, the epoch and the skip counts, as JSON-serializable values."""
        return {
            "format": _STATE_FORMAT,
            "seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
            "rank": self.rank,
            "world_size": self.world_size,
            "epoch": self.epoch,
            "block": self._block,
            "offset": self._offset,
            "source": copy.deepcopy(self._block_source_state),
            "epoch_records_read": self._epoch_read,
            "epoch_records_yielded": self._epoch_yielded,
            "records_read": self.records_read,
            "records_yielded": self.records_yielded,
            "skip_counts": dict(self.skip_counts),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the position saved by `state_dict` (on a stream built with the same arguments)."""
        if state.get("format") != _STATE_FORMAT:
            raise UsageError(f"unknown ImageStream state format {state.get('format')!r}; expected {_STATE_FORMAT}")
        saved = {key: state[key] for key in ("seed", "shuffle_buffer", "rank", "world_size")}
        current = {key: getattr(self, key) for key in saved}
        if saved != current:
            raise UsageError(
                f"the saved data position belongs to a stream with {saved}, this stream has {current}: the order of "
                "the records would differ (each process must restore its own state)"
            )
        self._start_epoch(state["epoch"])
        self._block, self._offset = state["block"], state["offset"]
        self._block_source_state = copy.deepcopy(state["source"])
        self._epoch_read, self._epoch_yielded = state["epoch_records_read"], state["epoch_records_yielded"]
        self.records_read, self.records_yielded = state["records_read"], state["records_yielded"]
        self.skip_counts = dict.fromkeys(SKIP_REASONS, 0) | state["skip_counts"]

    # ------------------------------------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield from self._iter_epoch()
            if self._epoch_read == 0:
                raise UsageError(
                    f"the stream of rank {self.rank} of {self.world_size} has no records in epoch {self.epoch}: "
                    "the dataset is empty or has fewer records than processes"
                )
            if self._epoch_yielded == 0:
                raise UsageError(self._nothing_usable(f"any of the {self._epoch_read} records of epoch {self.epoch}"))
            if self._epoch_read > self._epoch_yielded:
                logger.info(
                    "epoch %d on rank %d/%d: %d %ss, %d records skipped (%s)",
                    self.epoch,
                    self.rank,
                    self.world_size,
                    self._epoch_yielded,
                    self._noun,
                    self._epoch_read - self._epoch_yielded,
                    self._format_counts(),
                )
            self._start_epoch(self.epoch + 1)
            if not self.repeat:
                return

    def _iter_epoch(self) -> Iterator[dict[str, Any]]:
        """The rest of the current epoch from the current position, updating the position before each yield."""
        source = split_dataset_by_node(self.dataset, rank=self.rank, world_size=self.world_size)  # a fresh object
        source.set_epoch(_shard_order_epoch(self.seed, self.epoch))
        if self._block_source_state is not None:
            source.load_state_dict(self._block_source_state)
        records = iter(source)
        try:
            while True:
                block = list(islice(records, self.shuffle_buffer))
                if not block:
                    return
                rng = np.random.default_rng([_SHUFFLE_STREAM, self.seed, self.rank, self.epoch, self._block])
                order = rng.permutation(len(block))
                for i in range(self._offset, len(block)):
                    position = self._block * self.shuffle_buffer + i  # in this process's epoch order
                    self._offset = i + 1
                    self._epoch_read += 1
                    self.records_read += 1
                    sample = self._sample(block[order[i]], position)
                    if sample is not None:
                        self._epoch_yielded += 1
                        self.records_yielded += 1
                        yield sample
                    elif self.records_yielded == 0 and self.records_read >= self.max_bad_records:
                        raise UsageError(self._nothing_usable(f"the first {self.records_read} records"))
                self._block += 1
                self._offset = 0
                self._block_source_state = source.state_dict()  # = the start of the next block
        finally:
            records.close()  # release open files now, not whenever the abandoned generator is collected

    # -------------------------------------------------------------------------------------------------- skips

    def _where(self, record: dict, position: int) -> str:
        """Which record, for messages: its position in this process's epoch, and a short form of its content."""
        return f"record {position} of epoch {self.epoch} on rank {self.rank}/{self.world_size} {_describe(record)}"

    def _skip(self, reason: str, record: dict, position: int, detail: str) -> None:
        self.skip_counts[reason] += 1
        description = f"{self._where(record, position)}: {reason} ({detail})"
        if self._first_bad is None:
            self._first_bad = description
        skipped = sum(self.skip_counts.values())
        if self.skip_counts[reason] == 1:
            logger.warning("skipping %s; later skips are summarized every %d", description, SKIP_LOG_EVERY)
        if skipped % SKIP_LOG_EVERY == 0:
            logger.warning("skipped %d of %d records so far (%s)", skipped, self.records_read, self._format_counts())
        return None

    def _format_counts(self) -> str:
        return ", ".join(f"{reason}: {count}" for reason, count in self.skip_counts.items() if count)

    def _nothing_usable(self, scope: str) -> str:
        return (
            f"no usable {self._noun} in {self._column} in {scope} (skipped: {self._format_counts()}); "
            f"first bad record: {self._first_bad}"
        )


class ImageStream(RecordStream):
    """A `datasets` image dataset as a shuffled, sharded, resumable stream of model inputs.

    Each record yields `{"pixel_values": (num_channels, resolution, resolution) float32 in [-1, 1]}` and, with
    `label_column`, `"labels": int`. Images are decoded here (the column is read undecoded, so that bad bytes cost one
    record and not the iterator), converted to L or RGB (transparency over white, see `convert_image_mode`), their
    shorter side resized to `resolution` and center-cropped (or, with `random_crop`, a random square of `crop_size`
    resized), then flipped at random with `random_flip`.

    Shuffling, sharding and resuming: see `RecordStream`.

    Args:
        dataset: a `datasets.Dataset` (converted with `to_iterable_dataset`) or `IterableDataset`, not yet sharded.
        resolution: output height and width in pixels.
        num_channels: 1 (grayscale) or 3 (RGB).
        image_column: column holding the images (`Image` feature, or bytes / paths / PIL images).
        label_column: optional integer label column, yielded as `labels`.
        shuffle_buffer: records read and shuffled at a time (1 keeps the shard order); they are held in memory.
        seed: seed of the shuffle, crops and flips; the same on every process.
        random_flip: mirror each image left to right with probability 1/2.
        min_size: images whose shorter side is smaller are skipped as "tiny" (larger ones are resized, up or down).
        rank, world_size: this process and the number of processes; the records are split between them exactly once.
        random_crop: take a random `crop_size` square (the shorter side when smaller) instead of the center crop.
        crop_size: side of the random crop before resizing; defaults to twice `resolution`.
        repeat: go on to the next epoch forever instead of stopping at the end of the data.
        max_bad_records: raise if this many records are read before the first usable one.
        decode_cache_size: keep up to this many decoded images (keyed by a hash of their bytes), for repeating over a
            few large images such as `builtin:photos`; 0 decodes every time.
    """

    def __init__(
        self,
        dataset: Dataset | IterableDataset,
        resolution: int,
        num_channels: int = 3,
        image_column: str = "image",
        label_column: str | None = None,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        random_flip: bool = False,
        min_size: int = 8,
        rank: int = 0,
        world_size: int = 1,
        random_crop: bool = False,
        crop_size: int | None = None,
        repeat: bool = False,
        max_bad_records: int = 100,
        decode_cache_size: int = 0,
    ):
        for name, value in (("resolution", resolution), ("min_size", min_size)):
            if value < 1:
                raise UsageError(f"`{name}` must be >= 1, got {value}")
        if num_channels not in (1, 3):
            raise UsageError(f"`num_channels` must be 1 (grayscale) or 3 (RGB), got {num_channels}")
        if crop_size is not None and crop_size < 1:
            raise UsageError(f"`crop_size` must be >= 1, got {crop_size}")
        if crop_size is not None and not random_crop:
            raise UsageError("`crop_size` sets the size of the random crop; it needs `random_crop=True`")
        if decode_cache_size < 0:
            raise UsageError(f"`decode_cache_size` must be >= 0, got {decode_cache_size}")
        self.image_column = image_column
        self.label_column = label_column
        super().__init__(dataset, shuffle_buffer, seed, rank, world_size, repeat, max_bad_records)
        self.resolution = resolution
        self.num_channels = num_channels
        self.random_flip = random_flip
        self.min_size = min_size
        self.random_crop = random_crop
        self.crop_size = crop_size if crop_size is not None else 2 * resolution
        self.decode_cache_size = decode_cache_size
        self._decoder = ImageDecoder(num_channels, decode_cache_size)

    _noun = "image"

    @property
    def _column(self) -> str:
        return f"column {self.image_column!r}"

    def _prepare(self, dataset: IterableDataset) -> IterableDataset:
        """The dataset with decoding off (images as bytes/paths), after checking that the columns exist."""
        if dataset.features is None:  # unknown until iteration (some Hub streams): values are checked record by record
            return dataset
        check_columns(dataset.features, image_column=self.image_column, label_column=self.label_column)
        return undecoded_image_column(dataset, self.image_column)

    def _sample(self, record: dict, position: int) -> dict[str, Any] | None:
        """A record -> model inputs, or None (counted and logged) when it cannot be used."""
        value = record.get(self.image_column)
        if value is None or (isinstance(value, dict) and value.get("bytes") is None and value.get("path") is None):
            return self._skip("missing", record, position, f"no value in column {self.image_column!r}")
        label = None
        if self.label_column is not None:
            label = record.get(self.label_column)
            if label is None:
                return self._skip("missing", record, position, f"no value in label column {self.label_column!r}")
        try:
            image = self._decoder(value)
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
            return self._skip("undecodable", record, position, f"{type(error).__name__}: {error}")
        if min(image.size) < self.min_size:
            size = f"{image.width}x{image.height} px, smaller than min_size={self.min_size}"
            return self._skip("tiny", record, position, size)
        rng = self._record_rng(position) if self.random_crop or self.random_flip else None
        crop_size = self.crop_size if self.random_crop else None
        pixels = augmented_pixels(image, self.resolution, self.num_channels, rng, crop_size, self.random_flip)
        sample = {"pixel_values": pixels}  # (C, R, R)
        if label is not None:
            sample["labels"] = int(label)
        return sample


class CodeStream(RecordStream):
    """Code-index sequences (as `scripts/encode_dataset.py` writes them) as a stream of prior training samples.

    Each record yields `{"indices": (num_tokens,) int64, "class_labels": int}`, the class label being -1 for "no
    class": always without `label_column`, and with probability `class_dropout_prob` otherwise (the unconditional
    half of classifier-free guidance; the draw is per record and survives a resume). Records without a value are
    skipped and counted; codes of the wrong length or outside [0, num_codes), or labels outside [0, num_classes),
    mean the data belongs to another VQ model or label set and raise a `ValueError` naming the record.
    Shuffling, sharding and resuming: see `RecordStream`.
    """

    _noun = "code sequence"

    def __init__(
        self,
        dataset: Dataset | IterableDataset,
        num_codes: int,
        num_tokens: int,
        indices_column: str = "indices",
        label_column: str | None = None,
        num_classes: int = 0,
        class_dropout_prob: float = 0.0,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        repeat: bool = False,
    ):
        if label_column is not None and num_classes < 1:
            raise UsageError(f"`label_column` {label_column!r} needs `num_classes` >= 1, got {num_classes}")
        if not 0.0 <= class_dropout_prob <= 1.0:
            raise UsageError(f"`class_dropout_prob` must be in [0, 1], got {class_dropout_prob}")
        self.num_codes, self.num_tokens, self.num_classes = num_codes, num_tokens, num_classes
        self.indices_column, self.label_column = indices_column, label_column
        self.class_dropout_prob = class_dropout_prob
        super().__init__(dataset, shuffle_buffer, seed, rank, world_size, repeat)

    @property
    def _column(self) -> str:
        return f"column {self.indices_column!r}"

    def _prepare(self, dataset: IterableDataset) -> IterableDataset:
        if dataset.features is not None:
            check_columns(dataset.features, indices_column=self.indices_column, label_column=self.label_column)
        return dataset

    def _sample(self, record: dict, position: int) -> dict[str, Any] | None:
        codes = record.get(self.indices_column)
        if codes is None:
            return self._skip("missing", record, position, f"no value in column {self.indices_column!r}")
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long).reshape(-1)
        if len(codes) != self.num_tokens or codes.min() < 0 or codes.max() >= self.num_codes:
            found = f"{len(codes)} codes" + (f" in [{codes.min()}, {codes.max()}]" if len(codes) else "")
            raise UsageError(
                f"{self._where(record, position)}: expected {self.num_tokens} codes in [0, {self.num_codes}) in "
                f"column {self.indices_column!r}, found {found}: were these codes made by another VQ model?"
            )
        label = -1
        if self.label_column is not None:
            value = record.get(self.label_column)
            if value is None:
                return self._skip("missing", record, position, f"no value in label column {self.label_column!r}")
            if not 0 <= int(value) < self.num_classes:
                raise UsageError(
                    f"{self._where(record, position)}: label {value} is outside [0, {self.num_classes}) (num_classes)"
                )
            if self.class_dropout_prob == 0 or self._record_rng(position).random() >= self.class_dropout_prob:
                label = int(value)
        return {"indices": codes, "class_labels": label}


def image_dataloader(stream: RecordStream, batch_size: int, drop_last: bool = True) -> torch.utils.data.DataLoader:
    """Batches of a stream, read in the main process (`num_workers=0`).

    Workers would not help (2 are slower than none on 2 cores) and would hold the stream position where
    `ImageStream.state_dict` cannot see it. Do not pass the loader to `accelerator.prepare`: the stream is already
    sharded (see the module docstring).
    """
    # Each new iterator draws a base seed from its generator: with the default (the global one), re-creating the
    # iterator after a resume would shift the global random stream and change every later dropout mask or sample.
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(
        stream, batch_size=batch_size, drop_last=drop_last, num_workers=0, generator=generator
    )


class SequenceStream(RecordStream):
    """Windows of melody tunes (rows of token sequences, as `builtin:folk-melodies`) as a stream of training samples.

    Each tune is cut into windows of `num_bars * bar_length` steps starting every bar (hop `bar_length`) from its
    first step; windows without a note-on are dropped and, with `dedupe`, repeats of an earlier window of the same
    tune (`hf_vq.data.melodies.tune_windows`). With `match_meter`, only tunes whose `bar_column` is `bar_length` are
    cut (MusicVAE keeps only 16-step bars); the others are counted in `window_stats`. Each window yields
    `{"input_ids": (num_bars * bar_length,) int64}`, transposed with `transpose` > 0 by a whole number of semitones
    drawn uniformly among those in [-transpose, transpose] that keep every note in the vocabulary's range (the draw
    is per window and survives a resume).

    The windows are cut once, here, in memory (melody corpora are small: the whole folk corpus is a few MB of
    windows), the same on every process, and put in an order drawn from `seed` so that the block shuffle mixes
    tunes. Shuffling, sharding and resuming: see `RecordStream`.

    Args:
        dataset: a `datasets.Dataset` or `IterableDataset` of tunes.
        num_bars: bars per window (MusicVAE: 2 or 16).
        bar_length: steps per bar and the hop between windows (16: a 4/4 bar at 4 steps per quarter).
        transpose: largest random transposition in semitones (MusicVAE's 2-bar configs: 5); 0 for none.
        dedupe: drop repeats of a window within a tune.
        match_meter: cut only the tunes whose `bar_column` equals `bar_length`.
        tokens_column: column of token lists; bar_column: column of bar lengths in steps (read with `match_meter`).
        shuffle_buffer, seed, rank, world_size, repeat: as for `RecordStream`.
    """

    _noun = "melody window"

    def __init__(
        self,
        dataset: Dataset | IterableDataset,
        num_bars: int = 2,
        bar_length: int = 16,
        transpose: int = 0,
        dedupe: bool = True,
        match_meter: bool = True,
        tokens_column: str = "tokens",
        bar_column: str = "steps_per_bar",
        shuffle_buffer: int = 1000,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        repeat: bool = False,
    ):
        if transpose < 0:
            raise UsageError(f"`transpose` must be >= 0 semitones, got {transpose}")
        if seed < 0:
            raise UsageError(f"`seed` must be >= 0, got {seed}")
        self.num_bars, self.bar_length, self.transpose = num_bars, bar_length, transpose
        self.tokens_column = tokens_column
        windows, self.window_stats = cut_melody_windows(
            dataset, num_bars, bar_length, match_meter, dedupe, tokens_column, bar_column
        )
        if len(windows) == 0:
            every_tune = ", or cut every tune of any meter (--match_meter false; a recipe's `match_meter: false`)"
            raise UsageError(
                f"no window of {num_bars} bars of {bar_length} steps with a note in column {tokens_column!r} "
                f"({self.window_stats}); use fewer bars (`num_bars` in the model config)"
                + (every_tune if match_meter else "")
            )
        # Windows of one tune are neighbours: a fixed order drawn from the seed spreads them over the whole stream.
        # The stream's records are indices into the windows, which stay here as one (N, T) int8 array.
        self.windows = windows[np.random.default_rng([_SHUFFLE_STREAM, seed]).permutation(len(windows))]
        records = Dataset.from_dict({"window": np.arange(len(windows))})
        super().__init__(records, shuffle_buffer, seed, rank, world_size, repeat)

    @property
    def _column(self) -> str:
        return f"column {self.tokens_column!r}"

    def _sample(self, record: dict, position: int) -> dict[str, Any] | None:
        tokens = self.windows[record["window"]].astype(np.int64)  # (T,)
        if self.transpose:
            notes = tokens >= NUM_SPECIAL_TOKENS
            low = max(-self.transpose, NUM_SPECIAL_TOKENS - int(tokens[notes].min()))
            high = min(self.transpose, VOCAB_SIZE - 1 - int(tokens[notes].max()))
            tokens[notes] += int(self._record_rng(position).integers(low, high + 1))
        return {"input_ids": torch.from_numpy(tokens)}
