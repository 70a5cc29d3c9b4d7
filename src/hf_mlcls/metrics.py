"""Multi-label classification metrics: both published mAP definitions, CP/CR/CF1, OP/OR/OF1.

Query2Label and ML-Decoder report *different* average precisions, and on the same scores
the two disagree, so :func:`compute` returns both:

``mAP``
    ASL / ML-Decoder definition: per class, the mean over its positives of the precision
    at the positive's rank (non-interpolated). Samples are ranked by score descending and,
    among equal scores, the later sample first: the order of
    ``np.argsort(scores, kind="stable")[::-1]``, which is how the official code sorts.
    Like the official code we divide by ``num_positives + 1e-8``.
``mAP_voc``
    Query2Label's ``voc_mAP``: all-point interpolated AP under the precision envelope, i.e.
    per class the mean over its positives of the highest precision reached at that
    positive's rank or below. Among equal scores the earlier sample comes first, the order
    of ``np.argsort(-scores, kind="stable")``, which is how the official code sorts.

Ties: both official implementations call numpy's default ``argsort``, which is not stable:
the order it gives equal scores depends on the numpy version and the CPU (with numpy 2.x on
an AVX-512 CPU even 4 tied samples can come out in either order). We use the stable reading
of each expression; without ties every reading gives the same numbers. scikit-learn's
``average_precision_score`` treats a group of tied scores as one threshold instead, so it
agrees with ``mAP`` (up to the 1e-8 above) only when no positive ties with another sample.

Deliberate differences from the official code (both pick a number where there is none):

* A class with no positive target is *skipped*: its AP is NaN, it is left out of every
  class mean and counted in ``num_classes_skipped``. (ASL's code averages it in as 0;
  Query2Label's returns NaN for the class and therefore for the mean.)
* A target of ``-1`` means "unknown" (OpenImages): that entry is left out of its class's
  ranking and of every precision / recall count. (Both official codes count it as a
  negative.)

Thresholded metrics follow ML-GCN's definitions, which Query2Label's tables use:
per class ``Nc`` correct predictions, ``Np`` predictions, ``Ng`` positives;
``CP = mean_c Nc/Np``, ``CR = mean_c Nc/Ng``, ``CF1 = 2 CP CR / (CP + CR)``;
``OP = sum Nc / sum Np``, ``OR = sum Nc / sum Ng``, ``OF1 = 2 OP OR / (OP + OR)``.
A sample predicts a class when its probability is ``>= threshold``. In the top-k variant a
sample predicts the k classes it scores highest *and* only those of them at or above the
threshold (as ML-GCN's ``overall_topk`` does); equal scores at the k-th place go to the
lower class index; unknown entries take part in the choice but not in the counts.
Choices where the literature has none: a class with no prediction has precision 0; the
class means (CP, CR) run over the classes that are not skipped, the overall counts (OP,
OR) over every known entry, and an F1 whose P and R are both 0 is 0.

Every value is in percent (0-100), the scale of the papers' tables. :func:`compute`
expects *probabilities* (sigmoid already applied): AP only needs a monotone score, but the
threshold is a probability. :func:`compute_metrics` is the Trainer hook: it takes logits
and applies the sigmoid itself.

Everything is vectorised over blocks of classes, with no loop over samples, and memory
beyond the inputs stays at a few tens of MB; ``bench/bench_metrics.py`` times it against
per-class versions of both official definitions (``docs/benchmarks.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import _ap_counting
from ._ap_counting import ASL_EPS, _as_2d, _block_ap_sums, _check_inputs, _class_blocks, _finish_ap  # noqa: F401

__all__ = ["average_precision", "compute", "compute_metrics"]


def average_precision(scores: Any, targets: Any, definition: str = "asl") -> np.ndarray:
    """Per-class average precision in percent; NaN for a class with no positive.

    Args:
        scores: (N, C) scores, any monotone function of confidence (probabilities or logits).
        targets: (N, C) with 1 (positive), 0 (negative) or -1 (unknown, left out).
        definition: ``"asl"`` (ML-Decoder's ``mAP``) or ``"voc"`` (Query2Label's ``voc_mAP``).

    ``np.nanmean`` of the result is the corresponding mAP.
    """
    if definition not in ("asl", "voc"):
        raise ValueError(f"`definition` must be 'asl' or 'voc', got {definition!r}")
    scores, targets = _check_inputs(scores, targets)
    c = scores.shape[1]
    npos, asl, voc = np.zeros(c, dtype=np.int64), np.zeros(c), np.zeros(c)
    for cols, s, known, pos, lo, hi, buffers in _class_blocks(scores, targets):
        npos[cols], asl[cols], voc[cols] = _block_ap_sums(
            s, known, pos, lo, hi, buffers, want_asl=definition == "asl", want_voc=definition == "voc"
        )
    asl, voc = _finish_ap(npos, asl, voc)
    return asl if definition == "asl" else voc


# --------------------------------------------------------------------------- thresholds


def _topk_mask(s: np.ndarray, k: int) -> np.ndarray:
    """The k highest scores of each row; equal scores at the k-th place: lower index first."""
    n, c = s.shape
    if k >= c:
        return np.ones((n, c), dtype=bool)
    t = torch.from_numpy(s if s.flags.c_contiguous and s.flags.writeable else s.copy())
    kth = torch.topk(t, k, dim=1).values[:, -1].numpy()[:, None]
    mask = s >= kth
    crowded = np.flatnonzero(np.count_nonzero(mask, axis=1) > k)  # ties at the k-th score
    if len(crowded):
        sub_s, sub_kth = s[crowded], kth[crowded]
        room = k - np.count_nonzero(sub_s > sub_kth, axis=1)
        equal = sub_s == sub_kth
        mask[crowded] = (sub_s > sub_kth) | (equal & (np.cumsum(equal, axis=1) <= room[:, None]))
    return mask


def _prf(tp: np.ndarray, npred: np.ndarray, npos: np.ndarray, suffix: str = "") -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 in percent from per-class true positives, predictions, positives."""
    evaluated = npos > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        class_p = np.where(npred > 0, tp / np.maximum(npred, 1), 0.0)[evaluated]
        class_r = (tp / np.maximum(npos, 1))[evaluated]
    cp = 100.0 * class_p.mean() if evaluated.any() else float("nan")
    cr = 100.0 * class_r.mean() if evaluated.any() else float("nan")
    op = 100.0 * tp.sum() / npred.sum() if npred.sum() > 0 else 0.0
    orr = 100.0 * tp.sum() / npos.sum() if npos.sum() > 0 else float("nan")

    def f1(p, r):
        if np.isnan(p) or np.isnan(r):
            return float("nan")
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    out = {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": orr, "OF1": f1(op, orr)}
    return {f"{k}{suffix}": float(v) for k, v in out.items()}


# --------------------------------------------------------------------------- public


def compute(scores: Any, targets: Any, threshold: float = 0.5, top_k: int = 3) -> dict[str, Any]:
    """All metrics of the multi-label literature, in percent.

    Args:
        scores: (N, C) probabilities, i.e. sigmoid already applied (numpy, torch or lists).
            AP only needs the order, but ``threshold`` is compared with these values.
        targets: (N, C) with 1 (positive), 0 (negative) or -1 (unknown: left out of that
            class's AP and of every count).
        threshold: a sample predicts a class when its score is ``>= threshold``.
        top_k: k of the top-k metrics (keys end in ``_top{k}``).

    Returns:
        ``mAP``, ``mAP_voc``, ``CP``, ``CR``, ``CF1``, ``OP``, ``OR``, ``OF1``, the same six
        with ``_top{k}``, ``AP_per_class`` and ``AP_voc_per_class`` (arrays of C, NaN where
        skipped), ``num_classes_skipped`` (classes with no positive) and ``num_classes``.
    """
    if top_k < 1:
        raise ValueError(f"`top_k` must be >= 1, got {top_k}")
    scores, targets = _check_inputs(scores, targets)
    n, c = scores.shape
    npos, ap, ap_voc = np.zeros(c, dtype=np.int64), np.zeros(c), np.zeros(c)
    tp, npred = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    for cols, s, known, pos, lo, hi, buffers in _class_blocks(scores, targets):  # also validates
        npos[cols], ap[cols], ap_voc[cols] = _block_ap_sums(s, known, pos, lo, hi, buffers)
        pred = np.greater_equal(s, threshold, out=buffers.get("mask", *s.shape))
        if known is not None:
            pred &= known
        npred[cols] = np.count_nonzero(pred, axis=1)
        tp[cols] = np.count_nonzero(np.logical_and(pred, pos, out=pred), axis=1)
    ap, ap_voc = _finish_ap(npos, ap, ap_voc)
    evaluated = npos > 0

    tp_k, npred_k = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    height = max(1, _ap_counting._BLOCK_ELEMENTS // c)
    for start in range(0, n, height):
        s, t = scores[start : start + height], targets[start : start + height]
        pred = (s >= threshold) & _topk_mask(s, top_k)
        tp_k += np.bincount(np.flatnonzero(pred & (t == 1)) % c, minlength=c)
        npred_k += np.bincount(np.flatnonzero(pred & (t >= 0)) % c, minlength=c)

    result: dict[str, Any] = {
        "mAP": float(ap[evaluated].mean()) if evaluated.any() else float("nan"),
        "mAP_voc": float(ap_voc[evaluated].mean()) if evaluated.any() else float("nan"),
    }
    result.update(_prf(tp, npred, npos))
    result.update(_prf(tp_k, npred_k, npos, suffix=f"_top{top_k}"))
    result["AP_per_class"] = ap
    result["AP_voc_per_class"] = ap_voc
    result["num_classes_skipped"] = int(c - evaluated.sum())
    result["num_classes"] = int(c)
    return result


def _logits_and_labels(eval_pred, compute_result, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C), labels) of a Trainer ``EvalPrediction``; either may come as a tuple whose first item it is."""
    if compute_result is not None:
        raise ValueError(
            f"{name} needs the whole evaluation set at once (AP ranks every sample): "
            "leave TrainingArguments.batch_eval_metrics off"
        )
    logits = eval_pred.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    labels = eval_pred.label_ids
    if isinstance(labels, (tuple, list)):
        labels = labels[0]
    return _as_2d(logits, "predictions"), labels


def compute_metrics(
    eval_pred, threshold: float = 0.5, top_k: int = 3, compute_result: bool | None = None
) -> dict[str, float]:
    """``compute_metrics`` for the ``transformers.Trainer`` (which prefixes ``eval_`` itself).

    ``eval_pred.predictions`` are logits (N, C), or a tuple whose first item is; the
    sigmoid is applied here (in float64, so that confident logits do not all round to 1.0
    and tie). ``eval_pred.label_ids`` are (N, C) multi-hot targets, -1 for unknown.
    Returns the scalar metrics only, with :func:`compute`'s ``num_classes_skipped``. Other
    ``threshold`` / ``top_k``: ``functools.partial``.
    AP ranks the whole evaluation set, so ``TrainingArguments.batch_eval_metrics`` (which
    passes ``compute_result``) is refused.
    """
    logits, labels = _logits_and_labels(eval_pred, compute_result, "compute_metrics")
    probs = torch.sigmoid(torch.from_numpy(logits.astype(np.float64))).numpy()
    result = compute(probs, labels, threshold=threshold, top_k=top_k)
    keys = ["mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1"]
    keys += [f"{k}_top{top_k}" for k in keys[2:]]
    return {**{k: float(result[k]) for k in keys}, "num_classes_skipped": result["num_classes_skipped"]}


# --------------------------------------------------------------------------- zero-shot

__all__ += ["compute_zsl", "compute_zsl_metrics"]


def compute_zsl(scores: Any, targets: Any, top_k: int | tuple[int, ...] = (3, 5)) -> dict[str, Any]:
    """Zero-shot metrics as the ML-Decoder and LESA papers report them, in percent.

    The same function serves both settings; what changes is the label set the model scores:
    ZSL passes the unseen labels' columns only, GZSL every label (seen and unseen), on the same
    test images.

    Args:
        scores: (N, C) scores, any monotone function of confidence (logits or probabilities).
        targets: (N, C) with 1 (positive), 0 (negative) or -1 (unknown: left out).
        top_k: the k of the top-k metrics (the papers report 3 and 5).

    Returns:
        ``mAP``: ML-Decoder's mAP (``average_precision(..., "asl")``), averaged over the classes
        with a positive; ``P_top{k}``, ``R_top{k}``, ``F1_top{k}``: LESA's "overall" precision,
        recall and F1 when every image predicts exactly its k highest-scoring labels (no
        threshold): ``P = TP / (N k)``, ``R = TP / positives``, ``F1 = 2PR / (P + R)``;
        ``AP_per_class`` (NaN where skipped), ``num_classes_skipped``, ``num_classes``,
        ``num_samples``.

    Choices where the papers' code has none or an unstable one: equal scores at the k-th place
    go to the lower class index (their ``np.argsort`` leaves it to the sort); an unknown entry
    can be among the k but is counted neither as a prediction nor as a positive; a class with no
    positive is skipped and counted (ML-Decoder's code averages it in as 0, as LESA's does); when
    k >= C every label is predicted. Images are not filtered here: which test images are scored
    is the data's choice (``hf_mlcls.data.nuswide_zsl`` keeps the images with at least one unseen
    label unless ``keep_rows_without_label``, as the authors' loader, keeps every one).
    """
    ks = (top_k,) if isinstance(top_k, (int, np.integer)) else tuple(top_k)
    if not ks or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"`top_k` must be a positive integer or a tuple of them, got {top_k!r}")
    scores, targets = _check_inputs(scores, targets)
    ap = average_precision(scores, targets, "asl")  # also checks the target values
    evaluated = ~np.isnan(ap)
    n, c = scores.shape
    num_pos = int(np.count_nonzero(targets == 1))
    result: dict[str, Any] = {"mAP": float(ap[evaluated].mean()) if evaluated.any() else float("nan")}
    height = max(1, _ap_counting._BLOCK_ELEMENTS // c)
    for k in ks:
        tp = npred = 0
        for start in range(0, n, height):
            s, t = scores[start : start + height], targets[start : start + height]
            chosen = _topk_mask(np.ascontiguousarray(s), int(k))
            tp += int(np.count_nonzero(chosen & (t == 1)))
            npred += int(np.count_nonzero(chosen & (t >= 0)))
        p = 100.0 * tp / npred if npred else 0.0
        r = 100.0 * tp / num_pos if num_pos else float("nan")
        f1 = float("nan") if np.isnan(r) else (2 * p * r / (p + r) if p + r > 0 else 0.0)
        result.update({f"P_top{k}": float(p), f"R_top{k}": float(r), f"F1_top{k}": float(f1)})
    result["AP_per_class"] = ap
    result["num_classes_skipped"] = int(c - evaluated.sum())
    result["num_classes"] = int(c)
    result["num_samples"] = int(n)
    return result


def compute_zsl_metrics(eval_pred, top_k: tuple[int, ...] = (3, 5), compute_result: bool | None = None) -> dict[str, float]:
    """``compute_metrics`` for the ``transformers.Trainer`` on a zero-shot evaluation set.

    ``eval_pred.predictions`` are logits (N, C) (or a tuple whose first item is), ranked as they
    are (no sigmoid, so that confident logits cannot tie at 1.0); ``label_ids`` the (N, C) targets.
    Returns ``mAP``, ``P/R/F1_top{k}`` and ``num_classes_skipped`` of :func:`compute_zsl`.
    """
    logits, labels = _logits_and_labels(eval_pred, compute_result, "compute_zsl_metrics")
    result = compute_zsl(logits.astype(np.float64), labels, top_k=top_k)
    scalars = {k: float(v) for k, v in result.items() if k == "mAP" or k.startswith(("P_top", "R_top", "F1_top"))}
    return {**scalars, "num_classes_skipped": result["num_classes_skipped"]}
