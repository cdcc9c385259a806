"""Image records for the data tests: encoded noise images and parquet folders of them."""

import io
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage


def encode(image: PILImage.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def noise(size: tuple[int, int], seed: int) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    return PILImage.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_parquet(directory: Path, records: dict[int, bytes | None], num_files: int) -> Path:
    """Parquet files of `{"image": Image, "id": int64}` records (None: a missing image), split into `num_files`."""
    directory.mkdir(parents=True, exist_ok=True)
    features = Features({"image": Image(), "id": Value("int64")})
    ids = sorted(records)
    for f, chunk in enumerate(np.array_split(ids, num_files)):
        images = [None if records[i] is None else {"bytes": records[i], "path": None} for i in chunk]
        data = Dataset.from_dict({"image": images, "id": [int(i) for i in chunk]}, features=features)
        data.to_parquet(str(directory / f"part-{f}.parquet"))
    return directory
