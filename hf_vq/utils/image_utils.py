"""Conversions between PIL images and model tensors in [-1, 1], and image grids (no torchvision needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .errors import UsageError

_MODES = {1: "L", 3: "RGB"}
# Transparent pixels are composited over white, as a browser shows them (logos, icons and scans with an alpha
# channel are drawn for a light page); PIL's plain `convert("RGB")` would instead expose whatever color the
# transparent pixels happen to store, often black.
ALPHA_BACKGROUND = 255
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# 16- and 32-bit integer grayscale (16-bit PNGs, TIFFs): taken as 0..65535. PIL's own `convert("L")` clips them at
# 255 instead of scaling, which turns almost every pixel white.
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N"}


def convert_image_mode(image: Image.Image, num_channels: int = 3, background: int = ALPHA_BACKGROUND) -> Image.Image:
    """Any PIL image -> mode L (`num_channels=1`) or RGB (3), returned as is when it already has that mode.

    Transparency (RGBA, LA, PA, and palette or grayscale images with a transparent color) is composited over a
    uniform `background` gray level (white by default); 16/32-bit integer grayscale is scaled from 0..65535 to 0..255;
    CMYK, YCbCr, LAB, HSV and 1-bit images go through PIL's conversions. Raises `ValueError` for a mode PIL cannot
    convert.
    """
    if num_channels not in _MODES:
        raise UsageError(f"`num_channels` must be 1 (grayscale) or 3 (RGB), got {num_channels}")
    target = _MODES[num_channels]
    if image.mode == target and "transparency" not in image.info:
        return image
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (background, background, background, 255))
        image = Image.alpha_composite(flat, rgba).convert("RGB")
    elif image.mode in _HIGH_BIT_DEPTH_MODES:
        array = np.asarray(image, dtype=np.float64) / 257.0  # 65535 / 257 = 255
        image = Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8), mode="L")
    elif target == "L" and image.mode not in {"1", "L", "P", "RGB"}:
        image = image.convert("RGB")  # PIL has no direct LAB -> L (or HSV -> L) conversion
    return image if image.mode == target else image.convert(target)


def preprocess_image(image: Image.Image, resolution: int, num_channels: int = 3, flip: bool = False) -> torch.Tensor:
    """A PIL image -> (num_channels, resolution, resolution) float32 tensor in [-1, 1].

    The image is converted to L (1 channel) or RGB (3) with `convert_image_mode`, its shorter side resized to
    `resolution` (bilinear, with antialiasing when shrinking), center-cropped to a square and, with `flip`, mirrored
    left to right.
    """
    image = convert_image_mode(image, num_channels)
    width, height = image.size
    scale = resolution / min(width, height)
    new_size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.BILINEAR)
    left, top = (new_size[0] - resolution) // 2, (new_size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32).reshape(resolution, resolution, num_channels)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0  # (C, H, W)


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """(B, C, H, W) tensor in [-1, 1] with C in {1, 3} -> list of PIL images (values outside [-1, 1] are clipped)."""
    if images.ndim != 4 or images.shape[1] not in _MODES:
        raise UsageError(f"images must have shape (batch, 1 or 3, height, width), got {tuple(images.shape)}")
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, C)
    mode = _MODES[images.shape[1]]
    return [Image.fromarray(a[..., 0] if mode == "L" else a, mode=mode) for a in array]


def make_grid(
    images: torch.Tensor | Sequence[Image.Image], nrow: int = 8, padding: int = 2, scale: int = 1
) -> Image.Image:
    """Tile images into one PIL image, `nrow` images per row, row by row, on a black background.

    `scale` enlarges each image by pixel repetition first, so that tiny images (8-32 px) stay legible.
    """
    pil = to_pil_images(images) if isinstance(images, torch.Tensor) else list(images)
    if not pil:
        raise UsageError("make_grid needs at least one image")
    if nrow < 1 or scale < 1:
        raise UsageError(f"`nrow` and `scale` must be >= 1, got nrow={nrow}, scale={scale}")
    if scale > 1:
        pil = [image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST) for image in pil]
    width, height = pil[0].size
    columns = min(nrow, len(pil))
    rows = -(-len(pil) // columns)
    grid = Image.new(pil[0].mode, (columns * (width + padding) + padding, rows * (height + padding) + padding))
    for i, image in enumerate(pil):
        row, column = divmod(i, columns)
        grid.paste(image, (padding + column * (width + padding), padding + row * (height + padding)))
    return grid
