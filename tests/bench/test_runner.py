"""The benchmark runner's bookkeeping (no real measurement): results kept in BENCHMARKS.json, the markdown written
from them, a section re-measured alone, placeholders, section order; and the isolated children it measures in."""

import json
import os
import sys
from types import SimpleNamespace

import pytest
import torch

from ..conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402
import run  # noqa: E402

SUMMARY_HEADER = "| section | figure | result | goal | met | measured |"


def result(title: str, rows: list[dict], measured: str | None = "2026-11-21 17:00") -> dict:
    record = {
        "title": title,
        "parts": [
            {"text": "Some text."},
            {"heading": "A table", "table": common.table(["a", "b"], [[1, "2 MiB"]])},
        ],
        "summary": rows,
    }
    return record if measured is None else {**record, "measured": measured, "minutes": 1.5, "quick": False}


def summary_lines(markdown: str) -> list[str]:
    table = markdown.split("## Summary")[1].split("\n## ")[0]
    return [line for line in table.splitlines() if line.startswith("| ")]


@pytest.fixture
def fake_sections(monkeypatch):
    """Three sections standing in for the real ones: `first` and `second` measure, `last` cannot measure here and
    has a placeholder; the list returned records the order they ran in. The matmul rates come without a child."""
    calls = []

    def section(name: str, placeholder: dict | None = None) -> SimpleNamespace:
        def measure(quick: bool, context: dict) -> dict | None:
            calls.append(name)
            assert context["matmul"]["float32"]["median_gflops"] == 100.0
            if placeholder is not None:
                return None
            return result(name.title(), [common.summary_row(f"{name} figure", "new", ">= 1x", True)], None)

        return SimpleNamespace(TITLE=name.title(), run=measure, PLACEHOLDER=placeholder)

    placeholder = result("Last", [common.summary_row("last figure", "no figures yet")], None)
    sections = {"first": section("first"), "second": section("second"), "last": section("last", placeholder)}
    monkeypatch.setattr(run, "SECTIONS", sections)
    monkeypatch.setattr(run, "PRELOAD", ["common"])
    monkeypatch.setattr(run, "set_threads", lambda: None)  # keep the tests' thread setting
    rate = {"size": 64, "median_gflops": 100.0, "max_gflops": 120.0, "runs": 1}
    monkeypatch.setattr(run, "run_isolated", lambda target, **kwargs: {"float32": rate, "bfloat16": rate})
    return calls


def test_results_round_trip_through_the_json_file(tmp_path):
    rows = [
        common.summary_row("speed against a peer", "2.00x (a | b)", ">= 2x", True),
        common.summary_row("a share", "92%"),
    ]
    data = {"machine": {"CPU": "test"}, "sections": {"quantizer": result("Quantizer", rows)}}
    run.write(tmp_path / "B.md", data)
    assert json.loads((tmp_path / "B.json").read_text()) == data
    assert run.load_sections(tmp_path / "B.json") == data["sections"]
    assert run.load_sections(tmp_path / "absent.json") == {}
    markdown = (tmp_path / "B.md").read_text()
    assert markdown == run.render({"machine": data["machine"], "sections": run.load_sections(tmp_path / "B.json")})
    assert "### A table\n\n| a | b |\n| --- | --- |\n| 1 | 2 MiB |" in markdown
    assert "*Measured 2026-11-21 17:00 UTC; the section took 1.5 min.*" in markdown
    assert "Some text." in markdown


def test_summary_table_comes_first_in_its_form():
    sections = {
        "quantizer": result("Q", [common.summary_row("speed", "2.5x", ">= 2x", True)]),
        "quality": result("U", [common.summary_row("usage", "87%", ">= 95%", False)], "2026-11-20 10:00"),
        "gpu": run.gpu.PLACEHOLDER,
    }
    markdown = run.render({"machine": {"CPU": "test"}, "sections": sections})
    assert markdown.index("## Summary") < markdown.index("## Q") < markdown.index("## U")
    assert summary_lines(markdown) == [
        SUMMARY_HEADER,
        "| --- | --- | --- | --- | --- | --- |",
        "| quantizer | speed | 2.5x | >= 2x | yes | 2026-11-21 17:00 |",
        "| quality | usage | 87% | >= 95% | **no** | 2026-11-20 10:00 |",
        "| gpu | GPU training step at 256x256, bf16, against diffusers | no GPU figures yet | - | - | - |",
    ]


def test_a_section_run_alone_keeps_the_others(tmp_path, fake_sections):
    output = tmp_path / "BENCHMARKS.md"
    kept = {
        "first": result(
            "First (kept)", [common.summary_row("first figure", "kept", ">= 2x", False)], "2026-11-20 10:00"
        ),
        "second": result("Second (old)", [common.summary_row("second figure", "old")], "2026-11-20 11:00"),
    }
    run.write(output, {"machine": {"CPU": "old"}, "sections": kept})
    run.main(["--sections", "second", "--output", str(output)])
    assert fake_sections == ["second"]
    data = json.loads(output.with_suffix(".json").read_text())
    assert list(data["sections"]) == ["first", "second", "last"]
    assert data["sections"]["first"] == kept["first"]
    new = data["sections"]["second"]
    assert new["title"] == "Second" and new["quick"] is False and new["measured"] != "2026-11-20 11:00"
    assert data["sections"]["last"] == run.SECTIONS["last"].PLACEHOLDER
    assert data["machine"]["float32 matmul"].startswith("100 GFLOP/s median, 120 best")
    markdown = output.read_text()
    assert markdown == run.render(data)
    assert summary_lines(markdown)[2:] == [
        "| first | first figure | kept | >= 2x | **no** | 2026-11-20 10:00 |",
        f"| second | second figure | new | >= 1x | yes | {new['measured']} |",
        "| last | last figure | no figures yet | - | - | - |",
    ]


def test_sections_run_in_declared_order_whatever_the_command(tmp_path, fake_sections):
    run.main(["--sections", "last", "second", "first", "--quick", "--output", str(tmp_path / "quick.md")])
    assert fake_sections == ["first", "second", "last"]
    data = json.loads((tmp_path / "quick.json").read_text())
    assert list(data["sections"]) == ["first", "second", "last"]
    assert data["sections"]["first"]["quick"] is True
    assert "with `--quick`" in (tmp_path / "quick.md").read_text()


def test_quick_without_output_prints_and_writes_nothing(tmp_path, fake_sections, capsys, monkeypatch):
    monkeypatch.setattr(run, "REPO_ROOT", tmp_path)
    run.main(["--sections", "first", "--quick"])
    assert SUMMARY_HEADER in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_real_sections_order_and_gpu_placeholder():
    # gpu initializes CUDA in the runner's process: every section that measures in child processes comes before it.
    assert list(run.SECTIONS)[-1] == "gpu"
    assert run.parse_args([]).sections == list(run.SECTIONS)
    if not torch.cuda.is_available():
        assert run.gpu.run(quick=True, context={}) is None
    assert run.merge({}, {})["gpu"] == run.gpu.PLACEHOLDER
    earlier = result("GPU", [common.summary_row("GPU step", "1.1x")])
    assert run.merge({}, {"gpu": earlier})["gpu"] == earlier
    assert list(run.merge({"gpu": earlier, "quantizer": earlier}, {})) == ["quantizer", "gpu"]


def test_isolated_child_runs_after_the_parent_computed_with_openmp_threads():
    """A child forked from a process whose OpenMP threads have run can hang (GNU OpenMP): `run_isolated` must not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for _ in range(3):
            torch.randn(512, 512) @ torch.randn(512, 512)
        rates = common.run_isolated("common:matmul_rates", timeout_s=120, size=64, repeats=1, dtypes=["float32"])
    finally:
        torch.set_num_threads(threads)
    assert rates["float32"]["size"] == 64 and rates["float32"]["median_gflops"] > 0
    with pytest.raises(RuntimeError, match="AttributeError"):
        common.run_isolated("common:matmul_rates", timeout_s=120, size=64, repeats=1, dtypes=["no_such_dtype"])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="pins children with os.sched_setaffinity (Linux)")
def test_children_per_core_each_on_a_core_of_its_own_results_in_order():
    cores = sorted(os.sched_getaffinity(0))
    calls = [{"tag": tag} for tag in range(2 * len(cores) + 1)]
    placed = common.run_isolated_per_core("common:placement", calls, timeout_s=120)
    assert [child["tag"] for child in placed] == list(range(len(calls)))
    for child in placed:
        assert len(child["cores"]) == 1 and child["cores"][0] in cores and child["threads"] == 1


def test_matmul_rates_halve_the_size_while_a_call_would_run_past_its_seconds():
    shrunk = common.matmul_rates(size=2048, repeats=1, dtypes=["float32"], seconds_per_call=1e-9)
    kept = common.matmul_rates(size=2048, repeats=1, dtypes=["float32"], seconds_per_call=1e9)
    assert shrunk["float32"]["size"] == 1024 and kept["float32"]["size"] == 2048
