"""The README's `make demo`: train a VQ-GAN and a VAE on builtin digits with the shared training loop, offline.

Writes to --output_dir: vqgan/ and vae/ (each a full training run: model/, checkpoints, samples/, metrics.json),
reconstructions.png (held-out digits over their VQ-GAN reconstructions through the code indices), samples.png
(decoded draws from the VAE's prior) and metrics.json, then prints the held-out PSNR and codebook usage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModel

import hf_vq
from hf_vq.data import load_eval_images
from hf_vq.image_utils import make_grid
from hf_vq.metrics import reconstruction_metrics
from hf_vq.training import main as train

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "training" / "configs"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--vqgan_steps", type=int, default=None, help="override the recipe's max_train_steps")
    parser.add_argument("--vae_steps", type=int, default=None, help="override the recipe's max_train_steps")
    return parser.parse_args()


def run(family: str, recipe: str, output_dir: Path, steps: int | None) -> Path:
    argv = ["--config", str(RECIPES / recipe), "--output_dir", str(output_dir)]
    if steps is not None:
        argv += [
            "--max_train_steps",
            str(steps),
            "--checkpointing_steps",
            str(steps),
            "--validation_steps",
            str(steps),
        ]
    train(family, argv)
    return output_dir / "model"


def main() -> None:
    args = parse_args()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    vqgan = AutoModel.from_pretrained(run("vqgan", "vqgan_digits.yaml", output_dir / "vqgan", args.vqgan_steps))
    vae = AutoModel.from_pretrained(run("vae", "vae_digits.yaml", output_dir / "vae", args.vae_steps))
    assert isinstance(vqgan, hf_vq.VQGANModel) and isinstance(vae, hf_vq.VAEModel)

    digits = load_eval_images("builtin:digits", "test", resolution=16, num_channels=1, limit=10_000)
    metrics = {"vqgan": reconstruction_metrics(vqgan, digits), "vae": reconstruction_metrics(vae, digits)}
    with torch.no_grad():
        shown = digits[:32]
        reconstructed = vqgan.eval().decode_indices(vqgan.encode_indices(shown))
        make_grid(torch.cat([shown, reconstructed]), nrow=16, scale=4).save(output_dir / "reconstructions.png")
        samples = vae.eval().sample(64, generator=torch.Generator().manual_seed(0))
        make_grid(samples, nrow=8, scale=4).save(output_dir / "samples.png")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    print(f"\nVQ-GAN (reloaded with AutoModel): {output_dir / 'vqgan' / 'model'}")
    print(f"VAE (reloaded with AutoModel):    {output_dir / 'vae' / 'model'}")
    print(f"reconstructions: {output_dir / 'reconstructions.png'}\nsamples:         {output_dir / 'samples.png'}")
    print(f"metrics:         {output_dir / 'metrics.json'}")
    vq, kl = metrics["vqgan"], metrics["vae"]
    print(
        f"held-out digits ({vq['num_images']}): VQ-GAN PSNR {vq['psnr']:.2f} dB, codebook usage "
        f"{vq['codebook_usage']:.0%} of {vqgan.config.num_vq_embeddings} codes; VAE PSNR {kl['psnr']:.2f} dB"
    )


if __name__ == "__main__":
    main()
