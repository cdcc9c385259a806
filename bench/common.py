"""Helpers shared by the benchmark sections: threads, interleaved timing, peak memory, isolated child processes,
machine facts and the pieces of a section's result (tables and summary rows)."""

from __future__ import annotations

import concurrent.futures
import ctypes
import datetime
import gc
import importlib
import multiprocessing
import os
import platform
import queue
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# GNU OpenMP's thread pool does not survive fork(): a child forked from a process that has already computed can hang
# at its first parallel region. Measuring children therefore come from a fork server, a fresh interpreter that
# imports (`set_forkserver_preload`) but never computes; where there is no fork server, from a new interpreter.
CONTEXT = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


def core_count() -> int:
    """Cores this process may run on (the affinity mask, which a container may narrow below `os.cpu_count()`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads() -> None:
    """Set torch's intra-op threads to the core count explicitly: every measurement runs under this setting."""
    import torch

    torch.set_num_threads(core_count())


@dataclass
class Timing:
    """Wall-clock seconds of the measured calls (warm-up excluded)."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def runs(self) -> int:
        return len(self.times)

    def cell(self) -> str:
        """`median (min-max)` in seconds, with a precision that suits the magnitude."""
        digits = 3 if self.median >= 0.01 else 4
        return f"{self.median:.{digits}f} ({min(self.times):.{digits}f}-{max(self.times):.{digits}f})"


def time_interleaved(
    functions: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1, budget_s: float | None = None
) -> dict[str, Timing]:
    """`warmup` calls of each function, then `repeats` rounds calling each once, so that all of them run under the
    same background load. `budget_s` stops after the first round that ends past it (one round always runs)."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    start = time.perf_counter()
    for _ in range(repeats):
        for name, function in functions.items():
            gc.collect()
            begin = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - begin)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return {name: Timing(values) for name, values in times.items()}


def minor_page_faults() -> int:
    """Minor page faults of this process so far (first touches of freshly mapped memory, among others)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_rss_above_baseline(function: Callable[[], object], warmup: int = 1) -> dict:
    """Resident memory one call of `function` adds at its peak, in bytes (Linux); call it in a fresh process.

    After the warm-up, glibc's free memory goes back to the kernel (`malloc_trim`, else reused blocks would not
    show) and the kernel's high-water mark is reset to the current RSS (`clear_refs`); the peak is
    `VmHWM - VmRSS(before)`. The kernel updates the mark on every page it maps, so no short-lived peak is missed.
    """
    for _ in range(warmup):
        function()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    baseline = _status_kib("VmRSS")
    result = function()
    peak = _status_kib("VmHWM")
    del result
    return {"peak_bytes": max(0, peak - baseline) * 1024}


def _child(target: str, kwargs: dict, connection, core: int | None = None) -> None:
    """A measuring child: runs `module:function(**kwargs)` (a module of `bench/`), sends the result or the error.
    With `core`, it runs on that core alone (and so with one torch thread)."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    set_threads()  # a fork server's child does not inherit the runner's setting
    module_name, function_name = target.split(":")
    try:
        message = {"result": getattr(importlib.import_module(module_name), function_name)(**kwargs)}
    except BaseException:  # noqa: B036 - reported to the parent, whatever it is
        message = {"error": traceback.format_exc()}
    connection.send(message)
    connection.close()


def run_isolated(target: str, timeout_s: float = 900, core: int | None = None, **kwargs):
    """Run `module:function(**kwargs)`, a module of `bench/`, in a fresh child process (see `CONTEXT`) and return
    its result: no measurement inherits another's allocations, and none can hang on the runner's OpenMP state.
    `core` pins the child to that one core."""
    sys.stdout.flush()
    sys.stderr.flush()
    receiver, sender = CONTEXT.Pipe(duplex=False)
    process = CONTEXT.Process(target=_child, args=(target, kwargs, sender, core), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            raise TimeoutError(f"benchmark worker {target}({kwargs}) ran past {timeout_s} s")
        message = receiver.recv()
    except EOFError:  # the child died without a word
        message = {}
    finally:
        process.join()
        receiver.close()
    if "result" not in message:
        detail = message.get("error", f"no result (exit code {process.exitcode})")
        raise RuntimeError(f"benchmark worker {target}({kwargs}) failed:\n{detail}")
    return message["result"]


def run_isolated_per_core(target: str, calls: Sequence[dict], timeout_s: float = 900) -> list:
    """`run_isolated(target, **call)` for each of `calls`, as many at once as there are cores, each child pinned to a
    core of its own (one torch thread): for runs whose results do not depend on time (training runs compared by
    quality), never for timings. Results in the order of `calls`."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
    free: queue.Queue = queue.Queue()
    for core in cores:
        free.put(core)

    def call(kwargs: dict):
        core = free.get()
        try:
            return run_isolated(target, timeout_s=timeout_s, core=core, **kwargs)
        finally:
            free.put(core)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(cores)) as pool:
        return list(pool.map(call, calls))


def placement(tag: object = None) -> dict:
    """Where a child runs: its cores and torch threads (and `tag` back, to tell calls apart)."""
    import torch

    return {"tag": tag, "cores": sorted(os.sched_getaffinity(0)), "threads": torch.get_num_threads()}


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def machine_info() -> dict[str, str]:
    """Facts a reader needs to compare the tables with their own machine."""
    import torch

    cpuinfo = {}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as file:
            for line in file:
                key, _, value = line.partition(":")
                cpuinfo.setdefault(key.strip(), value.strip())
    flags = cpuinfo.get("flags", "").split()
    isa = ", ".join(flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags) or "-"
    versions = {}
    for name in ("diffusers", "transformers"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return {
        "date (UTC)": utc_now(),
        "CPU": f"{cpuinfo.get('model name') or platform.processor() or 'unknown'} ({isa})",
        "cores": f"{core_count()} usable (os.cpu_count() = {os.cpu_count()})",
        "torch threads": f"{torch.get_num_threads()} (set explicitly with torch.set_num_threads)",
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        **versions,
    }


def matmul_rates(
    size: int = 4096,
    repeats: int = 5,
    device: str = "cpu",
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    seconds_per_call: float | None = None,
) -> dict:
    """GFLOP/s of a `size`^3 matmul per dtype on `device`: median and best of `repeats` interleaved runs.

    With `seconds_per_call`, `size` is halved (down to 1,024) while a call of the slowest dtype would take longer, as
    estimated from a 1,024^3 probe: without a fast bfloat16 unit, 6 runs of a 4,096^3 bfloat16 matmul take ~14 min."""
    import torch

    cuda = torch.device(device).type == "cuda"

    def matmul(dtype: str, n: int) -> Callable[[], None]:
        generator = torch.Generator().manual_seed(0)
        x, y = (torch.randn(n, n, generator=generator).to(device, getattr(torch, dtype)) for _ in range(2))
        out = torch.empty_like(x)

        def call() -> None:
            torch.mm(x, y, out=out)
            if cuda:
                torch.cuda.synchronize()

        return call

    if seconds_per_call is not None:
        smallest = 1024  # the probe's size, and the smallest measured
        probe = time_interleaved({dtype: matmul(dtype, smallest) for dtype in dtypes}, repeats=1)
        slowest = max(t.median for t in probe.values())
        while size > smallest and slowest * (size / smallest) ** 3 > seconds_per_call:
            size //= 2
    timings = time_interleaved({dtype: matmul(dtype, size) for dtype in dtypes}, repeats)
    flops = 2 * size**3
    return {
        dtype: {"size": size, "median_gflops": flops / t.median / 1e9, "max_gflops": flops / min(t.times) / 1e9,
                "runs": t.runs}
        for dtype, t in timings.items()
    }  # fmt: skip


def format_bytes(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.2f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.1f} MiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> dict:
    """A table of a section's result; cells are converted with `str`."""
    return {"headers": list(headers), "rows": [[str(cell) for cell in row] for row in rows]}


def summary_row(figure: str, result: str, goal: str | None = None, met: bool | None = None) -> dict:
    """One row of the summary table: what was measured, the result, the goal set for it (if any) and whether the
    run met it."""
    return {"figure": figure, "result": result, "goal": goal, "met": met}
