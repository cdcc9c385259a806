"""Images from any `datasets` source as a torch stream, and the builtin datasets that need no network.

Sources (`load_image_dataset`): a Hub dataset id, a local folder of parquet files or of images (imagefolder), or a
builtin dataset named `builtin:<name>`:

- `builtin:digits`: scikit-learn's bundled handwritten digits (1,797 8x8 grayscale images, labels 0-9) with a fixed,
  stratified train/test split.
- `builtin:photos`: the color photographs bundled with scikit-image and scikit-learn at full size, whole photographs
  held out for `test`. Train on random crops of them (`ImageStream(..., random_crop=True, repeat=True)`, see
  `stream_defaults`); evaluate on `photo_eval_crops`.

`ImageStream` turns a source into a torch `IterableDataset` of `{"pixel_values": (C, H, W) in [-1, 1]}` (plus
`"labels"`): streamed, shuffled, sharded per process, decoded and augmented on the fly. Records that cannot be used
(undecodable bytes, images smaller than `min_size`, missing values) are skipped, counted in `skip_counts` and logged
(logger `hf_vq.data`); a stream whose first `max_bad_records` records are all bad, or with nothing usable at all,
raises a `ValueError` naming the column and the first bad record.

Multi-process training (Accelerate): build one `ImageStream` per process with `rank=accelerator.process_index` and
`world_size=accelerator.num_processes`. The stream shards itself with `datasets.distributed.split_dataset_by_node`,
so its DataLoader must NOT go through `accelerator.prepare`: for an iterable dataset Accelerate would either
dispatch the batches of process 0 to every process (the default; the other shards are never read) or, with
`dispatch_batches=False`, keep one batch in `world_size` of each process's shard (half the data silently unused on 2
processes). Use `image_dataloader(stream, batch_size)` as it is and move each batch to `accelerator.device`.
Processes can see different numbers of records in an epoch (shards differ in size): with `repeat=True` the stream
never ends, so a loop that counts optimizer steps stays in step on every process.

Resuming: `ImageStream.state_dict()` is the position of the next record, the epoch and the skip counts (plain JSON
types); `load_state_dict` on a freshly built stream with the same seed, shuffle buffer, rank and world size resumes at
exactly that record, with the same shuffle order and the same random crops and flips. Each process has its own
state: save one per rank (Accelerate's `register_for_checkpointing` writes process 0's only).
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    Image,
    IterableDataset,
    Value,
    load_dataset,
    load_from_disk,
)
from datasets.distributed import split_dataset_by_node
from PIL import Image as PILImage

from .utils.image_utils import convert_image_mode, preprocess_image

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
DIGITS_TEST_SIZE = 360  # 20% of the 1,797 digits, stratified by label
SPLIT_SEED = 0

# scikit-image / scikit-learn photographs that ship inside the packages (no download). Whole photographs are held
# out, so that evaluation crops never overlap a training crop.
PHOTOS_TRAIN = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "china",
)
PHOTOS_TEST = ("chelsea", "coffee", "flower")
PHOTOS_SPLITS = {"train": PHOTOS_TRAIN, "test": PHOTOS_TEST}

SKIP_REASONS = ("undecodable", "tiny", "missing")
SKIP_LOG_EVERY = 1000  # after the first skip of each reason, a summary every this many skips
_STATE_FORMAT = 1
# Tags that keep the two kinds of seeded generators (block order, per-record augmentation) independent.
_SHUFFLE_STREAM, _AUGMENT_STREAM = 0, 1
_IMAGE_DECODER = Image()  # datasets' decoder: bytes or a local/remote path -> PIL, EXIF orientation applied


def _load_digits() -> DatasetDict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are counts of 0..16 set pixels in 4x4 blocks of the original 32x32 bitmaps: map to 0..255.
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, random_state=SPLIT_SEED, stratify=labels
    )
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})

    def split(indices: np.ndarray) -> Dataset:
        indices = np.sort(indices)
        images = [PILImage.fromarray(pixels[i], mode="L") for i in indices]
        return Dataset.from_dict({"image": images, "label": labels[indices].tolist()}, features=features)

    return DatasetDict(train=split(train_idx), test=split(test_idx))


def _photo_array(name: str) -> np.ndarray:
    """One bundled photograph as a (H, W, 3) uint8 array."""
    import skimage.data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name.startswith("motorcycle_"):
        left, right, _disparity = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(skimage.data, name)()


def _load_photos() -> DatasetDict:
    features = Features({"image": Image(), "name": Value("string")})

    def split(names: tuple[str, ...]) -> Dataset:
        images = []
        for name in names:
            buffer = io.BytesIO()
            # lossless; compress_level 1 encodes the ~10 MP in well under a second (the default level takes ~3 s)
            PILImage.fromarray(_photo_array(name)).save(buffer, format="PNG", compress_level=1)
            images.append({"bytes": buffer.getvalue(), "path": None})
        return Dataset.from_dict({"image": images, "name": list(names)}, features=features)

    return DatasetDict({name: split(names) for name, names in PHOTOS_SPLITS.items()})


BUILTIN_DATASETS: dict[str, Callable[[], DatasetDict]] = {"digits": _load_digits, "photos": _load_photos}


def is_builtin(source: str) -> bool:
    return source.startswith(BUILTIN_PREFIX)


def load_builtin(name: str, split: str | None = None) -> Dataset | DatasetDict:
    """A builtin dataset by name (`"digits"` or `"builtin:digits"`), as a `DatasetDict` or one of its splits."""
    key = name.removeprefix(BUILTIN_PREFIX)
    if key not in BUILTIN_DATASETS:
        available = [BUILTIN_PREFIX + k for k in BUILTIN_DATASETS]
        raise ValueError(f"unknown builtin dataset {name!r}; available: {available}")
    dataset = BUILTIN_DATASETS[key]()
    if split is None:
        return dataset
    if split not in dataset:
        raise ValueError(f"builtin dataset {name!r} has no split {split!r}; available: {list(dataset)}")
    return dataset[split]


def stream_defaults(source: str) -> dict[str, Any]:
    """`ImageStream` keyword arguments that a source needs beyond the generic ones (`{}` for most sources).

    `builtin:photos` is a handful of large photographs: train on random crops (twice the resolution, resized),
    repeating forever, with the decoded photographs cached instead of decoding a PNG for every crop.
    """
    if source == BUILTIN_PREFIX + "photos":
        return {"random_crop": True, "repeat": True, "decode_cache_size": len(PHOTOS_TRAIN)}
    return {}


def load_image_dataset(
    source: str, split: str = "train", dataset_config: str | None = None, streaming: bool = True
) -> IterableDataset | Dataset:
    """One split of an image dataset: a builtin (`builtin:<name>`), a local folder, or a Hub dataset id.

    A local folder holding `*.parquet` files (at any depth) is read with the parquet builder, any other folder with
    imagefolder (labels from subfolder names); in both, files or folders named after a split (`train-*.parquet`,
    `test/`) make that split, and everything else is `train`. Builtins are small and returned in memory whatever
    `streaming` says (`ImageStream` streams them). Raises `ValueError` naming the available splits.
    """
    if is_builtin(source):
        return load_builtin(source, split)
    if os.path.isdir(source):
        has_parquet = any(name.endswith(".parquet") for _, _, names in os.walk(source) for name in names)
        builder = "parquet" if has_parquet else "imagefolder"
        splits = load_dataset(builder, data_dir=source, streaming=streaming)
        if split not in splits:
            raise ValueError(f"{builder} folder {source!r} has no split {split!r}; available: {list(splits)}")
        return splits[split]
    try:
        return load_dataset(source, dataset_config, split=split, streaming=streaming)
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
        raise ValueError(f"dataset {source!r} has no split {split!r}: {error}") from error


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


def check_columns(features: Features | dict, **columns: str | None) -> None:
    """Raise a `ValueError` naming the argument and the dataset's columns unless every given column exists."""
    for role, column in columns.items():
        if column is not None and column not in features:
            raise ValueError(f"`{role}` {column!r} is not a column of the dataset; columns: {list(features)}")


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
            raise ValueError(f"`shuffle_buffer` must be >= 1, got {shuffle_buffer}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"`rank` must be in [0, world_size) and `world_size` >= 1, got {rank} and {world_size}")
        if seed < 0:
            raise ValueError(f"`seed` must be >= 0, got {seed}")
        if max_bad_records < 1:
            raise ValueError(f"`max_bad_records` must be >= 1, got {max_bad_records}")
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
            raise ValueError(f"unknown ImageStream state format {state.get('format')!r}; expected {_STATE_FORMAT}")
        saved = {key: state[key] for key in ("seed", "shuffle_buffer", "rank", "world_size")}
        current = {key: getattr(self, key) for key in saved}
        if saved != current:
            raise ValueError(
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
                raise ValueError(
                    f"the stream of rank {self.rank} of {self.world_size} has no records in epoch {self.epoch}: "
                    "the dataset is empty or has fewer records than processes"
                )
            if self._epoch_yielded == 0:
                raise ValueError(self._nothing_usable(f"any of the {self._epoch_read} records of epoch {self.epoch}"))
            if self._epoch_read > self._epoch_yielded:
                logger.info(
                    "epoch %d on rank %d/%d: %d images, %d records skipped (%s)",
                    self.epoch,
                    self.rank,
                    self.world_size,
                    self._epoch_yielded,
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
                        raise ValueError(self._nothing_usable(f"the first {self.records_read} records"))
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
        return ", ".join(f"{reason}: {count}" for reason, count in self.skip_counts.items())

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
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if num_channels not in (1, 3):
            raise ValueError(f"`num_channels` must be 1 (grayscale) or 3 (RGB), got {num_channels}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"`crop_size` must be >= 1, got {crop_size}")
        if crop_size is not None and not random_crop:
            raise ValueError("`crop_size` sets the size of the random crop; it needs `random_crop=True`")
        if decode_cache_size < 0:
            raise ValueError(f"`decode_cache_size` must be >= 0, got {decode_cache_size}")
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
        self._decoded: OrderedDict[Any, PILImage.Image] = OrderedDict()

    _noun = "image"

    @property
    def _column(self) -> str:
        return f"column {self.image_column!r}"

    def _prepare(self, dataset: IterableDataset) -> IterableDataset:
        """The dataset with decoding off (images as bytes/paths), after checking that the columns exist."""
        image_column = self.image_column
        features = dataset.features
        if features is None:  # unknown until iteration (some Hub streams): values are checked record by record
            return dataset
        dataset = dataset.decode(False)
        check_columns(features, image_column=image_column, label_column=self.label_column)
        feature = features[image_column]
        if isinstance(feature, Image):
            return dataset
        # Raw bytes, paths, or {bytes, path} structs (parquet written without datasets' metadata) are images too.
        is_raw = isinstance(feature, Value) and feature.dtype in ("binary", "large_binary", "string", "large_string")
        if not (is_raw or (isinstance(feature, dict) and set(feature) == {"bytes", "path"})):
            raise ValueError(f"column {image_column!r} holds {feature}, which is not an image (bytes, paths or Image)")
        return dataset.cast_column(image_column, Image(decode=False))

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
            image = self._decode(value)
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
            return self._skip("undecodable", record, position, f"{type(error).__name__}: {error}")
        if min(image.size) < self.min_size:
            size = f"{image.width}x{image.height} px, smaller than min_size={self.min_size}"
            return self._skip("tiny", record, position, size)
        flip = False
        if self.random_crop or self.random_flip:
            rng = self._record_rng(position)
            if self.random_crop:
                side = min(self.crop_size, image.width, image.height)
                left = int(rng.integers(0, image.width - side + 1))
                top = int(rng.integers(0, image.height - side + 1))
                image = image.crop((left, top, left + side, top + side))
            flip = self.random_flip and bool(rng.random() < 0.5)
        sample = {"pixel_values": preprocess_image(image, self.resolution, self.num_channels, flip)}
        if label is not None:
            sample["labels"] = int(label)
        return sample

    def _decode(self, value: Any) -> PILImage.Image:
        """An image value (dict of bytes/path, bytes, path, PIL image) -> PIL image in mode L or RGB."""
        if isinstance(value, PILImage.Image):
            return convert_image_mode(value, self.num_channels)
        if isinstance(value, (bytes, bytearray)):
            value = {"bytes": bytes(value), "path": None}
        elif isinstance(value, str):
            value = {"bytes": None, "path": value}
        elif not isinstance(value, dict):
            raise TypeError(f"expected image bytes, a path or a PIL image, got {type(value).__name__}")
        if not self.decode_cache_size:
            return convert_image_mode(_IMAGE_DECODER.decode_example(value), self.num_channels)
        key = value["path"] if value["bytes"] is None else hashlib.sha256(value["bytes"]).digest()
        if key in self._decoded:
            self._decoded.move_to_end(key)
            return self._decoded[key]
        image = convert_image_mode(_IMAGE_DECODER.decode_example(value), self.num_channels)
        self._decoded[key] = image
        if len(self._decoded) > self.decode_cache_size:
            self._decoded.popitem(last=False)
        return image


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
            raise ValueError(f"`label_column` {label_column!r} needs `num_classes` >= 1, got {num_classes}")
        if not 0.0 <= class_dropout_prob <= 1.0:
            raise ValueError(f"`class_dropout_prob` must be in [0, 1], got {class_dropout_prob}")
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
            raise ValueError(
                f"{self._where(record, position)}: expected {self.num_tokens} codes in [0, {self.num_codes}) in "
                f"column {self.indices_column!r}, found {found}: were these codes made by another VQ model?"
            )
        label = -1
        if self.label_column is not None:
            value = record.get(self.label_column)
            if value is None:
                return self._skip("missing", record, position, f"no value in label column {self.label_column!r}")
            if not 0 <= int(value) < self.num_classes:
                raise ValueError(
                    f"{self._where(record, position)}: label {value} is outside [0, {self.num_classes}) (num_classes)"
                )
            if self.class_dropout_prob == 0 or self._record_rng(position).random() >= self.class_dropout_prob:
                label = int(value)
        return {"indices": codes, "class_labels": label}


def load_code_dataset(source: str, split: str = "train") -> Dataset | IterableDataset:
    """One split of a code dataset: a folder written by `Dataset(Dict).save_to_disk` (as `scripts/encode_dataset.py`
    writes; a single saved `Dataset` is every split), a local parquet folder, or a Hub dataset id (streamed)."""
    saved = any(os.path.isfile(os.path.join(source, name)) for name in ("dataset_dict.json", "state.json"))
    if saved:
        data = load_from_disk(source)
        if isinstance(data, DatasetDict):
            if split not in data:
                raise ValueError(f"code dataset {source!r} has no split {split!r}; available: {list(data)}")
            return data[split]
        return data
    return load_image_dataset(source, split)


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


def _photo_split(split: str) -> tuple[str, ...]:
    if split not in PHOTOS_SPLITS:
        raise ValueError(f"builtin:photos has no split {split!r}; available: {list(PHOTOS_SPLITS)}")
    return PHOTOS_SPLITS[split]


def photo_eval_crops(
    resolution: int, crops_per_photo: int, crop_size: int | None = None, split: str = "test"
) -> torch.Tensor:
    """Fixed crops of the `builtin:photos` photographs of a split -> (N, 3, resolution, resolution) in [-1, 1].

    `crops_per_photo` squares of `crop_size` (default twice `resolution`, as in training) at seeded random
    positions in each photograph of `split` (`"test"`: the held-out ones; `"train"`: fixed crops of the training
    distribution), resized to `resolution`; N = crops_per_photo * photographs, photograph by photograph. The same
    arguments always give the same tensor.
    """
    if resolution < 1 or crops_per_photo < 1:
        raise ValueError(f"`resolution` and `crops_per_photo` must be >= 1, got {resolution} and {crops_per_photo}")
    crop_size = 2 * resolution if crop_size is None else crop_size
    crops = []
    for index, name in enumerate(_photo_split(split)):
        photo = PILImage.fromarray(_photo_array(name))
        side = min(crop_size, photo.width, photo.height)
        rng = np.random.default_rng([SPLIT_SEED, index])
        for _ in range(crops_per_photo):
            left = int(rng.integers(0, photo.width - side + 1))
            top = int(rng.integers(0, photo.height - side + 1))
            crops.append(preprocess_image(photo.crop((left, top, left + side, top + side)), resolution, 3))
    return torch.stack(crops)  # (N, 3, R, R)


def load_eval_images(
    source: str,
    split: str,
    resolution: int,
    num_channels: int = 3,
    limit: int = 1000,
    image_column: str = "image",
    dataset_config: str | None = None,
) -> torch.Tensor:
    """Up to `limit` held-out images of a source, (N, C, R, R) in [-1, 1], always the same ones: the first records
    of the split in order (no shuffling), or for `builtin:photos` fixed crops of the split's photographs."""
    if source == f"{BUILTIN_PREFIX}photos":
        crops_per_photo = -(-limit // len(_photo_split(split)))
        crops = photo_eval_crops(resolution, crops_per_photo, split=split)[:limit]
        if num_channels == 1:  # PIL's L conversion (ITU-R 601 luma), linear so it holds in [-1, 1] units too
            crops = (crops * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return crops
    return load_eval_examples(source, split, resolution, num_channels, limit, image_column, None, dataset_config)[0]


def load_eval_examples(
    source: str,
    split: str,
    resolution: int,
    num_channels: int = 3,
    limit: int = 1000,
    image_column: str = "image",
    label_column: str | None = None,
    dataset_config: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`load_eval_images` with the labels: images (N, C, R, R) in [-1, 1] and, with `label_column`, labels (N,)."""
    dataset = load_image_dataset(source, split, dataset_config)
    stream = ImageStream(
        dataset,
        resolution,
        num_channels=num_channels,
        image_column=image_column,
        label_column=label_column,
        shuffle_buffer=1,
    )
    examples = list(islice(stream, limit))
    if not examples:
        raise ValueError(f"split {split!r} of {source!r} has no usable images in column {image_column!r}")
    images = torch.stack([example["pixel_values"] for example in examples])
    labels = torch.tensor([example["labels"] for example in examples]) if label_column is not None else None
    return images, labels


def images_to_tensor(
    images: list[PILImage.Image], resolution: int, num_channels: int = 3, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """PIL images -> (B, num_channels, resolution, resolution) float32 in [-1, 1]; `flip` is a (B,) bool mask."""
    flips = [False] * len(images) if flip is None else flip.tolist()
    if len(flips) != len(images):
        raise ValueError(f"`flip` has {len(flips)} entries for {len(images)} images")
    pairs = zip(images, flips, strict=True)
    return torch.stack([preprocess_image(image, resolution, num_channels, f) for image, f in pairs])
