"""Publish a finished training run on the Hugging Face Hub in one commit.

    python scripts/push_to_hub.py runs/vqgan-celeba org/vqgan-celeba
    python scripts/push_to_hub.py runs/vqgan-celeba org/vqgan-celeba --push_discriminator --export_code

Uploads the final model's safetensors weights and config to the repo root (for a prior's run: the pipeline,
`vq_model/` + `prior/`), the model card rendered from the run (config, training_args.json, metrics.json: metadata,
`model-index`, sample grid, usage, training setup, limitations), the sample grids and metrics.json; on request the
discriminator, training_args.json and the modeling code with `auto_map` (so that `trust_remote_code=True` loads it
without hf_vq). The `checkpoint-*` states are never uploaded. The token comes from `HF_TOKEN` or `hf auth login`;
it is never printed. `--dry_run DIR` writes what would be uploaded into DIR instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub.errors import HfHubHTTPError

from hf_vq.training.publishing import push_training_outputs, stage_training_outputs
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path, help="the --output_dir of a finished training run")
    parser.add_argument("repo_id", help="the model repo, e.g. org/vqgan-celeba (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--push_discriminator", action="store_true", help="also upload discriminator/")
    parser.add_argument("--push_training_args", action="store_true", help="also upload training_args.json")
    parser.add_argument("--export_code", action="store_true", help="also upload the modeling code and auto_map")
    parser.add_argument("--model_card", type=Path, default=None, help="a README.md to upload instead of ours")
    parser.add_argument("--revision", default=None, help="the branch to commit to (default: main)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--dry_run", type=Path, default=None, help="write the repo's files here; upload nothing")
    args = parser.parse_args(argv)
    if args.model_card is not None and not args.model_card.is_file():
        raise UsageError(f"--model_card: no such file: {args.model_card}")
    options = dict(
        push_discriminator=args.push_discriminator,
        push_training_args=args.push_training_args,
        export_code=args.export_code,
        model_card=args.model_card.read_text() if args.model_card else None,
    )
    if args.dry_run is not None:
        if args.dry_run.exists():
            raise UsageError(f"--dry_run folder {args.dry_run} exists; name a new one")
        for name in stage_training_outputs(args.output_dir, args.dry_run, args.repo_id, **options):
            print(name)
        return 0
    try:
        url = push_training_outputs(
            args.output_dir, args.repo_id, private=args.private or None, revision=args.revision,
            commit_message=args.commit_message, **options,
        )  # fmt: skip
    except HfHubHTTPError as error:  # not the user's mistake: it keeps its traceback (status 1), with what it means
        error.add_note(f"the upload to {args.repo_id} failed, nothing was committed")
        raise
    print(f"pushed {args.output_dir} to {args.repo_id}: {url}")
    return 0


if __name__ == "__main__":
    run_script(main)
