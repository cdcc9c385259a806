"""The benchmark runner's bookkeeping (no measurement): section blocks, their date stamps and the summary table
gathered from the rows each section stores in its block."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import run  # noqa: E402
from common import summary_comment, summary_row, summary_rows  # noqa: E402


def block(title: str, rows: list[dict]) -> str:
    return f"## {title}\n\nSome text.\n\n| a |\n| --- |\n| 1 |\n\n" + summary_comment(rows)


def test_summary_rows_survive_the_block_round_trip():
    rows = [summary_row("speed against a peer", "2.00x (a | b)", ">= 2x", True), summary_row("a share", "92%")]
    assert summary_rows(block("T", rows)) == rows
    assert summary_rows("## T\n\nA block written before summaries existed.") == []


def test_stamp_puts_the_date_under_the_title():
    stamped = run.stamp(block("Title", []), "2026-11-21 17:00", 90.0, quick=False)
    assert stamped.startswith("## Title\n\n*Measured 2026-11-21 17:00 UTC; the section took 1.5 min.*\n\nSome text.")
    assert "--quick" in run.stamp(block("Title", []), "2026-11-21 17:00", 90.0, quick=True)


def test_summary_gathers_new_and_kept_sections_in_section_order(tmp_path):
    names = list(run.SECTIONS)
    kept = run.stamp(
        block("Kept", [summary_row("kept figure", "1.5x", ">= 2x", False)]), "2026-11-20 10:00", 60, False
    )
    new = run.stamp(block("New", [summary_row("new figure", "11x", ">= 10x", True)]), "2026-11-21 12:00", 60, False)
    existing = tmp_path / "BENCHMARKS.md"
    existing.write_text(f"# Benchmarks\n\n<!-- section: {names[1]} -->\n{kept}\n<!-- /section: {names[1]} -->\n")
    blocks = {names[1]: run.existing_sections(existing)[names[1]], names[0]: new}
    lines = run.summary_block(blocks).splitlines()
    table = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert table == [
        f"| {names[0]} | new figure | 11x | >= 10x | yes | 2026-11-21 12:00 |",
        f"| {names[1]} | kept figure | 1.5x | >= 2x | **no** | 2026-11-20 10:00 |",
    ]


@pytest.mark.parametrize("met, cell", [(True, "yes"), (False, "**no**"), (None, "-")])
def test_summary_marks_goals_met_missed_and_absent(met, cell):
    name = next(iter(run.SECTIONS))
    rows = [summary_row("one figure", "result", None if met is None else "goal", met)]
    line = [line for line in run.summary_block({name: block("T", rows)}).splitlines() if "| one figure |" in line][0]
    assert line.split(" | ")[4] == cell


def test_a_section_that_measured_nothing_keeps_its_old_block_or_gets_its_placeholder():
    if not torch.cuda.is_available():  # CI and this project's machines: the section measures nothing
        assert run.gpu.run(quick=True, context={}) is None
    assert run.assemble({}, {})["gpu"] == run.gpu.PLACEHOLDER
    assert "No GPU figures exist yet" in run.gpu.PLACEHOLDER
    earlier = "## GPU\n\nMeasured on an H100."
    assert run.assemble({}, {"gpu": earlier})["gpu"] == earlier
    blocks = run.assemble({"peers": "## new"}, {"peers": "## old", "quality": "## kept"})
    assert blocks == {"peers": "## new", "quality": "## kept", "gpu": run.gpu.PLACEHOLDER}
    assert list(run.assemble({"gpu": "g", "quantizer": "q"}, {})) == ["quantizer", "gpu"]
    assert "| gpu | GPU training step" in run.summary_block({"gpu": run.gpu.PLACEHOLDER})


def test_sections_run_in_declared_order_with_gpu_last():
    # gpu initializes CUDA in the runner's process; every section that forks measuring children must come before.
    assert list(run.SECTIONS)[-1] == "gpu"
    assert run.parse_args([]).sections == list(run.SECTIONS)
