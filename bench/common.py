"""Helpers shared by every section of the benchmark runner: timing, peak memory, tables, machine info.

The machine that runs these benchmarks is small and shared (2 CPU cores, other jobs running), so absolute times move
from run to run. Every figure is therefore paired with a peer measured in the same process, interleaved round by round
(`time_interleaved`), and the tables report ratios as well as seconds.

Measurements run in child processes (`run_isolated`), forked on Linux by a fork server that the runner starts
before it computes anything (`start_fork_server`). Where there is no fork, this file is the worker's entry point:
`python bench/common.py module:function '{json kwargs}'` prints the JSON result on a line starting with
`RESULT_PREFIX`.
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import importlib
import json
import multiprocessing
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULT_PREFIX = "BENCH_RESULT "
MIB = 2**20


def core_count() -> int:
    """Cores this process may run on (the affinity mask, which a container may narrow below `os.cpu_count()`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads() -> int:
    """Pin torch's intra-op threads to the core count, explicitly: every section reports under this setting."""
    import torch

    threads = core_count()
    torch.set_num_threads(threads)
    return threads


# ----- timing -----


@dataclass
class Timing:
    """Wall-clock seconds of the measured runs (the warm-up run excluded).

    `background_cores`: cores that other processes kept busy on average meanwhile (see `BackgroundLoad`).
    """

    times: list[float]
    background_cores: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def runs(self) -> int:
        return len(self.times)

    def cell(self) -> str:
        """`median (min-max)` in seconds, with a precision that suits the magnitude."""
        digits = 3 if self.median >= 0.01 else 4
        return f"{self.median:.{digits}f} ({self.min:.{digits}f}-{self.max:.{digits}f})"


class BackgroundLoad:
    """Cores that other processes kept busy while the `with` block ran: the machine's busy CPU time from
    `/proc/stat` minus this process's own (its threads included), divided by the wall time.

    Load matters more than its share suggests: with every core running one of our OpenMP threads, a thread
    descheduled for another process holds the others at the next barrier, so code with many short parallel regions
    (small chunks) slows down far more than code with few long ones.
    """

    def __enter__(self) -> BackgroundLoad:
        self.cores: float | None = None
        self._start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, own = (now - then for now, then in zip(self._now(), self._start, strict=True))
        if wall > 0 and busy == busy:  # busy is NaN without /proc/stat
            self.cores = max(0.0, (busy - own) / wall)

    def _now(self) -> tuple[float, float, float]:
        return time.perf_counter(), self._machine_busy_s(), self._own_cpu_s()

    @staticmethod
    def _own_cpu_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    @staticmethod
    def _machine_busy_s() -> float:
        try:
            with open("/proc/stat") as stat:
                fields = [int(value) for value in stat.readline().split()[1:]]
        except OSError:
            return float("nan")
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy = sum(fields[:3]) + sum(fields[5:8])
        return busy / os.sysconf("SC_CLK_TCK")


def time_interleaved(
    functions: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1, budget_s: float | None = None
) -> dict[str, Timing]:
    """Time several functions against each other: `warmup` calls each, then `repeats` rounds calling each once.

    Interleaving puts every function under the same background load; timing one function five times and then the
    next would hand one of them a quiet minute and the other a busy one. `budget_s` stops after the first round that
    ends past the budget (at least one measured round always runs), so a case too slow to repeat reports fewer runs
    rather than blowing the section's time limit; the tables show the run count.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    start = time.perf_counter()
    with BackgroundLoad() as load:
        for _ in range(repeats):
            for name, function in functions.items():
                gc.collect()
                begin = time.perf_counter()
                function()
                times[name].append(time.perf_counter() - begin)
            if budget_s is not None and time.perf_counter() - start > budget_s:
                break
    return {name: Timing(values, load.cores) for name, values in times.items()}


def minor_page_faults() -> int:
    """Minor page faults of this process so far (first touches of freshly mapped memory, among others)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ----- memory -----


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} field")


def reset_peak_rss() -> None:
    """Reset the kernel's resident-set high-water mark (VmHWM) of this process to its current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def release_free_heap() -> None:
    """Hand the C allocator's free memory back to the kernel (glibc `malloc_trim(0)`; a no-op elsewhere).

    glibc keeps freed blocks below its mmap threshold (which adapts up to 32 MiB) resident for reuse; a call that
    reuses them adds nothing to RSS, so without this a warm-up call would hide part of the measured call's peak.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_above_baseline(function: Callable[[], object], warmup: int = 1) -> dict:
    """Peak resident memory that one call of `function` adds, in bytes.

    Call it in a fresh process (`run_isolated`) after the inputs exist. The warm-up call absorbs one-time costs (thread
    pools, kernel caches); the allocator's free memory goes back to the kernel (`release_free_heap`), the kernel's
    high-water mark is reset to the current RSS, the function runs once, and the peak is `VmHWM - VmRSS(before)`.
    The kernel tracks the high-water mark on every page it maps, so short-lived peaks count: unlike sampling RSS from
    a thread, nothing can slip between two samples. A fresh process keeps other methods' allocations out.
    """
    result = None
    for _ in range(warmup):
        result = function()
    del result
    gc.collect()
    release_free_heap()
    reset_peak_rss()
    baseline = _status_kib("VmRSS")
    result = function()
    peak = _status_kib("VmHWM")
    del result
    return {"peak_bytes": max(0, peak - baseline) * 1024, "baseline_bytes": baseline * 1024}


def call_target(target: str, kwargs: dict) -> dict:
    """Call `module:function(**kwargs)`, `module` being a module of `bench/`."""
    module_name, function_name = target.split(":")
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return getattr(importlib.import_module(module_name), function_name)(**kwargs)


def start_fork_server(modules: Sequence[str]) -> None:
    """Start the process that forks every measuring child, with `modules` imported: call before any computation.

    The server is a fresh interpreter that imports and never computes, so a child forked from it starts with torch
    (and the preloaded modules) imported, ~5 s that a new interpreter would pay per measurement, with none of an
    earlier measurement's allocations, and with no OpenMP thread pool: GNU OpenMP's pool does not survive a fork, and
    a child forked from a process that has computed can hang at its first parallel region (seen: a training run
    stuck at its first step, forked from the runner after the peers section's in-process timings).
    """
    if not hasattr(os, "fork"):
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["common", *modules])
    forkserver.ensure_running()


def _child_main(target: str, kwargs: dict, connection) -> None:
    """A measuring child's body: the result or the traceback, sent to the parent through `connection`."""
    set_threads()  # as in the runner: a fork server's child does not inherit the runner's setting
    try:
        message = {"result": call_target(target, kwargs)}
    except BaseException:  # noqa: B036 - reported to the parent, whatever it is
        message = {"error": traceback.format_exc()}
    connection.send(json.dumps(message))
    connection.close()


def run_isolated(target: str, timeout_s: float = 900, **kwargs) -> dict:
    """Run `module:function(**kwargs)` (a module of `bench/`) in a child process and return its JSON-able result.

    On Linux the child is forked by the fork server (`start_fork_server`; started here with nothing preloaded if
    the runner has not started it). Elsewhere it is a new interpreter.
    """
    if not hasattr(os, "fork"):
        return _run_in_new_interpreter(target, kwargs, timeout_s)
    sys.stdout.flush()
    sys.stderr.flush()
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(target, kwargs, sender), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise TimeoutError(f"benchmark worker {target}({kwargs}) ran past {timeout_s} s")
        message = json.loads(receiver.recv())
    except EOFError:  # the child died without a word
        message = {}
    finally:
        process.join()
        receiver.close()
    if "result" not in message:
        detail = message.get("error", f"no result (exit code {process.exitcode})")
        raise RuntimeError(f"benchmark worker {target}({kwargs}) failed:\n{detail}")
    return message["result"]


def _run_in_new_interpreter(target: str, kwargs: dict, timeout_s: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), target, json.dumps(kwargs)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker {target}({kwargs}) failed with exit code {completed.returncode}:\n"
            f"{completed.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


# ----- the machine -----


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def memory_total_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def package_version(name: str) -> str:
    try:
        return importlib.import_module(name).__version__
    except ImportError:
        return "not installed"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def machine_info() -> dict[str, str]:
    """Facts a reader needs to compare a table with their own machine."""
    import torch

    flags = cpu_flags()
    isa = ", ".join(flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags) or "-"
    return {
        "date (UTC)": utc_now(),
        "CPU": f"{cpu_model()} ({isa})",
        "cores": f"{core_count()} usable (os.cpu_count() = {os.cpu_count()})",
        "torch threads": f"{torch.get_num_threads()} (set explicitly with torch.set_num_threads)",
        "memory": f"{memory_total_gib():.1f} GiB",
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": package_version("diffusers"),
        "transformers": package_version("transformers"),
    }


def matmul_rates(
    size: int = 4096, repeats: int = 5, device: str = "cpu", dtypes: Sequence[str] = ("float32", "bfloat16")
) -> dict:
    """GFLOP/s of a `size`^3 matmul (2 size^3 flops) per dtype on `device`: median and best of `repeats` runs.

    After a warm-up; the dtypes are interleaved like every comparison here. On a GPU every call waits for the device.
    """
    import torch

    set_threads()
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    operands = {name: (a.to(device, getattr(torch, name)), b.to(device, getattr(torch, name))) for name in dtypes}
    outs = {name: torch.empty_like(x) for name, (x, _) in operands.items()}
    cuda = torch.device(device).type == "cuda"

    def matmul(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
        torch.mm(x, y, out=out)
        if cuda:
            torch.cuda.synchronize()

    timings = time_interleaved(
        {name: (lambda x=x, y=y, o=outs[name]: matmul(x, y, o)) for name, (x, y) in operands.items()}, repeats
    )
    flops = 2 * size**3
    return {
        name: {
            "size": size,
            "median_gflops": flops / timing.median / 1e9,
            "max_gflops": flops / timing.min / 1e9,
            "runs": timing.runs,
        }
        for name, timing in timings.items()
    }


# ----- markdown -----


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; cells are converted with `str`."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ----- the summary table -----

SUMMARY_PATTERN = re.compile(r"<!-- summary: (.*?) -->")


def summary_row(figure: str, result: str, goal: str | None = None, met: bool | None = None) -> dict:
    """One line of the summary table at the top of BENCHMARKS.md: what was measured, the figure (against its peer),
    the goal the issues set (None: none was set) and whether this run met it."""
    return {"figure": figure, "result": result, "goal": goal, "met": met}


def summary_comment(rows: Sequence[dict]) -> str:
    """The section's summary rows as an HTML comment inside its block: invisible on the page, and kept with the
    block, so that a section not re-measured in a run still feeds the summary with its own figures."""
    return f"<!-- summary: {json.dumps(list(rows))} -->"


def summary_rows(block: str) -> list[dict]:
    """The rows `summary_comment` stored in a section's block (none in a block written before summaries existed)."""
    return [row for match in SUMMARY_PATTERN.findall(block) for row in json.loads(match)]


def format_bytes(num_bytes: float) -> str:
    if num_bytes >= 2**30:
        return f"{num_bytes / 2**30:.2f} GiB"
    return f"{num_bytes / MIB:.1f} MiB"


def _worker_main(argv: list[str]) -> None:
    target, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    print(RESULT_PREFIX + json.dumps(call_target(target, kwargs)), flush=True)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
