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
Each pass over the split shows a progress bar when stderr is a terminal (none with --quiet). A mistake in the
arguments is one line `error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import datasets
import torch
from transformers import AutoModel
from transformers.utils.logging import disable_progress_bar

import hf_vq  # noqa: F401  (registers the model types)
from hf_vq.data import load_eval_examples, load_eval_images
from hf_vq.metrics import evaluation_report, rfid
from hf_vq.metrics.inception import load_inception
from hf_vq.models import CodePriorMixin
from hf_vq.modules.lpips import load_lpips
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError
from hf_vq.utils.image_utils import make_grid
from hf_vq.utils.paths import check_source

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
    parser.add_argument(
        "--prior", default=None, help="a prior over codes (GPT or PixelCNN; folder or repo) for bits/dim"
    )
    parser.add_argument("--label_column", default=None, help="class labels, for a class-conditional --prior")
    parser.add_argument("--num_samples", type=int, default=64, help="importance samples of a VAE's bits/dim")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update_run", type=Path, default=None, help="a training run whose metrics.json to update")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> None:
    """Paths that do not exist fail here, before any model is loaded or the Hub is asked (`check_source`); model
    paths are given back with `~` expanded, which transformers would not do."""
    for flag in ("model", "prior", "lpips_weights"):
        if getattr(args, flag) is not None:
            setattr(args, flag, check_source(getattr(args, flag), f"--{flag}"))
    check_source(args.dataset, "--dataset")
    if args.update_run is not None and not args.update_run.is_dir():
        raise UsageError(f"--update_run {args.update_run} is not a folder")


def load_prior(args: argparse.Namespace, model: torch.nn.Module, resolution: int) -> torch.nn.Module:
    """The --prior, checked against the VQ model (codebook size, code grid at `resolution`) and --label_column."""
    if not hasattr(model, "encode_indices"):
        raise UsageError(f"--prior: a prior's bits/dim needs a VQ model; {args.model} is a {type(model).__name__}")
    prior = AutoModel.from_pretrained(args.prior).eval()  # either prior: the GPT one or the PixelCNN
    if not isinstance(prior, CodePriorMixin):
        raise UsageError(
            f"--prior {args.prior} is a {type(prior).__name__}, not a prior over codes (VQPriorForCausalLM or "
            "PixelCNNPriorModel)"
        )
    prior.check_vq_model(model, resolution)
    if prior.config.is_class_conditional and not args.label_column:
        raise UsageError(
            f"--prior {args.prior} is class-conditional ({prior.config.num_classes} classes): pass --label_column, "
            "the dataset column of the images' class labels"
        )
    if not prior.config.is_class_conditional and args.label_column:
        raise UsageError(f"--prior {args.prior} is unconditional (num_classes = 0): it takes no --label_column")
    return prior


def evaluate(args: argparse.Namespace) -> dict:
    check_arguments(args)
    model = AutoModel.from_pretrained(args.model, subfolder=args.subfolder).eval()
    if not hasattr(model, "decode"):
        raise UsageError(f"--model {args.model} is a {type(model).__name__}, not an autoencoder")
    resolution = args.resolution or model.config.sample_size
    channels = model.config.in_channels
    prior = load_prior(args, model, resolution) if args.prior else None
    labels = None
    if args.label_column:
        images, labels = load_eval_examples(args.dataset, args.split, resolution, channels, args.max_images,
                                            args.image_column, args.label_column, args.dataset_config)  # fmt: skip
    else:
        images = load_eval_images(args.dataset, args.split, resolution, channels, args.max_images, args.image_column,
                                  args.dataset_config)  # fmt: skip
    lpips = load_lpips(args.lpips_weights) if args.lpips_weights else None
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    metrics = evaluation_report(
        model, images, prior=prior, class_labels=labels, lpips=lpips, batch_size=args.batch_size,
        num_samples=args.num_samples, generator=generator, progress=not args.quiet,
    )  # fmt: skip
    if args.inception_weights is not None:
        inception = load_inception(args.inception_weights, model.device)
        metrics["rfid"] = rfid(model, images, inception, args.batch_size, progress=not args.quiet)
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
        raise UsageError(f"--update_run {run} is not a folder")
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing.update({f"eval_{name}": value for name, value in metrics.items()})
    write_json(path, existing)


def main(argv: list[str] | None = None) -> int:
    """Evaluate and print the metrics; a `UsageError` for a mistake in the arguments (`run_script`: status 2)."""
    args = parse_args(argv)
    if args.quiet:  # the libraries' bars too: transformers', huggingface_hub's, datasets'
        disable_progress_bar()
        datasets.disable_progress_bars()
    metrics = evaluate(args)
    for name, value in metrics.items():
        if not isinstance(value, list):
            print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    print(f"wrote {args.output_dir / 'metrics.json'} and {args.output_dir / 'reconstructions.png'}")
    return 0


if __name__ == "__main__":
    run_script(main)
