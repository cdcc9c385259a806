"""Tokenize an image dataset with a trained VQ model: every image becomes its grid of code indices.

    accelerate launch scripts/encode_dataset.py --vq_model runs/vqgan/model --dataset builtin:digits \
        --label_column label --splits train test --output_dir runs/digits-codes [--push_to_hub org/digits-codes]

Writes a `datasets.DatasetDict` with `save_to_disk` (columns `indices`, and `label` with --label_column) plus
`hf_vq_codes.json` (VQ model, token grid, records read and skipped); `train_prior.py --dataset <output_dir>` reads it.
Each split shows a progress bar when stderr is a terminal (none with --quiet). A mistake in the arguments is one line
`error: ...` and exit status 2.
"""

from __future__ import annotations

import argparse
import logging

from transformers import AutoModel
from transformers.utils.logging import disable_progress_bar

import hf_vq  # noqa: F401  (registers the model classes with AutoModel)
from hf_vq.training import encode_dataset
from hf_vq.utils.cli import run_script
from hf_vq.utils.paths import check_source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vq_model", required=True, help="path or Hub id of the trained VQ model")
    parser.add_argument("--dataset", required=True, help="Hub dataset id, local folder, or builtin:*")
    parser.add_argument("--output_dir", required=True, help="new folder for the code dataset")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--dataset_config", default=None)
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--label_column", default=None)
    parser.add_argument("--resolution", type=int, default=None, help="default: the VQ model's sample_size")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--push_to_hub", default=None, metavar="REPO_ID", help="also push the dataset to the Hub")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    args = parse_args(argv)
    if args.quiet:
        disable_progress_bar()  # transformers' and huggingface_hub's (encode_dataset silences its own and datasets')
    # Missing local paths fail here, before the model is loaded or the Hub is asked (AutoModel would ask it).
    vq_model_path = check_source(args.vq_model, "--vq_model")
    check_source(args.dataset, "--dataset")
    vq_model = AutoModel.from_pretrained(vq_model_path)
    codes = encode_dataset(
        vq_model,
        args.dataset,
        args.output_dir,
        args.splits,
        vq_model_name_or_path=vq_model_path,
        image_column=args.image_column,
        label_column=args.label_column,
        resolution=args.resolution,
        batch_size=args.batch_size,
        dataset_config=args.dataset_config,
        quiet=args.quiet,
    )
    if codes is not None:
        print(f"code dataset: {args.output_dir}\n{codes}")
        if args.push_to_hub:
            codes.push_to_hub(args.push_to_hub)


if __name__ == "__main__":
    run_script(main)
