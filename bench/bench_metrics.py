"""Time hf_mlcls.metrics against per-class NumPy versions of the two official mAP definitions.

    python bench/bench_metrics.py           # both sizes (a few minutes on 2 cores)
    python bench/bench_metrics.py --quick   # the COCO-sized case only

References (bench/_reference_metrics.py): `mAP` against the official ASL steps looped over
the classes (as its `mAP()` does); `mAP vs a lean loop` against a leaner per-class loop
(one stable sort and one cumsum per class), for scale; `mAP_voc` against Query2Label's
per-sample steps.

Cases, with a fixed seed:
  * 40,137 x 80: COCO val as ML-Decoder loads it; 2.9 positives per image (3.6 %).
  * 20,000 x 9,605: OpenImages-sized; about 10 positives per image (0.1 %).
Scores are float32, per class a random permutation of N distinct values: no ties, so the
official code's default (unstable) argsort gives a well-defined order and both sides must
agree exactly. Every class gets at least one positive (the official code has no notion of
a skipped class).

Timing: for each metric, ours and the reference run in interleaved rounds in this one
process (ours, reference, reference, ours, ... the order rotated every round), at least 5
rounds, the same number of calls on both sides; each round gives one ratio (reference time /
ours), and the table shows the median with the min-max over the rounds. Outputs are compared
on every call (max abs difference over all classes and rounds). Both sides are
single-threaded NumPy, timed by default in the process's CPU time (``--clock cpu``): on a
machine shared with other jobs a wall-clock round also counts the time slices the others
held, which swamps the ratio; ``--clock wall`` times wall clock. The load average is printed
before and after, and the results go to bench/results/metrics.md for
``python bench/write_docs.py``.
"""

import argparse
import os
import sys
import time
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, interleaved, median, spread  # noqa: E402
from _reference_metrics import asl_ap_per_class, lean_ap_per_class, voc_ap_per_class  # noqa: E402

from hf_mlcls.metrics import average_precision, compute  # noqa: E402


def make_case(n: int, c: int, density: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ranks = np.empty((c, n), dtype=np.uint16 if n < 1 << 16 else np.uint32)
    ranks[:] = np.arange(n, dtype=ranks.dtype)
    rng.permuted(ranks, axis=1, out=ranks)  # one random permutation of the samples per class
    scores = np.empty((n, c), dtype=np.float32)
    for start in range(0, c, 1024):
        scores[:, start : start + 1024] = ranks[start : start + 1024].T
    del ranks
    scores *= np.float32(1.0 / n)  # distinct values k / n in [0, 1)
    targets = (rng.random((n, c), dtype=np.float32) < density).astype(np.int8)
    empty = np.flatnonzero(targets.sum(0) == 0)
    targets[rng.integers(0, n, len(empty)), empty] = 1
    return scores, targets


def interleaved_pair(ours, reference, scale: float, rounds: int, clock):
    """Time ``ours()`` and ``reference()`` in interleaved rounds; every call's output is kept
    for the comparison. Returns (ours seconds, reference seconds x scale, per-round ratios, max
    abs difference between the outputs on the reference's classes)."""
    results = {"ours": [], "reference": []}

    def keep(name, fn):
        return lambda: results[name].append(fn())

    times = interleaved({"ours": keep("ours", ours), "reference": keep("reference", reference)}, repeats=rounds, warmup=0,
                        clock=clock)
    t_ref = [t * scale for t in times["reference"]]
    diff = max(
        float(np.abs(a[: len(b)] - b).max()) for a in results["ours"] for b in results["reference"]
    )
    return times["ours"], t_ref, [r / o for r, o in zip(t_ref, times["ours"])], diff


def bench_case(n, c, density, voc_ref_classes, rounds, lean, table, verdicts, clock):
    scores, targets = make_case(n, c, density)
    average_precision(scores[:, :8], targets[:, :8])  # first-call costs (imports, page faults) out of the rounds
    case = f"{n:,} x {c:,}"
    contenders = [("mAP", "asl", asl_ap_per_class, None), ("mAP_voc", "voc", voc_ap_per_class, voc_ref_classes)]
    if lean:
        contenders.insert(1, ("mAP vs a lean loop", "asl", lean_ap_per_class, None))
    for name, definition, ref_fn, ref_classes in contenders:
        k = min(c, ref_classes or c)
        ours_t, ref_t, ratio, diff = interleaved_pair(
            partial(average_precision, scores, targets, definition),
            partial(ref_fn, scores[:, :k], targets[:, :k]),
            c / k,
            rounds,
            clock,
        )
        note = "" if k == c else f"reference timed on {k} of {c:,} classes, x{c / k:.1f}"
        table.add(case, name, spread(ours_t, "{:.3f}"), spread(ref_t, "{:.2f}"), spread(ratio, "{:.1f}", "x"),
                  f"{diff:.1e}", note)
        goal = GOALS.get(name)
        if goal:
            met = median(ratio) >= goal and diff <= 1e-9
            verdicts.append(f"`{name}` >= {goal:.0f}x on {case}: {median(ratio):.1f}x (rounds {min(ratio):.1f}-"
                            f"{max(ratio):.1f}), {'met' if met else 'NOT met'}; max abs diff {diff:.1e}")
    times = interleaved({"compute": partial(compute, scores, targets)}, repeats=rounds, warmup=0, clock=clock)["compute"]
    table.add(case, "compute() (all metrics)", spread(times, "{:.3f}"), "", "", "", "ours alone")


GOALS = {"mAP": 5.0, "mAP_voc": 50.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 40,137 x 80 case")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per comparison (at least 5)")
    parser.add_argument("--lean", action="store_true", help="also time a lean per-class loop (one sort per class)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="CPU time of the process, or wall clock")
    parser.add_argument(
        "--voc-ref-classes", type=int, default=96, help="classes the slow VOC reference runs on (big case)"
    )
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds: at least 5")

    report = Fragment("metrics")
    report.add(
        f"numpy {np.__version__}, torch threads {torch.get_num_threads()}; {args.rounds} interleaved rounds per row, "
        f"{args.clock} time; each cell is the median with the min-max over the rounds; the speed-up is taken round by round."
    )
    report.add()
    table = report.table(["scores (N x C)", "metric", "ours (s)", "reference (s)", "speed-up", "max abs diff", "note"],
                         ["l", "l", "r", "r", "r", "r", "l"])
    verdicts = []
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    bench_case(40137, 80, 0.036, None, args.rounds, args.lean, table, verdicts, clock)
    if not args.quick:
        bench_case(20000, 9605, 0.001, args.voc_ref_classes, args.rounds, args.lean, table, verdicts, clock)
    report.add_verdicts(verdicts)
    report.write()


if __name__ == "__main__":
    main()
