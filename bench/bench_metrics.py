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
a skipped class). Times are wall-clock: ours the best of 3 runs (a run takes seconds at
most, so it is the most exposed to other jobs), each reference a single run.

The reference for `mAP_voc` loops over the samples in Python, as the official code does; on
the 20,000 x 9,605 case it is timed on a subset of classes and extrapolated linearly in the
number of classes (said so in the table).
"""

import argparse
import os
import platform
import sys
import time
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_case(n, c, density, voc_ref_classes, asl_ref_classes, repeats):
    scores, targets = make_case(n, c, density)
    rows, ours_by_definition = [], {}
    for name, definition, ref_fn, ref_classes in (
        ("mAP", "asl", asl_ap_per_class, asl_ref_classes),
        ("mAP vs a lean loop", "asl", lean_ap_per_class, asl_ref_classes),
        ("mAP_voc", "voc", voc_ap_per_class, voc_ref_classes),
    ):
        if definition not in ours_by_definition:
            ours_by_definition[definition] = timed(partial(average_precision, scores, targets, definition), repeats)
        t_ours, ours = ours_by_definition[definition]
        k = min(c, ref_classes or c)
        t_ref, ref = timed(partial(ref_fn, scores[:, :k], targets[:, :k]))
        note = "" if k == c else f"reference timed on {k} of {c} classes, x{c / k:.1f}"
        t_ref *= c / k
        diff = np.abs(ours[:k] - ref).max()
        rows.append((f"{n:,} x {c:,}", name, t_ours, t_ref, t_ref / t_ours, diff, note))
    t_all, _ = timed(partial(compute, scores, targets), repeats)
    rows.append((f"{n:,} x {c:,}", "compute() (all metrics)", t_all, float("nan"), float("nan"), float("nan"), ""))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the 40,137 x 80 case")
    parser.add_argument(
        "--voc-ref-classes", type=int, default=96, help="classes the slow VOC reference runs on (big case)"
    )
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    )
    rows = bench_case(40137, 80, 0.036, voc_ref_classes=None, asl_ref_classes=None, repeats=3)
    if not args.quick:
        rows += bench_case(20000, 9605, 0.001, voc_ref_classes=args.voc_ref_classes, asl_ref_classes=None, repeats=3)

    print()
    print("| scores (N x C) | metric | ours (s) | reference (s) | speed-up | max abs diff | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    for case, name, t_ours, t_ref, ratio, diff, note in rows:
        ref = "" if np.isnan(t_ref) else f"{t_ref:.2f}"
        speed = "" if np.isnan(ratio) else f"{ratio:.1f}x"
        d = "" if np.isnan(diff) else f"{diff:.1e}"
        print(f"| {case} | {name} | {t_ours:.3f} | {ref} | {speed} | {d} | {note} |")

    print()
    goals = {("20,000 x 9,605", "mAP"): 5.0, ("40,137 x 80", "mAP_voc"): 50.0}
    for case, name, _, _, ratio, diff, _ in rows:
        if (case, name) in goals:
            goal = goals[case, name]
            verdict = "met" if ratio >= goal else "NOT met"
            print(f"goal {name} >= {goal:.0f}x on {case}: {ratio:.1f}x, {verdict}; max abs diff {diff:.1e}")


if __name__ == "__main__":
    main()
