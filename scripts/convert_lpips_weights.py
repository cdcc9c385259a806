"""Convert the VGG16 and LPIPS v0.1 weights into the one safetensors file that `hf_vq.losses.LPIPS` loads.

    python scripts/convert_lpips_weights.py --vgg16 vgg16-397923af.pth --lpips vgg.pth \\
        --output lpips_vgg16.safetensors

--vgg16 is torchvision's ImageNet VGG16 state dict (its `features.*` keys are kept, the classifier dropped);
--lpips is LPIPS v0.1's `weights/v0.1/vgg.pth` (its `lin{0..4}.model.1.weight` heads). Both are read with
`torch.load(weights_only=True)`, which refuses pickled code. Pass the output to `--lpips_weights`.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from hf_vq.conversion.lpips import convert_lpips_state_dict


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vgg16", type=Path, required=True, help="torchvision VGG16 state dict (.pth)")
    parser.add_argument("--lpips", type=Path, required=True, help="LPIPS v0.1 vgg.pth (linear heads)")
    parser.add_argument("--output", type=Path, required=True, help="the safetensors file to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        vgg16_state = torch.load(args.vgg16, map_location="cpu", weights_only=True)
        lpips_state = torch.load(args.lpips, map_location="cpu", weights_only=True)
        state = convert_lpips_state_dict(vgg16_state, lpips_state)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.output), metadata={"format": "pt"})
    print(f"wrote {len(state)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
