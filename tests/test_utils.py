import math

import numpy as np
import pytest
import torch
from PIL import Image

from hf_vq.losses import reconstruction_loss
from hf_vq.metrics import psnr
from hf_vq.utils.image_utils import make_grid, preprocess_image, to_pil_images


def test_psnr_of_a_known_mse():
    target = torch.zeros(2, 3, 4, 4)
    reconstruction = target.clone()
    reconstruction[0] += 0.1  # MSE 0.01 in [-1, 1] units -> 10 log10(4 / 0.01)
    reconstruction[1] -= 0.2  # MSE 0.04
    expected = torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)])
    torch.testing.assert_close(psnr(reconstruction, target), expected)


def test_psnr_equals_the_uint8_definition():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (1, 3, 8, 8)).astype(np.float64)
    b = np.clip(a + rng.integers(-20, 21, a.shape), 0, 255)
    expected = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    to_unit = lambda x: torch.tensor(x / 127.5 - 1, dtype=torch.float32)  # noqa: E731
    assert abs(psnr(to_unit(b), to_unit(a)).item() - expected) < 1e-3


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_reconstruction_losses_against_hand_values():
    target = torch.zeros(2, 1, 2, 2)
    reconstruction = torch.tensor([1.0, -1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]).view(2, 1, 2, 2)
    assert reconstruction_loss(reconstruction, target, "l2").item() == pytest.approx((1 + 1 + 4 + 9) / 8)
    assert reconstruction_loss(reconstruction, target, "l1").item() == pytest.approx((1 + 1 + 2 + 3) / 8)
    assert reconstruction_loss(reconstruction, target, "l2", "sum").item() == pytest.approx((6 + 9) / 2)
    with pytest.raises(ValueError, match="loss_type"):
        reconstruction_loss(reconstruction, target, "huber")


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
