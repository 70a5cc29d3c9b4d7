"""Single-label metrics: top-1 / top-5 accuracy (ImageNet, CIFAR-100, Stanford Cars).

Kept apart from :mod:`hf_mlcls.metrics` (mAP and the multi-label F1s): a single-label
evaluation has one class index per image, not a multi-hot row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["topk_accuracy", "compute_single_label_metrics"]


def _as_indices(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices (N,) from indices or from one-hot / soft rows (N, C) (their argmax)."""
    targets = np.asarray(targets)
    if targets.ndim == 2:
        if targets.shape[1] != num_classes:
            raise ValueError(f"targets have {targets.shape[1]} columns for scores of {num_classes} classes")
        return targets.argmax(axis=1)
    if targets.ndim != 1:
        raise ValueError(f"targets must be class indices (N,) or rows (N, C), got shape {targets.shape}")
    targets = targets.astype(np.int64)
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        bad = targets[(targets < 0) | (targets >= num_classes)][:3].tolist()
        raise ValueError(f"targets hold class indices outside 0..{num_classes - 1}, e.g. {bad}")
    return targets


def topk_accuracy(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"top1": %, "top5": %}``: the share of images whose true class is among the ``k``
    highest scores, in percent. A ``k`` above the class count is clipped to it (top-5 of a
    3-class problem is 100). Ties are broken by class index (lower first), as ``argsort``
    with a stable sort does, so a constant score never counts as right for every class.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    n, c = scores.shape
    truth = _as_indices(targets, c)
    if truth.shape[0] != n:
        raise ValueError(f"{n} score rows for {truth.shape[0]} targets")
    if n == 0:
        return {f"top{k}": float("nan") for k in ks}
    # rank of the true class: how many classes score higher, plus ties at a lower index
    true_score = scores[np.arange(n), truth][:, None]
    index = np.arange(c)[None, :]
    rank = (scores > true_score).sum(axis=1) + ((scores == true_score) & (index < truth[:, None])).sum(axis=1)
    return {f"top{k}": float((rank < min(k, c)).mean() * 100.0) for k in ks}


def compute_single_label_metrics(eval_pred) -> dict[str, float]:
    """A ``Trainer`` ``compute_metrics``: top-1 and top-5 accuracy from the logits and the
    class indices (or the one-hot rows) of the evaluation set."""
    logits = eval_pred.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    labels = eval_pred.label_ids
    if isinstance(labels, (tuple, list)):
        labels = labels[0]
    return topk_accuracy(np.asarray(logits), np.asarray(labels))
