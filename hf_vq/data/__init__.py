"""Data from any `datasets` source as torch streams, and the builtin datasets that need no network.

One module per job, each importing only those above it in this list:

- `melodies`: the folk-melody corpus (`builtin:folk-melodies`) and the windows of bars cut from melody tunes.
- `builtin`: the builtin datasets (`builtin:digits`, `builtin:photos`, `builtin:folk-melodies`), a registry.
- `sources`: a source argument (builtin, local folder, saved dataset, Hub id) -> one `datasets` split.
- `images`: one image record -> pixels (decoding, conversion to L or RGB, resizing, random crop and flip).
- `stream`: the sharded, shuffled, resumable streams (`ImageStream`, `CodeStream`, `SequenceStream`) and their
  DataLoader.
- `evaluation`: held-out evaluation images, always the same ones.

The public names below are importable from `hf_vq.data` itself.
"""

from .builtin import BUILTIN_DATASETS, PHOTOS_TEST, PHOTOS_TRAIN, is_builtin, load_builtin, stream_defaults
from .evaluation import load_eval_examples, load_eval_images, photo_eval_crops
from .melodies import (
    build_folk_melodies,
    cut_melody_windows,
    folk_melodies_cache_path,
    folk_melodies_report,
    load_folk_melodies,
    melody_windows,
)
from .sources import check_columns, load_code_dataset, load_image_dataset
from .stream import CodeStream, ImageStream, RecordStream, SequenceStream, image_dataloader

__all__ = [
    "BUILTIN_DATASETS",
    "PHOTOS_TEST",
    "PHOTOS_TRAIN",
    "CodeStream",
    "ImageStream",
    "RecordStream",
    "SequenceStream",
    "build_folk_melodies",
    "check_columns",
    "cut_melody_windows",
    "folk_melodies_cache_path",
    "folk_melodies_report",
    "image_dataloader",
    "is_builtin",
    "load_builtin",
    "load_code_dataset",
    "load_eval_examples",
    "load_eval_images",
    "load_folk_melodies",
    "load_image_dataset",
    "melody_windows",
    "photo_eval_crops",
    "stream_defaults",
]
