"""Complete images from part of their codes with a pipeline's prior, and write a grid PNG.

    python scripts/complete.py --pipeline runs/prior-digits/pipeline --dataset builtin:digits --split test \\
        --label_column label --num_images 8 --mask top --output completions.png

Each image is encoded to its code grid; the codes where the mask is True are kept and the prior samples the others;
the grid's rows are the originals, the masked inputs (the unknown part grayed out) and `--num_completions` rows of
completions. Masks, in code-grid coordinates: `top` (the first half of the rows), `first:N` (the first N codes in
raster order), `left`, `right`, `bottom`, `center` (the central half is unknown), `random` (each code known with
probability `--known_fraction`). The GPT prior completes only raster prefixes (`top`, `first:N`); the PixelCNN any
mask, but it draws the unknown codes in raster order, each seeing only the codes above it and to its left: known
codes below or to the right of an unknown one do not inform it (with `--mask bottom`, the unknown top half is drawn
without seeing the known bottom half).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import hf_vq
from hf_vq.data import load_eval_examples, load_eval_images
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError
from hf_vq.utils.image_utils import make_grid
from hf_vq.utils.paths import check_source

MASKS = ("top", "bottom", "left", "right", "center", "random", "first:N")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="a saved VQImageGenerationPipeline (folder or Hub repo)")
    parser.add_argument("--dataset", required=True, help="the images to complete: a builtin, a folder or a Hub id")
    parser.add_argument("--split", default="test")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--label_column", default=None, help="class labels (class-conditional priors)")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--num_completions", type=int, default=2, help="completions of each image (rows)")
    parser.add_argument("--mask", default="top", help=f"one of {', '.join(MASKS)}")
    parser.add_argument("--known_fraction", type=float, default=0.5, help="for --mask random")
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--guidance_scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("completions.png"))
    return parser.parse_args(argv)


def code_mask(name: str, height: int, width: int, known_fraction: float = 0.5, seed: int = 0) -> torch.Tensor:
    """The (h, w) mask named by `--mask`: True where a code is known."""
    rows, columns = torch.arange(height)[:, None], torch.arange(width)[None, :]
    if name.startswith("first:"):
        count = name.removeprefix("first:")
        if not count.isdigit() or int(count) > height * width:
            raise UsageError(f"--mask first:N needs 0 <= N <= {height * width} (the codes of a grid), got {name!r}")
        return (rows * width + columns) < int(count)
    if name == "random":
        if not 0 <= known_fraction <= 1:
            raise UsageError(f"--known_fraction must be in [0, 1], got {known_fraction}")
        return torch.rand(height, width, generator=torch.Generator().manual_seed(seed)) < known_fraction
    masks = {
        "top": (rows < height // 2).expand(height, width),
        "bottom": (rows >= height // 2).expand(height, width),
        "left": (columns < width // 2).expand(height, width),
        "right": (columns >= width // 2).expand(height, width),
        "center": ~(
            (rows >= height // 4)
            & (rows < height - height // 4)
            & (columns >= width // 4)
            & (columns < width - width // 4)
        ),
    }
    if name not in masks:
        raise UsageError(f"--mask must be one of {', '.join(MASKS)}, got {name!r}")
    return masks[name]


def gray_out(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images with the pixels of unknown codes (mask (h, w) False) set to mid-gray."""
    height, width = images.shape[-2:]
    pixels = torch.nn.functional.interpolate(mask[None, None].float(), size=(height, width), mode="nearest")
    return torch.where(pixels.bool(), images, torch.zeros_like(images))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.num_images < 1 or args.num_completions < 1:
        raise UsageError("--num_images and --num_completions must be >= 1")
    pipe = hf_vq.VQImageGenerationPipeline.from_pretrained(check_source(args.pipeline, "--pipeline"))
    config, vq_config = pipe.prior.config, pipe.vq_model.config
    if config.is_class_conditional and not args.label_column:
        raise UsageError(f"--pipeline {args.pipeline} has a class-conditional prior: pass --label_column")
    resolution, channels = vq_config.sample_size, vq_config.in_channels
    dataset = check_source(args.dataset, "--dataset")
    labels = None
    if args.label_column:
        images, labels = load_eval_examples(dataset, args.split, resolution, channels, args.num_images,
                                            args.image_column, args.label_column)  # fmt: skip
    else:
        images = load_eval_images(dataset, args.split, resolution, channels, args.num_images, args.image_column)
    mask = code_mask(args.mask, *config.token_grid_size, known_fraction=args.known_fraction, seed=args.seed)
    rows = [images, gray_out(images, mask)]
    for completion in range(args.num_completions):
        rows.append(
            pipe.complete(images, mask, class_labels=labels, top_k=args.top_k, top_p=args.top_p,
                          temperature=args.temperature, guidance_scale=args.guidance_scale,
                          seed=args.seed + completion, output_type="pt").cpu()
        )  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    make_grid(torch.cat(rows), nrow=len(images), scale=max(1, 64 // resolution)).save(args.output)
    print(f"wrote {args.output}: originals, masked inputs ({args.mask}), {args.num_completions} rows of completions")
    return 0


if __name__ == "__main__":
    run_script(main)
