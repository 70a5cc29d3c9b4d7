"""Timing helpers shared by the benchmarks in this folder.

Every figure the benchmarks print is a ratio of two things measured in the same
process, in interleaved repetitions (A, B, A, B, ... with the order rotated each
round), and summarised by the median: the machines these run on are shared, so
absolute times drift with other jobs while a ratio taken this way stays put.

Peak memory:
  * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
  * CPU tensors: the process's resident set size sampled in a thread every ~0.5 ms
    during the call, minus the RSS just before it (torch's CPU allocator has no
    statistics and ``tracemalloc`` does not see it). ``stable_malloc()`` restarts the
    process with a fixed glibc mmap threshold so that large freed blocks go back to
    the OS and the "RSS before" of the next call is not inflated by the previous one;
  * Python / NumPy objects: ``tracemalloc`` (``traced_peak``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from typing import Callable, Mapping, Optional, Sequence

from hf_mlcls.paths import atomic_path

__all__ = [
    "Fragment",
    "Table",
    "load_average",
    "ratios",
    "spread",
    "interleaved",
    "machine_line",
    "median",
    "rss_peak",
    "stable_malloc",
    "sync",
    "traced_peak",
]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def sync(device: str = "cpu") -> None:
    """Wait for queued device work (CUDA) before reading a clock."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    inner: int = 1,
    device: str = "cpu",
    budget_s: Optional[float] = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Time each callable ``repeats`` times, interleaved, after ``warmup`` untimed calls.

    Returns ``{name: [seconds per call, ...]}``; each sample is the mean of ``inner``
    back-to-back calls. The order of the contenders is rotated every round so that none
    always runs first (or right after the same neighbour). ``budget_s`` stops adding
    rounds once that much wall time is spent (at least 3 rounds are always taken).
    ``clock`` reads the time: wall time by default; ``time.process_time`` (CPU time of the
    process) leaves out the time other jobs on a busy machine hold the cores, which makes
    single-threaded CPU measurements far steadier (it would undercount work done on a GPU).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
        sync(device)
    out: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            sync(device)
            t0 = clock()
            for _ in range(inner):
                fns[name]()
            sync(device)
            out[name].append((clock() - t0) / inner)
        if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
            break
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak(fn: Callable[[], object], interval_s: float = 0.0005) -> float:
    """Peak RSS growth (bytes) while ``fn()`` runs, sampled from a thread.

    Linux only (reads /proc/self/statm); returns NaN elsewhere. A sampler can miss a
    peak shorter than its interval, so this is a lower bound, good to a few MB.
    """
    if not os.path.exists("/proc/self/statm"):
        fn()
        return float("nan")
    gc.collect()
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    return float(peak[0] - base)


def traced_peak(fn: Callable[[], object]) -> float:
    """Peak bytes allocated through Python's allocators (NumPy included) during ``fn()``."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return float(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def stable_malloc() -> None:
    """Re-run this script with a fixed glibc mmap threshold (once), so that RSS-based peak
    memory figures do not depend on what earlier measurements left in the heap."""
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def machine_line() -> str:
    import torch

    cores = os.cpu_count()
    try:
        load = "load average %.1f" % os.getloadavg()[0]
    except OSError:
        load = "load average n/a"
    gpu = ""
    if torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    return (
        f"{cores}-core {platform.machine()} CPU{gpu}, Python {platform.python_version()}, "
        f"torch {torch.__version__.split('+')[0]}, {load} at start (machine shared with other jobs)"
    )


class Table:
    """A Markdown table printed row by row (so a long run shows progress)."""

    def __init__(self, columns: Sequence[str], align: Optional[Sequence[str]] = None, sink: Optional[list] = None):
        self.columns = list(columns)
        self.align = list(align) if align is not None else ["l"] + ["r"] * (len(columns) - 1)
        self.rows: list[list[str]] = []
        self.sink = sink  # a list that also receives every printed line (a Fragment's)
        self._line("| " + " | ".join(self.columns) + " |")
        self._line("|" + "|".join("---:" if a == "r" else "---" for a in self.align) + "|")

    def _line(self, text: str) -> None:
        print(text, flush=True)
        if self.sink is not None:
            self.sink.append(text)

    def add(self, *cells: object) -> None:
        row = [_fmt(c) for c in cells]
        self.rows.append(row)
        self._line("| " + " | ".join(row) + " |")


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


# --------------------------------------------------------------------------- results for the docs


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``3.1 / 2.8 / 2.5``."""
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def ratios(times: Mapping[str, Sequence[float]], slow: str, fast: str) -> list[float]:
    """Per round, time(slow) / time(fast): how many times faster ``fast`` was in that round
    (the two were timed next to each other, so other jobs' load cancels in each ratio)."""
    return [a / b for a, b in zip(times[slow], times[fast])]


def spread(values: Sequence[float], fmt: str = "{:.2f}", suffix: str = "") -> str:
    """``median (min-max)`` of the rounds, e.g. ``5.3x (4.9-5.8)``."""
    lo, mid, hi = min(values), median(values), max(values)
    return f"{fmt.format(mid)}{suffix} ({fmt.format(lo)}-{fmt.format(hi)})"


class Fragment:
    """A benchmark's results as a Markdown fragment for ``docs/benchmarks.md``.

    The script adds lines (and :class:`Table` s) as it runs; :meth:`write` saves them to
    ``bench/results/<name>.md`` with the command, the machine and the load average at the
    start and at the end, and ``python bench/write_docs.py`` splices every fragment into the
    docs between its markers, so no figure in the docs is copied by hand.
    """

    def __init__(self, name: str):
        self.name = name
        self.command = "python bench/" + os.path.basename(sys.argv[0]) + "".join(" " + a for a in sys.argv[1:])
        self.load_start = load_average()
        self.machine = machine_line()
        self.lines: list[str] = []
        print(f"load average (1 / 5 / 15 min) at start: {self.load_start}", flush=True)

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def table(self, columns: Sequence[str], align: Optional[Sequence[str]] = None) -> "Table":
        table = Table(columns, align, sink=self.lines)
        return table

    @contextlib.contextmanager
    def capture(self):
        """Everything printed to stdout inside the block also goes into the fragment (for the
        scripts that report through ``print``); progress lines can go to stderr instead."""
        fragment = self

        class _Tee(io.TextIOBase):
            def __init__(self, stream):
                self.stream, self.pending = stream, ""

            def write(self, text: str) -> int:
                self.stream.write(text)
                self.pending += text
                *done, self.pending = self.pending.split("\n")
                fragment.lines.extend(done)
                return len(text)

            def flush(self) -> None:
                self.stream.flush()

        tee = _Tee(sys.stdout)
        with contextlib.redirect_stdout(tee):
            try:
                yield self
            finally:
                if tee.pending:
                    fragment.lines.append(tee.pending)
                    tee.pending = ""

    def add_verdicts(self, verdicts: Sequence[str]) -> None:
        """A blank line, then one bullet per verdict line (target met or not, with its figure)."""
        self.add()
        for line in verdicts:
            self.add(f"- {line}")

    def write(self, folder: Optional[str] = None) -> str:
        folder = folder or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(folder, exist_ok=True)
        self.load_end = load_end = load_average()
        print(f"load average (1 / 5 / 15 min) at end: {load_end}", flush=True)
        head = [
            f"Written by `{self.command}`.",
            f"Machine: {self.machine.replace(' at start (machine shared with other jobs)', '')}; shared with other "
            f"jobs: load average (1 / 5 / 15 min) {self.load_start} at the start, {load_end} at the end.",
            "",
        ]
        path = os.path.join(folder, f"{self.name}.md")
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write("\n".join(head + self.lines).rstrip() + "\n")
        print(f"wrote {path}; run `python bench/write_docs.py` to put it in docs/benchmarks.md", flush=True)
        return path
