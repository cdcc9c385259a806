"""The README's `make demo`: a class-conditional digit generator from scratch, offline, on the shared training loop.

1. train a VQ-GAN on builtin digits (training/configs/vqgan_digits.yaml),
2. tokenize the dataset with it (hf_vq.training.encode_dataset),
3. train a class-conditional GPT-2 prior over the codes (training/configs/prior_digits.yaml),
4. write to --output_dir: reconstructions.png (held-out digits over their reconstructions through the codes),
   samples.png (one row per digit 0-9, sampled with the pipeline), metrics.json (held-out PSNR, codebook usage,
   bits/dim with the uniform and the learned prior, and the class accuracy of the samples as scored by a logistic
   regression trained on the real training digits), interpolation.png (a held-out 3 turning into a held-out 7
   through the VQ-GAN's latent space, spherically, quantized at each step), pipeline/ (`save_pretrained`, with its
   rendered model card).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel

from hf_vq import VQImageGenerationPipeline
from hf_vq.data import load_eval_examples
from hf_vq.hub import render_pipeline_card
from hf_vq.latents import interpolate
from hf_vq.metrics import bits_per_dim, evaluation_report
from hf_vq.training import encode_dataset
from hf_vq.training import main as train
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError
from hf_vq.utils.image_utils import make_grid

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "training" / "configs"
RESOLUTION = 16  # of the digits recipes
SAMPLES_PER_DIGIT = 10  # in samples.png
SCORED_PER_DIGIT = 50  # samples per digit scored by the classifier
TOP_K, GUIDANCE_SCALE = 16, 1.5  # the sampling settings of samples.png and of the accuracy
INTERPOLATED, INTERPOLATION_STEPS = (3, 7), 10  # interpolation.png


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--vqgan_steps", type=int, default=None, help="override the recipe's max_train_steps")
    parser.add_argument("--prior_steps", type=int, default=None, help="override the recipe's max_train_steps")
    return parser.parse_args()


def run(family: str, recipe: str, output_dir: Path, steps: int | None, *extra: str) -> dict:
    # The demo's runs are made to be made again: a rerun replaces them.
    argv = ["--config", str(RECIPES / recipe), "--output_dir", str(output_dir), "--overwrite_output_dir", *extra]
    return train(family, argv + steps_arguments(steps))


def steps_arguments(steps: int | None) -> list[str]:
    """The flags that train `steps` steps and checkpoint and validate once, at the end (none: the recipe's)."""
    if steps is None:
        return []
    return [f"--{name}_steps={steps}" for name in ("max_train", "checkpointing", "validation")]


Digits = tuple[torch.Tensor, torch.Tensor]  # images (N, 1, 16, 16) in [-1, 1], labels (N,)


def digits(split: str) -> Digits:
    return load_eval_examples("builtin:digits", split, RESOLUTION, num_channels=1, limit=10_000, label_column="label")


def train_generator(args: argparse.Namespace, output_dir: Path) -> tuple[VQImageGenerationPipeline, dict]:
    """Steps 1-3: the VQ-GAN, the code dataset, the prior; returns the pipeline and the prior run's metrics."""
    run("vqgan", "vqgan_digits.yaml", output_dir / "vqgan", args.vqgan_steps)
    vq_path = output_dir / "vqgan" / "model"
    encode_dataset(
        AutoModel.from_pretrained(vq_path),
        "builtin:digits",
        output_dir / "codes",
        vq_model_name_or_path=vq_path,
        label_column="label",
    )
    prior_metrics = run("prior", "prior_digits.yaml", output_dir / "prior", args.prior_steps,
                        "--dataset", str(output_dir / "codes"))  # fmt: skip
    return VQImageGenerationPipeline.from_pretrained(output_dir / "prior" / "pipeline"), prior_metrics


def write_figures(pipe: VQImageGenerationPipeline, test_images: torch.Tensor, test_labels: torch.Tensor,
                  output_dir: Path) -> None:  # fmt: skip
    """reconstructions.png, samples.png and interpolation.png."""
    vqgan = pipe.vq_model
    with torch.no_grad():
        shown = test_images[:32]
        reconstructed = vqgan.decode_indices(vqgan.encode_indices(shown))
        make_grid(torch.cat([shown, reconstructed]), nrow=16, scale=4).save(output_dir / "reconstructions.png")
    samples = pipe(class_labels=list(range(10)), num_images=SAMPLES_PER_DIGIT, top_k=TOP_K,
                   guidance_scale=GUIDANCE_SCALE, seed=0, output_type="pt")  # fmt: skip
    make_grid(samples, nrow=SAMPLES_PER_DIGIT, scale=4).save(output_dir / "samples.png")
    # A held-out 3 turning into a held-out 7: the originals at the ends, the decoded slerp path between.
    three, seven = (test_images[test_labels == digit][0] for digit in INTERPOLATED)
    path = interpolate(vqgan, three, seven, steps=INTERPOLATION_STEPS, method="slerp")
    strip = torch.cat([three[None], path, seven[None]])
    make_grid(strip, nrow=INTERPOLATION_STEPS + 2, scale=4).save(output_dir / "interpolation.png")


def sample_accuracies(pipe: VQImageGenerationPipeline, train: Digits, test: Digits) -> dict[str, float]:
    """Sample quality: a classifier of real digits (trained on the training split) reads the generated ones, with
    the demo's sampling settings and with the prior's own distribution (no top-k, no guidance)."""
    (train_images, train_labels), (test_images, test_labels) = train, test
    classifier = LogisticRegression(max_iter=2000).fit(train_images.flatten(1).numpy(), train_labels.numpy())
    wanted = np.repeat(np.arange(10), SCORED_PER_DIGIT)

    def accuracy(**sampling) -> float:
        scored = pipe(class_labels=list(range(10)), num_images=SCORED_PER_DIGIT, seed=1, output_type="pt", **sampling)
        return float((classifier.predict(scored.flatten(1).numpy()) == wanted).mean())

    return {
        "sample_class_accuracy": accuracy(top_k=TOP_K, guidance_scale=GUIDANCE_SCALE),
        "sample_class_accuracy_without_top_k_or_guidance": accuracy(),
        "classifier_accuracy_on_real_test_digits": classifier.score(
            test_images.flatten(1).numpy(), test_labels.numpy()
        ),
        "num_scored_samples": len(wanted),
    }


def save_pipeline(pipe: VQImageGenerationPipeline, metrics: dict, output_dir: Path, num_test_images: int) -> Path:
    """pipeline/: `save_pretrained` with its rendered model card and the sample grid."""
    pipeline_dir = output_dir / "pipeline"
    card = render_pipeline_card(
        pipe.vq_model.config,
        pipe.prior.config,
        repo_id="hf-vq/vqgan-digits-prior",
        dataset="builtin:digits",
        metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
        training_args=json.loads((output_dir / "prior" / "training_args.json").read_text()),
        samples_image="samples.png",
        top_k=TOP_K,
        guidance_scale=GUIDANCE_SCALE,
        eval_description=f"the {num_test_images} held-out digits of builtin:digits",
    )
    pipe.save_pretrained(pipeline_dir, model_card=str(card))
    (pipeline_dir / "samples.png").write_bytes((output_dir / "samples.png").read_bytes())
    return pipeline_dir


def main() -> None:
    args = parse_args()
    for flag, steps in (("--vqgan_steps", args.vqgan_steps), ("--prior_steps", args.prior_steps)):
        if steps is not None and steps < 1:  # checked before anything is written or trained
            raise UsageError(f"{flag} must be >= 1, got {steps}")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("codes", "pipeline"):  # a rerun starts these steps afresh (the runs: --overwrite_output_dir)
        if (output_dir / stale).exists():
            shutil.rmtree(output_dir / stale)

    pipe, prior_metrics = train_generator(args, output_dir)
    train, (test_images, test_labels) = digits("train"), digits("test")
    write_figures(pipe, test_images, test_labels, output_dir)
    # The decoder's Gaussian scale is fitted on the training digits, then held fixed for the held-out bound.
    scale = bits_per_dim(pipe.vq_model, train[0])["decoder_scale"]
    report = evaluation_report(pipe.vq_model, test_images, prior=pipe.prior, class_labels=test_labels,
                               decoder_scale=scale)  # fmt: skip
    names = ("psnr", "ssim", "codebook_usage", "codebook_perplexity", "bits_per_dim", "bits_per_dim_uniform_prior")
    metrics = {name: report[name] for name in names}
    metrics["prior_nll_per_code"] = prior_metrics["eval_nll_per_code"]
    metrics.update(sample_accuracies(pipe, train, (test_images, test_labels)))
    metrics["num_test_images"] = len(test_images)
    metrics["sampling"] = {"top_k": TOP_K, "guidance_scale": GUIDANCE_SCALE}
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    pipeline_dir = save_pipeline(pipe, metrics, output_dir, len(test_images))

    print(f"\nVQ-GAN:          {output_dir / 'vqgan' / 'model'}\ncodes:           {output_dir / 'codes'}")
    print(f"prior:           {output_dir / 'prior' / 'model'}\npipeline:        {pipeline_dir} (README.md: card)")
    print(f"reconstructions: {output_dir / 'reconstructions.png'}\nsamples:         {output_dir / 'samples.png'}")
    print(f"interpolation:   {output_dir / 'interpolation.png'}\nmetrics:         {output_dir / 'metrics.json'}")
    print(
        f"held-out digits ({len(test_images)}): PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}, "
        f"codebook usage {metrics['codebook_usage']:.0%} of {pipe.vq_model.config.num_vq_embeddings} codes, "
        f"bits/dim {metrics['bits_per_dim']:.3f} (uniform prior: {metrics['bits_per_dim_uniform_prior']:.3f}); "
        f"class accuracy of {metrics['num_scored_samples']} samples: {metrics['sample_class_accuracy']:.1%} "
        f"(without top-k or guidance: {metrics['sample_class_accuracy_without_top_k_or_guidance']:.1%}; "
        f"the classifier on real test digits: {metrics['classifier_accuracy_on_real_test_digits']:.1%})"
    )


if __name__ == "__main__":
    run_script(main)
