"""Convert an hf_vq model with pickled weights (pytorch_model.bin, .pt) into a safetensors folder.

    python scripts/convert_to_safetensors.py org/old-vqgan converted/old-vqgan
    python scripts/convert_to_safetensors.py runs/old-run/model converted/old-run --weights_name model.pt

hf_vq's `from_pretrained` reads safetensors only and never unpickles; this is the one explicit step that reads a
pickle, with `torch.load(weights_only=True)` (tensors and plain containers, nothing that runs code). The output is
written into a temporary folder beside it and renamed into place, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse

from hf_vq.conversion.safetensors import convert_to_safetensors
from hf_vq.models import MODEL_CLASSES
from hf_vq.utils.cli import run_script
from hf_vq.utils.paths import check_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a local model folder or a Hub repo id (config.json + pickled weights)")
    parser.add_argument("output_dir", help="new (or empty) folder for the converted model")
    parser.add_argument("--subfolder", default="", help="the model's folder inside the source (e.g. prior)")
    parser.add_argument("--weights_name", default=None, help="the weights file, when the source holds several")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub repo")
    args = parser.parse_args(argv)
    files = convert_to_safetensors(
        check_source(args.source, "source"), args.output_dir, model_classes=MODEL_CLASSES, subfolder=args.subfolder,
        weights_name=args.weights_name, revision=args.revision,
    )  # fmt: skip
    for path in files:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    run_script(main)
