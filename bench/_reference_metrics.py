"""Straightforward per-class NumPy versions of the two official mAP definitions.

Written for the benchmark from the definitions (not taken from either repository); they
keep the official code's shape, which is what we time against: one class at a time, numpy's
default ``argsort``, and for the VOC definition the official per-sample steps (labels picked
one sample at a time, true / false positives set in a loop, the precision envelope built
with ``np.maximum`` one element at a time).
Both return per-class AP in percent; no unknown (-1) targets, every class needs a positive.
"""

import numpy as np


def asl_ap_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ASL / ML-Decoder: mean precision at the positives, divided by ``npos + 1e-8``."""
    n, c = scores.shape
    ap = np.zeros(c)
    for k in range(c):  # the official steps, one class at a time
        column, labels = scores[:, k], targets[:, k]
        order = column.argsort()[::-1]  # best first; the official order
        rank = np.cumsum(np.ones((n, 1)))
        hit = labels[order] == 1
        hits_so_far = np.cumsum(hit)
        npos = hits_so_far[-1]
        hits_so_far[~hit] = 0
        ap[k] = np.sum(hits_so_far / rank) / (npos + 1e-8)
    return 100.0 * ap


def lean_ap_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The ASL definition as a lean per-class loop: one sort and one cumsum per class.

    Not the official code's steps; here to show how much of the speed-up is the algorithm.
    """
    n, c = scores.shape
    ranks = np.arange(1, n + 1)
    ap = np.zeros(c)
    for k in range(c):
        hit = targets[scores[:, k].argsort()[::-1], k] == 1
        ap[k] = np.sum(np.cumsum(hit)[hit] / ranks[hit]) / (hit.sum() + 1e-8)
    return 100.0 * ap


def voc_ap_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Query2Label: all-point interpolated AP under the precision envelope."""
    n, c = scores.shape
    ap = np.zeros(c)
    for k in range(c):
        order = np.argsort(-scores[:, k])  # best first; the official order
        labels = [targets[i, k] for i in order]  # one sample at a time, as the official code does
        tp = np.zeros(n)
        fp = np.zeros(n)
        for i in range(n):
            tp[i] = labels[i] > 0
            fp[i] = labels[i] <= 0
        tp = np.cumsum(tp)
        fp = np.cumsum(fp)
        recall = np.concatenate(([0.0], tp / tp[-1], [1.0]))
        precision = np.concatenate(([0.0], tp / np.maximum(tp + fp, np.finfo(np.float64).eps), [0.0]))
        for i in range(len(precision) - 2, -1, -1):  # the envelope, from the right
            precision[i] = np.maximum(precision[i], precision[i + 1])
        steps = np.flatnonzero(recall[1:] != recall[:-1])
        ap[k] = np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1])
    return 100.0 * ap
