"""The benchmark runner: `python bench/run.py [--sections quantizer] [--quick]` (or `make bench`).

Runs the chosen sections and writes BENCHMARKS.md: machine facts of this run, then one block per section between
`<!-- section: NAME -->` markers. Sections not run this time keep their block from the existing file, with the date
it was measured, so that a section can be re-measured alone. `--quick` uses small sizes to check that the runner
works (a few minutes) and prints the markdown instead of writing it, unless `--output` is given.

A section is a module of `bench/` with `TITLE`, `PRELOAD` (modules the fork server of the measuring children
imports once, so that they do not pay the import) and `run(quick: bool, context: dict) -> str | None` (its markdown,
which starts with `## TITLE`). `context["matmul"]` holds this run's float32 / bfloat16 matmul rates. Add one to
`SECTIONS` below. A section that cannot measure on this machine (`gpu` without a CUDA device) returns None: its
block from the existing file stays, or its module's `PLACEHOLDER` is written. The runner stamps each block with the
date it was measured, and gathers the rows a section stores with `common.summary_comment` (its headline figures and
goals) into the summary table at the top of the file.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from pathlib import Path

import gpu
import peers
import quality
import quantizer
import sampling
import train_step
from common import (
    REPO_ROOT,
    load_average,
    machine_info,
    markdown_table,
    run_isolated,
    set_threads,
    start_fork_server,
    summary_rows,
    utc_now,
)

# gpu last: it initializes CUDA in the runner's process (its measurements run there, not in forked children).
SECTIONS = {
    "quantizer": quantizer, "training": train_step, "peers": peers, "quality": quality, "sampling": sampling,
    "gpu": gpu,
}  # fmt: skip
HEADER = """\
# Benchmarks

Written by `make bench` (`python bench/run.py`); do not edit by hand: the next run rewrites it. Code: `bench/`.

This machine is small and shared (2 CPU cores, other jobs running at the same time), so absolute seconds vary from
run to run. Every figure is paired with a peer measured in the same process, interleaved call by call, and the ratio
is the figure to read. Everything is CPU, float32 unless stated, except the `gpu` section."""
SECTION_PATTERN = re.compile(r"<!-- section: (\w+) -->\n(.*?)\n<!-- /section: \1 -->", re.DOTALL)
STAMP_PATTERN = re.compile(r"^\*Measured (.+?) UTC", re.MULTILINE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=sorted(SECTIONS),
        default=list(SECTIONS),
        help="sections to run (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the runner works")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown file to write (default: BENCHMARKS.md at the repository root; with --quick, print only)",
    )
    return parser.parse_args(argv)


def existing_sections(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(SECTION_PATTERN.findall(path.read_text()))


def machine_block(info: dict[str, str], matmul: dict, load_before: str, load_after: str, quick: bool) -> str:
    rows = [[key, value] for key, value in info.items()]
    for dtype, result in matmul.items():
        rows.append(
            [
                f"{dtype} matmul",
                f"{result['median_gflops']:.0f} GFLOP/s median, {result['max_gflops']:.0f} best "
                f"({result['size']}^3, {result['runs']} runs after a warm-up)",
            ]
        )
    rows.append(["load average (1 / 5 / 15 min)", f"{load_before} at the start, {load_after} at the end"])
    title = "## Machine of the last run" + (" (`--quick`)" if quick else "")
    return title + "\n\n" + markdown_table(["", ""], rows)


def assemble(measured: dict[str, str], kept: dict[str, str]) -> dict[str, str]:
    """The file's blocks in `SECTIONS` order: this run's, else the existing file's, else the section's placeholder."""
    blocks = {}
    for name, module in SECTIONS.items():
        block = measured.get(name, kept.get(name, getattr(module, "PLACEHOLDER", None)))
        if block is not None:
            blocks[name] = block
    return blocks


def stamp(block: str, date: str, seconds: float, quick: bool) -> str:
    """The section's block with the date of this measurement under its title."""
    title, _, body = block.partition("\n\n")
    mode = " with `--quick` (small sizes: not figures to read)" if quick else ""
    return f"{title}\n\n*Measured {date} UTC{mode}; the section took {seconds / 60:.1f} min.*\n\n{body}"


def summary_block(blocks: dict[str, str]) -> str:
    """The headline figure of every section, with its goal, in one table (sections in `SECTIONS` order)."""
    rows = []
    for name in SECTIONS:
        if name not in blocks:
            continue
        dates = STAMP_PATTERN.findall(blocks[name])
        for row in summary_rows(blocks[name]):
            met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
            rows.append([name, row["figure"], row["result"], row["goal"] or "-", met, dates[0] if dates else "-"])
    return (
        "## Summary\n\nThe headline figure of each section below, against the goal its issue set; the sections give "
        "the setup, the spread of the runs and what was tried. Ratios come from peers measured in the same run.\n\n"
        + markdown_table(["section", "figure", "result", "goal", "met", "measured (UTC)"], rows)
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads()
    preload = [module for name in args.sections for module in (SECTIONS[name].__name__, *SECTIONS[name].PRELOAD)]
    for module in preload:
        importlib.import_module(module)
    start_fork_server(preload)  # before anything computes: see common.start_fork_server
    started = time.perf_counter()
    load_before = load_average()
    size = 1024 if args.quick else 4096
    print(f"[run] matmul rates ({size}^3)", flush=True)
    matmul = run_isolated("common:matmul_rates", size=size)
    context = {"matmul": matmul}
    blocks = {}
    for name in [name for name in SECTIONS if name in args.sections]:  # SECTIONS' order whatever the command's
        section_started = time.perf_counter()
        date = utc_now()
        block = SECTIONS[name].run(args.quick, context)
        seconds = time.perf_counter() - section_started
        if block is not None:
            blocks[name] = stamp(block, date, seconds, args.quick)
        print(f"[run] section {name}: {seconds:.0f} s", flush=True)
    info = machine_info()
    output = args.output if args.output is not None or args.quick else REPO_ROOT / "BENCHMARKS.md"
    kept = existing_sections(output) if output is not None else {}
    blocks = assemble(blocks, kept)
    parts = [HEADER, machine_block(info, matmul, load_before, load_average(), args.quick), summary_block(blocks)]
    for name, block in blocks.items():
        parts.append(f"<!-- section: {name} -->\n{block}\n<!-- /section: {name} -->")
    markdown = "\n\n".join(parts) + "\n"
    if output is None:
        print(markdown)
    else:
        output.write_text(markdown)
        print(f"[run] wrote {output}", flush=True)
    print(f"[run] total {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
