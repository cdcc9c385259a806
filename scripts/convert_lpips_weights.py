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
from pathlib import Path

import torch
from safetensors.torch import save_file

from hf_vq.conversion.lpips import convert_lpips_state_dict
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vgg16", type=Path, required=True, help="torchvision VGG16 state dict (.pth)")
    parser.add_argument("--lpips", type=Path, required=True, help="LPIPS v0.1 vgg.pth (linear heads)")
    parser.add_argument("--output", type=Path, required=True, help="the safetensors file to write")
    return parser.parse_args(argv)


def load_weights(path: Path, flag: str) -> dict:
    """A released state dict, read with `torch.load(weights_only=True)`; a missing file or a pickle holding more than
    tensors is the user's mistake (a `UsageError`)."""
    if not path.is_file():
        raise UsageError(f"{flag}: no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UsageError(
            f"{flag}: {path} holds Python objects other than tensors; it is not read, since unpickling them could run "
            f"code ({str(error).splitlines()[0]})"
        ) from error


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state = convert_lpips_state_dict(load_weights(args.vgg16, "--vgg16"), load_weights(args.lpips, "--lpips"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.output), metadata={"format": "pt"})
    print(f"wrote {len(state)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    run_script(main)
