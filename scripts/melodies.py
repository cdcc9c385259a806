"""Listen to and look at a trained sequence VAE: samples, reconstructions, an interpolation and attribute edits of
held-out melodies as MIDI files and piano rolls, and how far its note-density and mean-pitch vectors move them.

    python scripts/melodies.py --model runs/sequence-vae-2bar/model --output_dir outputs/melodies
    python scripts/melodies.py --model org/musicvae-16bar --split test --num_samples 16 --temperature 0.5 \\
        --steps 11 --output_dir outputs/melodies-16bar

Held-out melodies are windows of the model's `num_bars` bars of `bar_length` steps, cut from the tunes of `--split`
whose bar has `bar_length` steps (`hf_vq.data.melody_windows`: at most `--num_windows`, spread over the split), or
from every tune with `--match_meter false` (as training's flag: a dataset without a `steps_per_bar` column, such as
one with only `--tokens_column`, needs it).
Everything is decoded greedily from posterior means except the samples. Written to `--output_dir`, which must be new
or empty (or `--overwrite`):

- samples/sample_NN.mid, samples.png: `--num_samples` draws from the prior, decoded at `--temperature`;
- reconstructions/original_NN.mid, reconstruction_NN.mid, reconstructions.png (each original over its
  reconstruction): the first `--num_examples` held-out melodies;
- interpolation.mid (the path played in a row), interpolation.png (melody A, the `--steps` points of the slerp
  path between the two melodies' latents, melody B): held-out melodies `--index_a` and `--index_b`;
- attributes/<attribute>/original_NN.mid, reconstruction_NN.mid, plus_NN.mid, minus_NN.mid, and
  attributes/<attribute>.png (those four rows for each example): the first `--num_examples` held-out melodies with
  `--edit_scale` times the attribute vector added and subtracted, for note density and mean pitch;
- attributes.json: for each attribute, the vector (the mean latent of the top `--fraction` of `--attribute_split`'s
  windows minus that of the bottom `--fraction`, MusicVAE's section 5.3) and the mean attribute of the held-out
  melodies decoded with each of `--scales` times it added (scale 0: the reconstructions);
- tokens.json: every token sequence above.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
from transformers import AutoModel

import hf_vq  # (also registers the model types with AutoModel)
from hf_vq.data import load_code_dataset, melody_windows
from hf_vq.latents import (
    apply_attribute,
    attribute_groups,
    attribute_shift,
    attribute_vector,
    interpolate,
)
from hf_vq.music import mean_pitch, note_density, piano_roll, tokens_to_midi
from hf_vq.utils.cli import run_script
from hf_vq.utils.errors import UsageError
from hf_vq.utils.paths import check_source

# name -> an attribute function of one token sequence (hf_vq.music), as MusicVAE's attribute vectors
ATTRIBUTES = {"note_density": note_density, "mean_pitch": mean_pitch}
# piano rolls are at least this many pixels wide (4 pixels a step, more for short sequences)
ROLL_WIDTH = 512
# what this script writes in --output_dir: the only names --overwrite removes first
OUTPUTS = (
    "samples",
    "samples.png",
    "reconstructions",
    "reconstructions.png",
    "interpolation.mid",
    "interpolation.png",
    "attributes",
    "attributes.json",
    "tokens.json",
)


def boolean(value: str) -> bool:
    """A flag's true or false, spelled as training's flags take them (`--match_meter false`)."""
    spelled = value.lower()
    if spelled in ("true", "t", "yes", "y", "1"):
        return True
    if spelled in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a SequenceVAEModel folder or Hub repo id")
    parser.add_argument(
        "--dataset", default="builtin:folk-melodies", help="melodies: a builtin, saved folder or Hub id"
    )
    parser.add_argument("--split", default="test", help="the held-out melodies shown and measured")
    parser.add_argument("--attribute_split", default="train", help="the melodies the attribute vectors come from")
    parser.add_argument("--tokens_column", default="tokens", help="the column of each tune's tokens")
    # the same spellings as training's SequenceArguments.match_meter: --match_meter [true|false], --no_match_meter
    parser.add_argument(
        "--match_meter",
        type=boolean,
        nargs="?",
        const=True,
        default=True,
        metavar="{true,false}",
        help="cut only tunes whose bar (steps_per_bar) is the model's bar_length (default true; false: every tune)",
    )
    parser.add_argument("--no_match_meter", dest="match_meter", action="store_false", help="--match_meter false")
    parser.add_argument("--num_windows", type=int, default=256, help="held-out windows measured (at most)")
    parser.add_argument("--attribute_windows", type=int, default=2048, help="windows of --attribute_split (at most)")
    parser.add_argument("--fraction", type=float, default=0.25, help="top and bottom fraction for attribute vectors")
    parser.add_argument("--scales", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0, 2.0])
    parser.add_argument("--edit_scale", type=float, default=1.0, help="times the attribute vector, for the edits")
    parser.add_argument("--num_samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0, help="of the samples (0: greedy)")
    parser.add_argument("--num_examples", type=int, default=4, help="held-out melodies reconstructed and edited")
    parser.add_argument("--steps", type=int, default=8, help="points on the interpolation, endpoints included")
    parser.add_argument("--index_a", type=int, default=0, help="held-out window at the start of the interpolation")
    parser.add_argument("--index_b", type=int, default=1, help="held-out window at the end of the interpolation")
    parser.add_argument("--tempo", type=float, default=120.0, help="of the MIDI files, in quarter notes a minute")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output_dir", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --output_dir")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """The flags' ranges and the output folder, before anything is loaded."""
    for flag in ("num_windows", "attribute_windows", "num_samples", "num_examples", "batch_size"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.steps < 2:
        raise UsageError(f"--steps must be >= 2 (the two endpoints at least), got {args.steps}")
    if not 0 < args.fraction <= 0.5:
        raise UsageError(f"--fraction must be in (0, 0.5], got {args.fraction}")
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {args.temperature}")
    if min(args.index_a, args.index_b) < 0 or args.index_a == args.index_b:
        raise UsageError(
            f"--index_a and --index_b must be two different indices >= 0, got {args.index_a}, {args.index_b}"
        )
    output = args.output_dir
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output_dir: {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise UsageError(f"--output_dir: {output} is not empty; choose another folder or pass --overwrite")


def load_model(name: str, device: str) -> torch.nn.Module:
    model = AutoModel.from_pretrained(check_source(name, "--model"))
    if not isinstance(model, hf_vq.SequenceVAEModel):
        raise UsageError(
            f"--model: {name} is a {type(model).__name__}, not a SequenceVAEModel (a sequence VAE, as "
            "training/train_sequence_vae.py trains)"
        )
    return model.to(device).eval()


def windows(
    args: argparse.Namespace, split: str, config: hf_vq.SequenceVAEConfig, max_windows: int, minimum: int
) -> torch.Tensor:
    """(N, num_bars * bar_length) windows of one split; a `UsageError` when it has fewer than `minimum`."""
    dataset = load_code_dataset(check_source(args.dataset, "--dataset"), split)
    found = melody_windows(
        dataset,
        config.num_bars,
        config.bar_length,
        max_windows,
        match_meter=args.match_meter,
        tokens_column=args.tokens_column,
    )
    if len(found) < minimum:
        tunes = f"tunes whose bar is {config.bar_length} steps" if args.match_meter else "every tune"
        raise UsageError(
            f"split {split!r} of {args.dataset} has {len(found)} windows of {config.num_bars} bars of "
            f"{config.bar_length} steps (from {tunes}); this needs {minimum}"
        )
    return found


def write_midis(sequences: torch.Tensor, folder: Path, prefix: str, tempo: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, tokens in enumerate(sequences.cpu()):
        tokens_to_midi(tokens, folder / f"{prefix}_{i:02d}.mid", tempo_qpm=tempo)


def save_roll(sequences: torch.Tensor, bar_length: int, path: Path) -> None:
    """A piano roll of sequences (n, T), one above the other, at least `ROLL_WIDTH` pixels wide."""
    pixels_per_step = max(4, ROLL_WIDTH // sequences.shape[1])
    piano_roll(sequences, bar_length=bar_length, pixels_per_step=pixels_per_step).save(path)


def interleave(*groups: torch.Tensor) -> torch.Tensor:
    """Rows of several (n, T) groups, example after example: (n * len(groups), T)."""
    return torch.stack(groups, dim=1).flatten(0, 1)


def number(value: float | None) -> str:
    """A measured mean for the summary; None (nothing decoded had the attribute) as '-'."""
    return "-" if value is None else f"{value:.3f}"


def remove_outputs(output: Path) -> None:
    """What an earlier run of this script wrote (and only that), so that no stale file is left among the new."""
    for name in OUTPUTS:
        path = output / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_args(args)
    model = load_model(args.model, args.device)
    config = model.config
    held_out = windows(args, args.split, config, args.num_windows, max(2, args.index_a + 1, args.index_b + 1))
    # attribute_groups needs 1 / fraction windows at least for one in each group
    reference = windows(args, args.attribute_split, config, args.attribute_windows, math.ceil(1 / args.fraction))
    examples = held_out[: args.num_examples]
    generator = torch.Generator(model.device).manual_seed(args.seed)

    samples = model.sample(args.num_samples, temperature=args.temperature, generator=generator).cpu()
    reconstructions = model.reconstruct(examples.to(model.device)).cpu()
    melody_a, melody_b = held_out[args.index_a], held_out[args.index_b]
    path = interpolate(model, melody_a, melody_b, steps=args.steps).cpu()  # (steps, T), greedy

    measured, edits = {}, {}
    for name, attribute in ATTRIBUTES.items():
        groups = attribute_groups(reference, attribute, args.fraction)
        vector = attribute_vector(model, reference[groups.top], reference[groups.bottom], args.batch_size)
        shift = attribute_shift(model, held_out, vector, attribute, args.scales, batch_size=args.batch_size)
        measured[name] = {
            "top_mean": groups.values[groups.top].mean().item(),
            "bottom_mean": groups.values[groups.bottom].mean().item(),
            "group_size": len(groups.top),
            "vector_norm": vector.norm().item(),
            **shift.to_dict(),
        }
        edits[name] = {
            "plus": apply_attribute(model, examples, vector, args.edit_scale).cpu(),
            "minus": apply_attribute(model, examples, vector, -args.edit_scale).cpu(),
        }

    output = args.output_dir
    if args.overwrite:
        remove_outputs(output)
    output.mkdir(parents=True, exist_ok=True)
    bar_length = config.bar_length
    write_midis(samples, output / "samples", "sample", args.tempo)
    save_roll(samples, bar_length, output / "samples.png")
    write_midis(examples, output / "reconstructions", "original", args.tempo)
    write_midis(reconstructions, output / "reconstructions", "reconstruction", args.tempo)
    save_roll(interleave(examples, reconstructions), bar_length, output / "reconstructions.png")
    tokens_to_midi(path.flatten(), output / "interpolation.mid", tempo_qpm=args.tempo)
    save_roll(torch.cat([melody_a[None], path, melody_b[None]]), bar_length, output / "interpolation.png")
    for name, edit in edits.items():
        folder = output / "attributes" / name
        write_midis(examples, folder, "original", args.tempo)
        write_midis(reconstructions, folder, "reconstruction", args.tempo)
        write_midis(edit["plus"], folder, "plus", args.tempo)
        write_midis(edit["minus"], folder, "minus", args.tempo)
        rows = interleave(examples, reconstructions, edit["plus"], edit["minus"])
        save_roll(rows, bar_length, output / "attributes" / f"{name}.png")

    report = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "attribute_split": args.attribute_split,
        "match_meter": args.match_meter,
        "windows": len(held_out),
        "attribute_windows": len(reference),
        "fraction": args.fraction,
        "edit_scale": args.edit_scale,
        "attributes": measured,
    }
    (output / "attributes.json").write_text(json.dumps(report, indent=2) + "\n")
    tokens = {
        "samples": samples.tolist(),
        "originals": examples.tolist(),
        "reconstructions": reconstructions.tolist(),
        "interpolation": path.tolist(),
        "interpolation_ends": [melody_a.tolist(), melody_b.tolist()],
        "edits": {name: {key: value.tolist() for key, value in edit.items()} for name, edit in edits.items()},
    }
    (output / "tokens.json").write_text(json.dumps(tokens) + "\n")

    print(f"wrote {output}: {args.num_samples} samples, {len(examples)} reconstructions and attribute edits, an "
          f"interpolation of {args.steps} points")  # fmt: skip
    for name, entry in measured.items():
        means = ", ".join(f"{scale}: {number(mean)}" for scale, mean in entry["means"].items())
        print(f"{name}: held-out {number(entry['original'])}; decoded with the vector times {means}")
    return 0


if __name__ == "__main__":
    run_script(main)
