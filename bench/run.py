"""The benchmark runner: `python bench/run.py [--sections NAME ...] [--quick] [--output FILE.md]` (or `make bench`).

Runs the chosen sections and writes their results to BENCHMARKS.json, for programs, and to BENCHMARKS.md, as
markdown tables under a summary table, at the repository root (or to `--output` and the `.json` file beside it).
Sections not run keep their result from the existing JSON file, so that a section can be re-measured alone.
`--quick` uses small sizes to check that the runner works, and prints the markdown instead of writing files unless
`--output` is given.

A section is a module of `bench/` with `TITLE` and `run(quick, context) -> dict | None`, `context["matmul"]` holding
this run's matmul rates (`common.matmul_rates`). Its result has a `title`, `parts` (each with an optional `heading`,
`text` and `table`, a `common.table`) and `summary` (`common.summary_row`s); the runner adds the date it was
`measured` (UTC), the `minutes` it took and whether it was `quick`. A section that cannot measure on this machine
returns None: its earlier result stays, else its module's `PLACEHOLDER` is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import gpu
import peers
import priors
import quality
import quality_goal
import quantizer
import sampling
import sequence_vae
import train_step
from common import CONTEXT, REPO_ROOT, machine_info, run_isolated, set_threads, utc_now

# gpu last: it initializes CUDA in the runner's process (its measurements run there, not in children).
SECTIONS = {
    "quantizer": quantizer,
    "training": train_step,
    "peers": peers,
    "quality": quality,
    "quality_goal": quality_goal,
    "sampling": sampling,
    "priors": priors,
    "sequence_vae": sequence_vae,
    "gpu": gpu,
}
# Imported once by the fork server (`common.CONTEXT`), so that the measuring children start with them imported.
PRELOAD = [
    "common",
    *(module.__name__ for module in SECTIONS.values()),
    "hf_vq",
    "hf_vq.training",
    "diffusers.models.autoencoders.vae",
    "diffusers.models.autoencoders.vq_model",
]
SUMMARY_HEADERS = ["section", "figure", "result", "goal", "met", "measured"]
HEADER = """\
# Benchmarks

Written by `make bench` (`python bench/run.py`) with `BENCHMARKS.json`, which holds the same results for programs;
do not edit by hand: the next run rewrites both. Code: `bench/`. Dates are UTC.

This machine is small and shared (2 CPU cores, other jobs running at the same time), so absolute seconds vary from
run to run. Every figure is paired with a peer measured in the same process, interleaved call by call, and the ratio
is the figure to read. Everything is CPU, float32 unless stated, except the `gpu` section."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), help="sections to run (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the runner works")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file to write, the JSON file beside it (default: BENCHMARKS.md at the repository root; with "
        "--quick, print only)",
    )
    return parser.parse_args(argv)


def load_sections(path: Path) -> dict[str, dict]:
    """The section results stored in a JSON file written by the runner (none if there is no file)."""
    return json.loads(path.read_text())["sections"] if path.exists() else {}


def merge(measured: dict[str, dict], kept: dict[str, dict]) -> dict[str, dict]:
    """Every section's result in `SECTIONS` order: this run's, else the kept one, else the section's placeholder."""
    results = {}
    for name, module in SECTIONS.items():
        result = measured.get(name) or kept.get(name) or getattr(module, "PLACEHOLDER", None)
        if result is not None:
            results[name] = result
    return results


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def section_markdown(result: dict) -> str:
    blocks = [f"## {result['title']}"]
    if "measured" in result:
        mode = " with `--quick` (small sizes: not figures to read)" if result.get("quick") else ""
        blocks.append(f"*Measured {result['measured']} UTC{mode}; the section took {result['minutes']:.1f} min.*")
    for part in result["parts"]:
        if part.get("heading"):
            blocks.append(f"### {part['heading']}")
        if part.get("text"):
            blocks.append(part["text"])
        if part.get("table"):
            blocks.append(markdown_table(part["table"]["headers"], part["table"]["rows"]))
    return "\n\n".join(blocks)


def summary_markdown(sections: dict[str, dict]) -> str:
    """The summary rows of every section, with their goals, in one table."""
    rows = [
        [name, row["figure"], row["result"], row["goal"] or "-", {True: "yes", False: "**no**", None: "-"}[row["met"]],
         result.get("measured", "-")]
        for name, result in sections.items()
        for row in result["summary"]
    ]  # fmt: skip
    return (
        "## Summary\n\nThe headline figure of each section below, against its goal; the sections give the setup and "
        "the spread of the runs. Ratios come from peers measured in the same run.\n\n"
        + markdown_table(SUMMARY_HEADERS, rows)
    )


def render(data: dict) -> str:
    """BENCHMARKS.md from the contents of BENCHMARKS.json."""
    machine = "## Machine of the last run\n\n" + markdown_table(["", ""], [[k, v] for k, v in data["machine"].items()])
    sections = [section_markdown(result) for result in data["sections"].values()]
    return "\n\n".join([HEADER, machine, summary_markdown(data["sections"]), *sections]) + "\n"


def write(output: Path, data: dict) -> None:
    """`data` ({"machine": ..., "sections": ...}) to the JSON file beside `output`, and rendered to `output`."""
    output.with_suffix(".json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    output.write_text(render(data))


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads()
    if CONTEXT.get_start_method() == "forkserver":
        CONTEXT.set_forkserver_preload(PRELOAD)
    started, load_before = time.perf_counter(), load_average()
    size = 1024 if args.quick else 4096
    print(f"[run] matmul rates (up to {size}^3)", flush=True)
    matmul = run_isolated("common:matmul_rates", size=size, seconds_per_call=5.0)
    measured = {}
    for name, module in SECTIONS.items():  # SECTIONS' order, whatever the command's
        if name not in args.sections:
            continue
        date, section_started = utc_now(), time.perf_counter()
        result = module.run(args.quick, {"matmul": matmul})
        minutes = (time.perf_counter() - section_started) / 60
        print(f"[run] section {name}: {minutes:.1f} min", flush=True)
        if result is not None:
            measured[name] = {**result, "measured": date, "minutes": round(minutes, 1), "quick": args.quick}
    machine = machine_info()
    for dtype, rate in matmul.items():
        machine[f"{dtype} matmul"] = (
            f"{rate['median_gflops']:.0f} GFLOP/s median, {rate['max_gflops']:.0f} best "
            f"({rate['size']}^3, {rate['runs']} runs after a warm-up)"
        )
    machine["load average (1 / 5 / 15 min)"] = f"{load_before} at the start, {load_average()} at the end"
    if args.quick:
        machine["mode"] = "`--quick`: small sizes, not figures to read"
    output = args.output or (None if args.quick else REPO_ROOT / "BENCHMARKS.md")
    kept = load_sections(output.with_suffix(".json")) if output is not None else {}
    data = {"machine": machine, "sections": merge(measured, kept)}
    if output is None:
        print(render(data))
    else:
        write(output, data)
        print(f"[run] wrote {output} and {output.with_suffix('.json')}", flush=True)
    print(f"[run] total {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    sys.exit(main())
