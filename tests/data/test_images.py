"""One image record -> pixels: mode conversion, decoding with a cache, random crops and flips."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from hf_vq.data.images import ImageDecoder, augmented_pixels, random_square_crop, undecoded_image_column
from hf_vq.utils.image_utils import convert_image_mode, preprocess_image

from .conftest import encode, noise


def test_convert_image_mode_handles_transparency_depth_and_color_spaces():
    transparent = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    transparent.putpixel((1, 0), (0, 0, 0, 0))
    assert np.asarray(convert_image_mode(transparent, 3)).tolist() == [[[255, 0, 0], [255, 255, 255]]]
    half = Image.new("LA", (1, 1), (0, 128))
    assert np.asarray(convert_image_mode(half, 1)).tolist() == [[127]]  # black at 50% over white
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255, 10, 20, 30])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 1
    assert np.asarray(convert_image_mode(palette, 3)).tolist() == [[[0, 0, 255], [255, 255, 255]]]
    deep = Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16))
    assert deep.mode == "I;16" and np.asarray(convert_image_mode(deep, 1)).tolist() == [[0, 1, 128, 255]]
    for mode in ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "RGBA", "LA", "PA"):
        for channels, target in ((1, "L"), (3, "RGB")):
            assert convert_image_mode(Image.new(mode, (3, 2)), channels).mode == target, mode
    rgb = Image.new("RGB", (3, 2))
    assert convert_image_mode(rgb, 3) is rgb  # nothing to do: no copy
    with pytest.raises(ValueError, match="num_channels"):
        convert_image_mode(rgb, 4)


def test_the_decoder_takes_bytes_paths_and_pil_images_and_caches_the_least_recently_used(tmp_path):
    noise((10, 10), 1).save(tmp_path / "on_disk.png")
    first, second = encode(noise((10, 10), 0)), encode(noise((10, 10), 2))
    decode = ImageDecoder(num_channels=1, cache_size=1)
    image = decode(first)
    assert image.mode == "L" and image.size == (10, 10)
    assert decode({"bytes": first, "path": None}) is image  # the same bytes: from the cache
    assert decode(str(tmp_path / "on_disk.png")).mode == "L"  # evicts the first image
    assert decode(first) is not image and np.array_equal(np.asarray(decode(first)), np.asarray(image))
    assert ImageDecoder(3)(second) is not ImageDecoder(3)(second)  # no cache: decoded every time
    pil = noise((4, 4), 3)
    assert decode(pil).mode == "L" and ImageDecoder(3, cache_size=1)(pil) is pil  # PIL images: converted, not cached
    with pytest.raises(TypeError, match="bytes, a path or a PIL image"):
        decode(3)
    with pytest.raises(ValueError, match="cache_size"):
        ImageDecoder(3, cache_size=-1)


def test_random_square_crops_and_flips_follow_the_generator():
    image = noise((20, 12), 0)
    crop = random_square_crop(image, 8, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    left, top = int(rng.integers(0, 13)), int(rng.integers(0, 5))
    assert crop.size == (8, 8) and crop.tobytes() == image.crop((left, top, left + 8, top + 8)).tobytes()
    assert random_square_crop(image, 50, np.random.default_rng(0)).size == (12, 12)  # the shorter side at most
    pixels = augmented_pixels(image, 4, rng=np.random.default_rng(1), crop_size=8, random_flip=True)
    rng = np.random.default_rng(1)
    square = random_square_crop(image, 8, rng)
    expected = preprocess_image(square, 4, flip=bool(rng.random() < 0.5))
    assert pixels.shape == (3, 4, 4) and torch.equal(pixels, expected)
    assert torch.equal(augmented_pixels(image, 4, 1), preprocess_image(image, 4, 1))  # nothing random: no generator
    with pytest.raises(ValueError, match="rng"):
        augmented_pixels(image, 4, random_flip=True)


def test_image_columns_are_read_undecoded_and_other_columns_rejected():
    data = Dataset.from_dict({"image": [encode(noise((6, 6), 0))], "id": [0]}).to_iterable_dataset()
    record = next(iter(undecoded_image_column(data, "image")))
    assert set(record["image"]) == {"bytes", "path"} and record["image"]["bytes"].startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="column 'id' holds .* not an image"):
        undecoded_image_column(data, "id")
