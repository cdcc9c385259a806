"""Convert a taming-transformers VQ-GAN checkpoint (or an LDM's VQ first stage) into an `hf_vq.VQGANModel` folder.

    python scripts/convert_taming_checkpoint.py --checkpoint logs/vqgan_imagenet_f16_1024/checkpoints/last.ckpt \\
        --config logs/vqgan_imagenet_f16_1024/configs/model.yaml --output_dir vqgan-imagenet-f16-1024

Without --config, the architecture is read from the weights and --resolution gives the training resolution. The
output folder (config.json, model.safetensors) loads with `AutoModel.from_pretrained` after `import hf_vq`. It is
written into a temporary folder beside it and renamed into place, so a failed run leaves no partial model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_vq.conversion.safetensors import save_pretrained_atomically
from hf_vq.models.vqgan import VQGANModel
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help=".ckpt / .pt / .pth / .bin / .safetensors")
    parser.add_argument("--config", type=Path, help="taming config YAML (model.params.ddconfig, n_embed, embed_dim)")
    parser.add_argument("--resolution", type=int, help="training resolution, needed without --config")
    parser.add_argument("--output_dir", type=Path, required=True, help="new (or empty) folder for the model")
    parser.add_argument(
        "--allow_unsafe_pickle",
        action="store_true",
        help="unpickle Python objects stored in the checkpoint; only for files you trust (it can run code)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Checked before the (possibly long) read of the checkpoint; save_pretrained_atomically checks again.
    if args.output_dir.exists() and (not args.output_dir.is_dir() or any(args.output_dir.iterdir())):
        raise UsageError(f"{args.output_dir} exists and is not an empty folder; choose another --output_dir")
    for flag, path in (("--checkpoint", args.checkpoint), ("--config", args.config)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag}: no such file: {path}")
    model = VQGANModel.from_taming(
        args.checkpoint, config=args.config, resolution=args.resolution, allow_unsafe_pickle=args.allow_unsafe_pickle
    )
    files = save_pretrained_atomically(model, args.output_dir)
    config = model.config
    print(
        f"converted {args.checkpoint}: {len(config.block_out_channels)} levels {config.block_out_channels} "
        f"(downsampling x{config.downsample_factor}), {config.num_vq_embeddings} codes of dimension "
        f"{config.vq_embed_dim}, {sum(p.numel() for p in model.parameters()):,} parameters"
    )
    for path in files:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    run_script(main)
