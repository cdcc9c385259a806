"""Evaluate an autoencoder on a held-out split: metrics.json and a reconstruction grid.

    python scripts/evaluate.py --model runs/vqgan-digits/model --dataset builtin:digits --output_dir evals/digits
    python scripts/evaluate.py --model org/vqgan-celeba --dataset org/celeba --split validation \\
        --lpips_weights lpips_vgg.safetensors --inception_weights pt_inception-2015-12-05-6726825d.pth \\
        --output_dir evals/celeba --update_run runs/vqgan-celeba

Every family: PSNR, SSIM (and LPIPS with --lpips_weights) over the whole split, the active latent units. VQ models:
codebook usage and perplexity over the split, bits/dim with the uniform prior (and a learned one with --prior). VAEs:
the KL per latent channel and bits/dim through the importance-weighted bound (--num_samples). rFID with
--inception_weights (a local file: the weights cannot be downloaded here). `--update_run RUN` also merges the
metrics (as `eval_<name>`) into RUN/metrics.json, which the run's model card (`scripts/push_to_hub.py`) reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForCausalLM

import hf_vq  # noqa: F401  (registers the model types)
from hf_vq.data import load_eval_examples, load_eval_images
from hf_vq.metrics import evaluation_report, rfid
from hf_vq.metrics.inception import load_inception
from hf_vq.modules.lpips import load_lpips
from hf_vq.utils.image_utils import make_grid

GRID_IMAGES = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder or Hub repo id (any hf_vq autoencoder)")
    parser.add_argument("--subfolder", default="", help="the model's folder in the repo (a pipeline: vq_model)")
    parser.add_argument("--dataset", default="builtin:digits", help="a Hub dataset id, a local folder or builtin:*")
    parser.add_argument("--dataset_config", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--resolution", type=int, default=None, help="default: the model's sample_size")
    parser.add_argument("--max_images", type=int, default=1000, help="the first N images of the split")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--lpips_weights", default=None, help="LPIPS weights (safetensors file, folder or repo)")
    parser.add_argument("--inception_weights", type=Path, default=None, help="FID Inception weights, a local file")
    parser.add_argument("--prior", default=None, help="a VQPriorForCausalLM (folder or repo) for bits/dim")
    parser.add_argument("--label_column", default=None, help="class labels, for a class-conditional --prior")
    parser.add_argument("--num_samples", type=int, default=64, help="importance samples of a VAE's bits/dim")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update_run", type=Path, default=None, help="a training run whose metrics.json to update")
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace) -> dict:
    model = AutoModel.from_pretrained(args.model, subfolder=args.subfolder).eval()
    if not hasattr(model, "decode"):
        raise ValueError(f"{args.model} is a {type(model).__name__}, not an autoencoder")
    resolution = args.resolution or model.config.sample_size
    channels = model.config.in_channels
    labels = None
    if args.label_column:
        images, labels = load_eval_examples(args.dataset, args.split, resolution, channels, args.max_images,
                                            args.image_column, args.label_column, args.dataset_config)  # fmt: skip
    else:
        images = load_eval_images(args.dataset, args.split, resolution, channels, args.max_images, args.image_column,
                                  args.dataset_config)  # fmt: skip
    lpips = load_lpips(args.lpips_weights) if args.lpips_weights else None
    prior = None
    if args.prior:
        if not hasattr(model, "encode_indices"):
            raise ValueError(f"--prior: a prior's bits/dim needs a VQ model; {args.model} is a {type(model).__name__}")
        prior = AutoModelForCausalLM.from_pretrained(args.prior).eval()
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    metrics = evaluation_report(
        model, images, prior=prior, class_labels=labels, lpips=lpips, batch_size=args.batch_size,
        num_samples=args.num_samples, generator=generator,
    )  # fmt: skip
    if args.inception_weights is not None:
        metrics["rfid"] = rfid(model, images, load_inception(args.inception_weights, model.device), args.batch_size)
    metrics.update({"dataset": args.dataset, "split": args.split, "resolution": resolution})

    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.output_dir / "metrics.json", metrics)
    shown = images[:GRID_IMAGES]
    with torch.no_grad():
        reconstructions = model(shown.to(model.device)).reconstruction.clamp(-1, 1).cpu()
    grid = make_grid(torch.cat([shown, reconstructions]), nrow=len(shown), scale=max(1, 64 // resolution))
    grid.save(args.output_dir / "reconstructions.png")
    if args.update_run is not None:
        update_run_metrics(args.update_run, metrics)
    return metrics


def write_json(path: Path, data: dict) -> None:
    """Write through a temporary file and a rename: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def update_run_metrics(run: Path, metrics: dict) -> None:
    """Merge the evaluation into a training run's metrics.json as `eval_<name>` (what its model card reads)."""
    path = run / "metrics.json"
    if not run.is_dir():
        raise ValueError(f"--update_run {run} is not a folder")
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing.update({f"eval_{name}": value for name, value in metrics.items()})
    write_json(path, existing)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        metrics = evaluate(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, value in metrics.items():
        if not isinstance(value, list):
            print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    print(f"wrote {args.output_dir / 'metrics.json'} and {args.output_dir / 'reconstructions.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
