"""Write a PNG strip interpolating between two images through a model's latent space.

    python scripts/interpolate.py --model runs/vae-digits/model --image_a three.png --image_b seven.png --steps 8
    python scripts/interpolate.py --model org/vqgan-celeba --dataset org/celeba --split test --index_a 0 \\
        --index_b 5 --method lerp --output strip.png

The endpoints are encoded (a VAE's posterior mean, a VQ model's latent before quantization), the path between them
is decoded at `--steps` points (a VQ model quantizes each), and the strip holds the two originals at its ends:
original A, the decoded path, original B. Spherical interpolation (the default) suits Gaussian latents.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModel

import hf_vq  # noqa: F401  (registers the model types)
from hf_vq.data import load_eval_images
from hf_vq.latents import INTERPOLATIONS, interpolate
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError
from hf_vq.utils.image_utils import make_grid, preprocess_image
from hf_vq.utils.paths import check_source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id (any hf_vq autoencoder)")
    parser.add_argument("--subfolder", default="", help="the model's folder in the repo (a pipeline: vq_model)")
    parser.add_argument("--image_a", type=Path, help="an image file (or use --dataset with --index_a)")
    parser.add_argument("--image_b", type=Path, help="an image file (or use --dataset with --index_b)")
    parser.add_argument("--dataset", default=None, help="take the two images from a dataset split instead")
    parser.add_argument("--split", default="test")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--index_a", type=int, default=0)
    parser.add_argument("--index_b", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8, help="points on the path, endpoints included (>= 2)")
    parser.add_argument("--method", choices=sorted(INTERPOLATIONS), default="slerp")
    parser.add_argument("--output", type=Path, default=Path("interpolation.png"))
    return parser.parse_args(argv)


def endpoints(args: argparse.Namespace, resolution: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    if args.dataset is not None:
        if min(args.index_a, args.index_b) < 0:
            raise UsageError("--index_a and --index_b must be >= 0")
        images = load_eval_images(check_source(args.dataset, "--dataset"), args.split, resolution, channels,
                                  max(args.index_a, args.index_b) + 1, args.image_column)  # fmt: skip
        if len(images) <= max(args.index_a, args.index_b):
            raise UsageError(
                f"--index_a and --index_b must be < {len(images)}: split {args.split!r} of {args.dataset} has only "
                f"{len(images)} usable images"
            )
        return images[args.index_a], images[args.index_b]
    if args.image_a is None or args.image_b is None:
        raise UsageError("give --image_a and --image_b, or --dataset with --index_a and --index_b")
    for flag, path in (("--image_a", args.image_a), ("--image_b", args.image_b)):
        if not path.is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    return tuple(preprocess_image(Image.open(path), resolution, channels) for path in (args.image_a, args.image_b))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = AutoModel.from_pretrained(check_source(args.model, "--model"), subfolder=args.subfolder).eval()
    if not hasattr(model, "decode"):
        raise UsageError(f"--model: {args.model} is a {type(model).__name__}, not an autoencoder")
    resolution = model.config.sample_size
    image_a, image_b = endpoints(args, resolution, model.config.in_channels)
    path = interpolate(model, image_a, image_b, steps=args.steps, method=args.method).cpu()
    strip = torch.cat([image_a[None], path, image_b[None]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    make_grid(strip, nrow=len(strip), scale=max(1, 64 // resolution)).save(args.output)
    print(f"wrote {args.output}: original A, {args.steps} decoded points ({args.method}), original B")
    return 0


if __name__ == "__main__":
    run_script(main)
