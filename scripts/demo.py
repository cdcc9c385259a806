"""The README's `make demo`: train a small VAE on builtin digits, save it, reload it by `AutoModel`, report PSNR.

Runs offline on 2 CPU cores in a few minutes. Writes to --output_dir: reconstructions.png (held-out digits over their
reconstructions), samples.png (decoded draws from the prior), model/ (save_pretrained) and metrics.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModel

import hf_vq
from hf_vq.data import images_to_tensor, load_builtin
from hf_vq.image_utils import make_grid
from hf_vq.losses import reconstruction_loss
from hf_vq.metrics import psnr

# A ~1M-parameter VAE: 16x16 digits -> 4x4x4 latents (f = 4). Against a summed squared error, beta = 2 * sigma**2
# for a Gaussian decoder of fixed scale sigma: 0.25 is sigma ~ 0.35 in [-1, 1] units, which trades ~1.5 dB of PSNR
# (against beta 0.1) for prior samples that look like digits.
DEMO_CONFIG = dict(
    in_channels=1,
    out_channels=1,
    block_out_channels=[32, 64, 64],
    layers_per_block=1,
    norm_num_groups=16,
    latent_channels=4,
    sample_size=16,
    beta=0.25,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--max_train_steps", type=int, default=600)
    parser.add_argument("--train_batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


@torch.no_grad()
def evaluate_psnr(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> float:
    """Mean PSNR (dB) of the posterior-mean reconstructions of `images`."""
    model.eval()
    scores = [psnr(model(batch).reconstruction, batch) for batch in images.split(batch_size)]
    return torch.cat(scores).mean().item()


def train(model: hf_vq.VAEModel, images: torch.Tensor, args: argparse.Namespace) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.max_train_steps)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    start = time.perf_counter()
    for step in range(1, args.max_train_steps + 1):
        batch = images[torch.randint(len(images), (args.train_batch_size,), generator=generator)]
        output = model(batch)
        loss = reconstruction_loss(output.reconstruction, batch, reduction="sum") + output.kl_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == args.max_train_steps:
            rate = step * args.train_batch_size / (time.perf_counter() - start)
            kl = output.kl.mean().item()
            print(f"step {step:4d}  loss {loss.item():8.2f}  kl {kl:6.2f} nats  {rate:6.0f} img/s")


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    config = hf_vq.VAEConfig(**DEMO_CONFIG)
    digits = load_builtin("builtin:digits")
    train_images = images_to_tensor(digits["train"]["image"], config.sample_size, config.in_channels)
    test_images = images_to_tensor(digits["test"]["image"], config.sample_size, config.in_channels)

    model = hf_vq.VAEModel(config)
    print(f"VAE with {model.num_parameters() / 1e6:.2f}M parameters on {len(train_images)} training digits")
    train(model, train_images, args)
    test_psnr = evaluate_psnr(model, test_images)

    model_dir = output_dir / "model"
    model.save_pretrained(model_dir)
    reloaded = AutoModel.from_pretrained(model_dir)
    reloaded_psnr = evaluate_psnr(reloaded, test_images)
    if reloaded_psnr != test_psnr:
        raise RuntimeError(f"reloaded model disagrees: PSNR {reloaded_psnr} vs {test_psnr}")

    with torch.no_grad():
        shown = test_images[:32]
        make_grid(torch.cat([shown, reloaded(shown).reconstruction]), nrow=16, scale=4).save(
            output_dir / "reconstructions.png"
        )
        samples = reloaded.sample(64, generator=torch.Generator().manual_seed(args.seed))
        make_grid(samples, nrow=8, scale=4).save(output_dir / "samples.png")
    metrics = {
        "test_psnr": round(test_psnr, 3),
        "train_steps": args.max_train_steps,
        "num_test_images": len(test_images),
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    print(f"model ({type(reloaded).__name__}, reloaded with AutoModel): {model_dir}")
    print(f"reconstructions: {output_dir / 'reconstructions.png'}\nsamples: {output_dir / 'samples.png'}")
    print(f"held-out reconstruction PSNR on {len(test_images)} test digits: {test_psnr:.2f} dB")


if __name__ == "__main__":
    main()
