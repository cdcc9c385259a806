"""Image conversion and grids: PIL <-> tensors, resizing, modes, layout."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq.utils.image_utils import make_grid, preprocess_image, to_pil_images


def test_preprocess_resizes_the_short_side_and_center_crops():
    array = np.zeros((20, 40, 3), dtype=np.uint8)  # H 20, W 40
    array[:, 10:30] = 255  # the central square is white
    tensor = preprocess_image(Image.fromarray(array), resolution=10)
    assert tensor.shape == (3, 10, 10)
    # only the white center survives the crop; the outermost columns are blended by the antialiased resize
    assert tensor[:, :, 1:-1].min() > 0.99 and tensor.min() > 0.5


def test_rgba_and_palette_images_are_converted():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 128))
    palette = Image.new("P", (8, 8))
    assert preprocess_image(rgba, 8).shape == (3, 8, 8)
    assert preprocess_image(palette, 8, num_channels=1).shape == (1, 8, 8)
    with pytest.raises(ValueError, match="num_channels"):
        preprocess_image(rgba, 8, num_channels=4)


def test_tensor_pil_round_trip_is_exact_on_the_uint8_grid():
    pixels = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    images = pixels.float() / 127.5 - 1
    pil = to_pil_images(images)
    assert [im.mode for im in pil] == ["RGB", "RGB"]
    back = torch.stack([preprocess_image(im, 5) for im in pil])
    torch.testing.assert_close(back, images, rtol=0, atol=1e-6)


def test_make_grid_layout():
    images = torch.ones(5, 1, 4, 4)
    grid = make_grid(images, nrow=3, padding=1)
    assert grid.size == (3 * 5 + 1, 2 * 5 + 1) and grid.mode == "L"
    pixels = np.asarray(grid)
    assert pixels[1:5, 1:5].min() == 255 and pixels[0].max() == 0  # images, then padding
    assert pixels[6:10, 11:15].max() == 0  # the sixth slot stays empty
    assert make_grid(images, nrow=5, padding=0, scale=3).size == (60, 12)
