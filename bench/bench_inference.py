"""The library's fast CPU inference path, and other candidates, against the plain eager forward,
at batch 2, fp32, on this CPU.

    nice python bench/bench_inference.py                        # q2l-r101-448 and mldecoder-tresnetl-448 (~4 min)
    nice python bench/bench_inference.py --compile              # also torch.compile(freezing) (+5 min per model)

"Official forward" is our model in plain eager fp32 under ``torch.no_grad`` (equal to the
official code's logits within 1e-4, per the converter parity tests); random weights (the cost
does not depend on them). Candidates, each on its own copy of the model:

* ``channels_last``: model and input in channels-last memory format, ``torch.inference_mode``;
* ``jit freeze``: ``torch.jit.trace`` of the forward, ``torch.jit.freeze`` (which folds batch
  norms into the convolutions) and ``torch.jit.optimize_for_inference`` (oneDNN weight
  prepacking); build time reported apart;
* ``hf_mlcls fast path (default)``: ``hf_mlcls.models.fast_cpu.fast_model``, what the pipeline,
  ``predict`` and the Space run on the CPU: convolutions with their batch norms folded in,
  activations and residual adds fused, run by oneDNN on weights reordered for the input size, on
  channels-last activations; linears and attention projections by oneDNN; no tracing; its first two
  calls (the copy; the weights reordered on the second call at a size) are reported as its build time;
* ``fast path, no Winograd``: the same copy with ``HF_MLCLS_FAST_CPU_WINOGRAD=0`` (every
  convolution on oneDNN's direct kernel): what the Winograd convolutions add;
* ``compile (freezing)``, with ``--compile``: ``torch.compile`` with inductor's ``freezing``
  (constant folding, batch norms folded, prepacked weights); compile time reported apart; where it
  fails to compile (Query2Label here: a view of an expanded tensor), the results say why.

Timing: each preset in a fresh process of its own (a model measured after another in one process
runs at what the first left in the C allocator: ``measure``), there interleaved rounds (eager,
candidate, ... the order rotated every round), at least 5 rounds, each call timed once; the
speed-up is eager's time over the candidate's in the same round, median with min-max. One torch thread and the process's CPU time by default (both
sides single-threaded, so CPU time leaves out the time other jobs hold the cores; ``--clock wall``
and ``--threads`` to change). Every candidate's logits are compared with eager's (max abs
difference, over every call). Each model's multiply-adds per call are counted with
``torch.utils.flop_counter``, so every row also gives its arithmetic rate (GMAC/s), set against
the best rate measured here for one large fp32 product (a GEMM and a 3x3 convolution by oneDNN,
same clock and threads): what a speed-up would require of the hardware. Results go to bench/results/inference.md for
``python bench/write_docs.py``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import datetime
import multiprocessing
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, interleaved, median, spread  # noqa: E402
from hf_mlcls.models import fast_cpu  # noqa: E402
from hf_mlcls.paths import atomic_path  # noqa: E402
from hf_mlcls.presets import create_model  # noqa: E402

PRESETS = ["q2l-r101-448", "mldecoder-tresnetl-448"]
HISTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "inference-runs.md")
HISTORY_HEAD = """Appended by every run of `python bench/bench_inference.py`, one row per model and run, oldest first:
the default fast path against the eager forward (the official forward) in the same run; commit with
`+` where the library's source differed from it.

| date (UTC) | commit | batch, threads, clock | load average (1 min) at start / end | preset | eager s | fast path s | speed-up (min-max) |
|---|---|---|---|---|---:|---:|---:|
"""
TARGET = 1.3
FAST = "hf_mlcls fast path (default)"


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values, return_dict=False)[0]


@contextlib.contextmanager
def direct_kernels():
    """Fast-path convolutions built inside run on oneDNN's direct kernel (no Winograd); the
    variable is put back as it was."""
    before = os.environ.get("HF_MLCLS_FAST_CPU_WINOGRAD")
    os.environ["HF_MLCLS_FAST_CPU_WINOGRAD"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["HF_MLCLS_FAST_CPU_WINOGRAD"]
        else:
            os.environ["HF_MLCLS_FAST_CPU_WINOGRAD"] = before


def candidates(model, x, use_compile: bool) -> tuple[dict, dict, dict]:
    """name -> callable returning logits; name -> build seconds; name -> why it failed to build."""
    out, build, failed = {}, {}, {}

    def add(name, make, grad_mode=torch.no_grad, timed_build=True, may_fail=False):
        """``make()`` builds the candidate (timed, warnings off) and returns its zero-argument forward."""
        t0 = time.perf_counter()
        try:
            with grad_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forward = make()
                forward()  # first call: tracing, profiling, compiling
        except Exception as exc:  # noqa: BLE001 - reported in the results, not hidden
            if not may_fail:
                raise
            lines = str(exc).strip().splitlines() or [""]
            failed[name] = next((line for line in lines if "Error:" in line), f"{type(exc).__name__}: {lines[0]}")[:160]
            return
        if timed_build:
            build[name] = time.perf_counter() - t0

        def call():
            with grad_mode():
                return forward()

        out[name] = call

    def channels_last():
        cl, x_cl = copy.deepcopy(model).to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        return lambda: cl(pixel_values=x_cl).logits

    def jit_freeze():
        traced = torch.jit.trace(_Logits(copy.deepcopy(model)).eval(), x, check_trace=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        return lambda: frozen(x)

    def library_fast_path():  # built and called twice: weights are reordered the second time a size comes
        fast_cpu.forget(model)
        fast_cpu.fast_model(model)(pixel_values=x)
        return lambda: fast_cpu.fast_model(model)(pixel_values=x).logits

    def direct_only():  # the same copy with every convolution on oneDNN's direct kernel
        with direct_kernels():
            copied = fast_cpu.fast_copy(model)
        copied(pixel_values=x)
        return lambda: copied(pixel_values=x).logits

    def compiled():
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        forward = torch.compile(_Logits(copy.deepcopy(model)).eval())
        return lambda: forward(x)

    add("channels_last", channels_last, torch.inference_mode, timed_build=False)
    add("jit freeze", jit_freeze)
    add(FAST, library_fast_path)
    add("fast path, no Winograd", direct_only)
    if use_compile:  # inductor's freezing fails on some models: said in the results
        add("compile (freezing)", compiled, may_fail=True)
    return out, build, failed


def multiply_adds(model, x) -> float:
    """Multiply-adds of one forward on ``x`` (torch.utils.flop_counter counts 2 flops per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).requires_grad_(False)
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=x)
    return counter.get_total_flops() / 2


def peak_rate(clock, rounds: int) -> float:
    """The best of two median GMAC/s: one large fp32 product (392 x 2048 by 2048 x 8192, a Query2Label
    feed-forward layer at 448 px, batch 2) and one 3x3 convolution (256 to 256 channels on a 28 x 28
    map, batch 2, channels-last, a TResNet-L layer-3 convolution at 448 px, direct kernel), both by oneDNN: the best
    sustained arithmetic rate measured here."""
    torch.manual_seed(0)
    x, w, b = torch.randn(392, 2048), torch.randn(8192, 2048) * 0.02, torch.zeros(8192)
    linear = fast_cpu.OneDNNLinear(w, b)
    with direct_kernels():  # its multiply-adds are the ones counted
        conv = fast_cpu.FusedConv2d(torch.nn.Conv2d(256, 256, 3, padding=1, bias=False))
    image = torch.randn(2, 256, 28, 28).contiguous(memory_format=torch.channels_last)
    best = 0.0
    for layer, inputs, macs in ((linear, x, 392 * 2048 * 8192), (conv, image, 2 * 28 * 28 * 256 * 256 * 9)):
        rates = []
        with torch.inference_mode():
            layer(inputs)
            layer(inputs)  # the second call at a size reorders the weights
            for _ in range(rounds):
                t0 = clock()
                layer(inputs)
                rates.append(macs / (clock() - t0) / 1e9)
        best = max(best, median(rates))
    return best


def _commit() -> str:
    """The checkout's commit, with ``+`` where src/ has uncommitted changes; ``unknown`` without git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def record_runs(rows: list[str]) -> None:
    """Append this run's rows to the history of runs (bench/results/inference-runs.md), written whole."""
    text = HISTORY_HEAD
    if os.path.exists(HISTORY):
        with open(HISTORY, encoding="utf-8") as fh:
            text = fh.read()
    text = text.rstrip("\n") + "\n" + "".join(row + "\n" for row in rows)
    with atomic_path(HISTORY) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"appended {len(rows)} rows to {HISTORY}", flush=True)


def measure(preset: str, batch: int, rounds: int, threads: int, clock: Callable[[], float], use_compile: bool,
            peak: float) -> tuple[list[tuple], list[str], tuple]:
    """One preset's rows, verdicts and history entry, measured in the process that calls it.

    main() calls it in a fresh process per preset: with both presets in one process, the second
    one's figures depend on what the first left in the C allocator (on two threads, TResNet-L-448
    measured after Query2Label R101-448 came out at 1.28-1.29x in three runs, in a process of its
    own at 1.34-1.41x in four: docs/benchmarks.md), and a user's process runs one model."""
    torch.set_num_threads(threads)  # a fresh process starts with all cores
    torch.manual_seed(0)
    model = create_model(preset).eval()
    size = model.config.image_size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(pixel_values=x).logits
    macs = multiply_adds(model, x)
    fns, build, failed = candidates(model, x, use_compile)
    diffs = {name: 0.0 for name in fns}

    def checked(name, fn):
        def call():
            diffs[name] = max(diffs[name], float((fn() - reference).abs().max()))
        return call

    def eager():
        with torch.no_grad():
            return model(pixel_values=x).logits

    timed = {"eager": eager}
    timed.update({name: checked(name, fn) for name, fn in fns.items()})
    times = interleaved(timed, repeats=rounds, warmup=1, clock=clock)
    eager_s = median(times["eager"])
    rows = [(preset, "eager fp32 NCHW (official forward)", spread(times["eager"], "{:.2f}"), "1.00x",
             f"{macs / eager_s / 1e9:.1f}", "", "")]
    ratios = {}
    for name in fns:
        ratios[name] = ratio = [e / c for e, c in zip(times["eager"], times[name])]
        rows.append((preset, name, spread(times[name], "{:.2f}"), spread(ratio, "{:.2f}", "x"),
                     f"{macs / median(times[name]) / 1e9:.1f}", f"{diffs[name]:.1e}",
                     f"{build[name]:.2f}" if name in build else ""))
    verdicts = [f"{preset}: `{name}` failed to build ({why})" for name, why in failed.items()]
    fast = ratios[FAST]
    verdicts.append(f"{preset}: the default fast path at {median(fast):.2f}x (rounds {min(fast):.2f}-{max(fast):.2f}), "
                    f"logits within {diffs[FAST]:.1e} of eager; target >= {TARGET}x "
                    f"{'met' if median(fast) >= TARGET else 'NOT met'}; {macs / 1e9:.1f} GMAC per call, "
                    f"so {TARGET}x needs {TARGET * macs / eager_s / 1e9:.1f} GMAC/s over the whole forward, "
                    f"{100 * TARGET * macs / eager_s / 1e9 / peak:.0f}% of the best rate measured")
    runs = (preset, spread(times["eager"], "{:.2f}"), spread(times[FAST], "{:.2f}"), spread(fast, "{:.2f}", "x"))
    return rows, verdicts, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=PRESETS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="also torch.compile with freezing (minutes per model)")
    parser.add_argument("--results", default="inference",
                        help="name of the results fragment: bench/results/NAME.md, for python bench/write_docs.py")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds: at least 5")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    report = Fragment(args.results)
    report.add(f"Batch {args.batch}, fp32, random weights; {args.threads} torch thread(s), {args.clock} time; "
               f"each preset in a process of its own, {args.rounds} interleaved rounds there; each cell the median "
               "with the min-max over the rounds, the speed-up taken round by round.")
    report.add()
    peak = peak_rate(clock, max(args.rounds, 7))
    report.add(f"Best sustained fp32 rate measured here: {peak:.1f} GMAC/s (the better of one 392 x 2048 by 2048 x 8192 "
               "product and one 3x3 convolution, 256 channels on 28 x 28, batch 2, by oneDNN, median of rounds); "
               "GMAC/s below is each forward's multiply-adds over its time.")
    report.add()
    table = report.table(["preset", "forward", "s per call", "speed-up vs eager", "GMAC/s", "max abs diff vs eager",
                          "build s"], ["l", "l", "r", "r", "r", "r", "r"])
    verdicts, history = [], []
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    spawn = multiprocessing.get_context("spawn")
    for preset in args.presets:  # each in a fresh process: see measure()
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            rows, found, runs = pool.submit(measure, preset, args.batch, args.rounds, args.threads, clock,
                                            args.compile, peak).result()
        for row in rows:
            table.add(*row)
        verdicts.extend(found)
        history.append(runs)

    report.add_verdicts(verdicts)
    report.write()
    load = f"{report.load_start.split(' / ')[0]} / {report.load_end.split(' / ')[0]}"  # the 1-minute averages
    run = f"| {started} | {_commit()} | {args.batch}, {args.threads}, {args.clock} | {load} |"
    record_runs([f"{run} {preset} | {eager_s} | {fast_s} | {speedup} |" for preset, eager_s, fast_s, speedup in history])


if __name__ == "__main__":
    main()
