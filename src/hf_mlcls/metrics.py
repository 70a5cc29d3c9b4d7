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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["average_precision", "compute", "compute_metrics"]

ASL_EPS = 1e-8
"""The official ASL code divides by ``num_positives + ASL_EPS``; kept for identical numbers."""

_BLOCK_ELEMENTS = 1 << 19  # scores handled at once: temporaries stay in cache and in the heap
_MAX_BLOCK_CLASSES = 256
_COARSE_BITS = 10  # coarse bins per class: 1024
_SAMPLE_ROWS = 2048  # rows sampled to size the bins
_PER_BUCKET = 2.0  # samples per fine bucket aimed at


# --------------------------------------------------------------------------- inputs


def _as_2d(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (num_samples, num_classes), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"`{name}` is empty: shape {x.shape}")
    return x


def _check_inputs(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = _as_2d(scores, "scores")
    targets = _as_2d(targets, "targets")
    if scores.shape != targets.shape:
        raise ValueError(f"`scores` has shape {scores.shape} but `targets` has shape {targets.shape}")
    if scores.dtype == np.float16:
        scores = scores.astype(np.float32)  # exact
    elif scores.dtype not in (np.float32, np.float64):
        if not (np.issubdtype(scores.dtype, np.number) or scores.dtype == bool):
            raise ValueError(f"`scores` must be numeric, got dtype {scores.dtype}")
        scores = scores.astype(np.float64)
    if not (np.issubdtype(targets.dtype, np.number) or targets.dtype == bool):
        raise ValueError(f"`targets` must be numeric (1, 0 or -1), got dtype {targets.dtype}")
    return scores, targets


def _block_inputs(scores: np.ndarray, targets: np.ndarray, rows: slice, cols: slice):
    """One block, validated (no NaN score; targets in {1, 0, -1}).

    Returns the scores, the known mask (None when every entry is known), the positive mask
    and the per-class minimum and maximum score.
    """
    s = scores[rows, cols]
    t = targets[rows, cols]
    lo, hi = s.min(axis=0), s.max(axis=0)  # NaN propagates into both
    if np.isnan(lo).any():
        r, c = np.argwhere(np.isnan(s))[0]
        raise ValueError(f"`scores` is NaN at row {r + rows.start}, class {c + cols.start}")
    if t.dtype == bool:
        return s, None, t, lo, hi
    tmin, tmax = t.min(), t.max()
    if tmin < -1 or tmax > 1 or (t.dtype.kind == "f" and not np.array_equal(t, np.round(t))):
        bad = (t != 1) & (t != 0) & (t != -1)
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"`targets` must hold 1 (positive), 0 (negative) or -1 (unknown); "
            f"row {r + rows.start}, class {c + cols.start} holds {t[r, c].item()!r}"
        )
    return s, (t >= 0 if tmin < 0 else None), t == 1, lo, hi


def _column_blocks(n: int, c: int) -> Iterator[slice]:
    width = max(1, min(_MAX_BLOCK_CLASSES, _BLOCK_ELEMENTS // n))
    for start in range(0, c, width):
        yield slice(start, min(c, start + width))


def _row_blocks(n: int, c: int) -> Iterator[slice]:
    height = max(1, _BLOCK_ELEMENTS // c)
    for start in range(0, n, height):
        yield slice(start, min(n, start + height))


# --------------------------------------------------------------------------- ranking


def _ordered_key(x: np.ndarray, nonnegative: bool = False) -> np.ndarray:
    """Signed integer key with the order of the floats ``x``; -0.0 and 0.0 get the same key."""
    bits = x.view(np.int32 if x.dtype == np.float32 else np.int64)
    if nonnegative:  # probabilities: the bit patterns are already in order, but for -0.0
        return np.maximum(bits, 0)
    key = bits >> (8 * bits.itemsize - 1)  # all ones for negative floats, zero otherwise
    key &= np.iinfo(bits.dtype).max
    key ^= bits  # negative floats: every bit but the sign flipped, so larger magnitude sorts lower
    key += key == -1  # -0.0 became -1; make it equal to +0.0
    return key


def _hot_order(cls, key, row, n_rows, n_cls, later_first):
    """Order of the selected samples: by class, score descending, then the tie rule."""
    tie = (n_rows - 1 - row) if later_first else row
    if key.dtype == np.int32:
        desc = (np.int64(np.iinfo(np.int32).max) - key).astype(np.uint64)
        kbits = 32
    else:  # 64-bit keys: only their order matters, so replace them by their dense rank
        uniq, rank = np.unique(key, return_inverse=True)
        desc = (len(uniq) - 1 - rank).astype(np.uint64)
        kbits = max(1, (len(uniq) - 1).bit_length())
    rbits = max(1, (n_rows - 1).bit_length())
    cbits = max(1, (n_cls - 1).bit_length())
    if rbits + kbits + cbits <= 64:  # one packed key: far faster than a lexsort
        packed = cls.astype(np.uint64) << np.uint64(kbits + rbits)
        packed |= desc << np.uint64(rbits)
        packed |= tie.astype(np.uint64)
        return np.argsort(packed)
    return np.lexsort((tie, desc, cls))


def _positive_precisions(order, cls, pos, bucket, above):
    """Precision at every positive, from the exact order of the samples in hot buckets.

    ``above`` holds, per sample, the known samples of its class in higher buckets.
    Returns the positives' classes and precisions, in ``order``.
    """
    cls, pos, bucket, above = cls[order], pos[order], bucket[order], above[order]
    idx = np.arange(len(order))
    start = np.ones(len(order), dtype=bool)
    start[1:] = bucket[1:] != bucket[:-1]  # a bucket's samples are adjacent in ``order``
    first_in_bucket = np.maximum.accumulate(np.where(start, idx, 0))
    known_before = above + (idx - first_in_bucket)
    pos_before = np.cumsum(pos) - pos
    start[1:] = cls[1:] != cls[:-1]
    pos_before -= np.maximum.accumulate(np.where(start, pos_before, 0))
    return cls[pos], (pos_before[pos] + 1) / (known_before[pos] + 1)


def _buckets(diff: np.ndarray, span: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bucket of every score: monotone in the score within a class, about two per bucket.

    ``diff`` (N, c) uint64 is each score's key minus its class's smallest key, ``span`` the
    largest ``diff`` per class. The top ``_COARSE_BITS`` bits of ``diff`` give a coarse bin; a
    sample of rows tells how full each bin is, and each bin gets a power of two of fine
    buckets (the next bits of ``diff``) to match, so crowded ranges of the score (uniform
    probabilities, logits far from zero, ...) are cut finer than empty ones.
    Returns the bucket numbers (N, c) int64, one range per class, and the ranges' starts (c+1,).
    """
    n, c = diff.shape
    ncb = 1 << _COARSE_BITS
    cshift = np.array([max(0, int(s).bit_length() - _COARSE_BITS) for s in span], dtype=np.uint64)
    coarse_offset = np.arange(0, c * ncb, ncb, dtype=np.int64)
    stride = max(1, n // _SAMPLE_ROWS)
    sample = (diff[::stride] >> cshift).view(np.int64) + coarse_offset
    seen = np.bincount(sample.ravel(), minlength=c * ncb).reshape(c, ncb) * stride
    log_fine = np.ceil(np.log2(np.maximum(seen / _PER_BUCKET, 1.0)))
    log_fine = np.minimum(log_fine, cshift[:, None].astype(np.float64)).astype(np.uint64)
    fine_shift = (cshift[:, None] - log_fine).ravel()
    base = np.zeros(c * ncb + 1, dtype=np.int64)
    np.cumsum(np.left_shift(1, log_fine.ravel().astype(np.int64)), out=base[1:])

    coarse = (diff >> cshift).view(np.int64)
    coarse += coarse_offset
    bucket = diff & (np.left_shift(np.uint64(1), cshift) - np.uint64(1))  # offset in the bin
    bucket >>= fine_shift[coarse]
    bucket = bucket.view(np.int64)
    bucket += base[coarse]
    return bucket, base[::ncb]


def _block_ap_sums(scores, known, pos, lo, hi, want_asl=True, want_voc=True):
    """Per-class sums of the two AP definitions' terms for one block of classes.

    ``known`` is None when every entry is known; ``lo``, ``hi`` are the per-class extremes.

    A plain sort of every column costs about as much as the official per-class loop, so we
    count instead: every score goes into a bucket (:func:`_buckets`); a histogram gives how
    many known samples of the class score in higher buckets, and only the buckets holding a
    positive are sorted exactly. Exact whatever the data; the sorted part grows with the
    number of positives.
    """
    n, c = scores.shape
    pos_flat = np.flatnonzero(pos)
    npos = np.bincount(pos_flat % c, minlength=c)
    asl = np.zeros(c)
    voc = np.zeros(c)
    if not len(pos_flat):
        return npos, asl, voc
    nonneg = bool((lo >= 0).all())
    key = _ordered_key(scores, nonneg)
    kmin = _ordered_key(lo, nonneg).astype(np.int64).view(np.uint64)
    span = _ordered_key(hi, nonneg).astype(np.int64).view(np.uint64) - kmin
    # key - kmin, computed modulo 2**64, is exact: 0 <= it < 2**64
    if key.dtype == np.int32:
        diff = (key.view(np.uint32) - kmin.astype(np.uint32)).astype(np.uint64)
    else:
        diff = key.view(np.uint64) - kmin
    bucket, class_start = _buckets(diff, span)
    del diff
    unknown_bin = class_start[-1]
    if known is not None:
        np.putmask(bucket, ~known, unknown_bin)
    cum = np.cumsum(np.bincount(bucket.ravel(), minlength=unknown_bin + 1)[:unknown_bin])
    hot = np.zeros(unknown_bin + 1, dtype=bool)
    hot[bucket.ravel()[pos_flat]] = True
    rows, cls = np.divmod(np.flatnonzero(hot[bucket]), c)
    hkey, hpos, hbucket = key[rows, cls], pos[rows, cls], bucket[rows, cls]
    above = cum[class_start[1:] - 1][cls] - cum[hbucket]  # known samples in higher buckets

    order = _hot_order(cls, hkey, rows, n, c, later_first=False)  # Query2Label's tie order
    ties = np.any((hkey[order][1:] == hkey[order][:-1]) & (cls[order][1:] == cls[order][:-1]))
    if want_voc:
        pcls, prec = _positive_precisions(order, cls, hpos, hbucket, above)
        # precision envelope: running max from the last positive of each class backwards;
        # the class offset stops it from leaking across classes (precisions lie in (0, 1])
        offset = 2.0 * pcls
        env = np.maximum.accumulate((prec - offset)[::-1])[::-1] + offset
        voc = np.bincount(pcls, weights=env, minlength=c)
    if want_asl:
        if ties:  # ASL's tie order differs: later samples first
            order = _hot_order(cls, hkey, rows, n, c, later_first=True)
        pcls, prec = _positive_precisions(order, cls, hpos, hbucket, above)
        asl = np.bincount(pcls, weights=prec, minlength=c)
    return npos, asl, voc


def _ap_per_class(scores, targets, want_asl=True, want_voc=True):
    n, c = scores.shape
    npos = np.zeros(c, dtype=np.int64)
    asl = np.zeros(c)
    voc = np.zeros(c)
    for cols in _column_blocks(n, c):
        s, known, pos, lo, hi = _block_inputs(scores, targets, slice(0, n), cols)
        npos[cols], asl[cols], voc[cols] = _block_ap_sums(s, known, pos, lo, hi, want_asl, want_voc)
    with np.errstate(invalid="ignore", divide="ignore"):
        asl = np.where(npos > 0, 100.0 * asl / (npos + ASL_EPS), np.nan)
        voc = np.where(npos > 0, 100.0 * voc / npos, np.nan)
    return npos, asl, voc


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
    _, asl, voc = _ap_per_class(scores, targets, definition == "asl", definition == "voc")
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


def _prf(tp: np.ndarray, npred: np.ndarray, npos: np.ndarray, prefix: str = "", suffix: str = ""):
    evaluated = npos > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        class_p = np.where(npred > 0, tp / np.maximum(npred, 1), 0.0)[evaluated]
        class_r = (tp / np.maximum(npos, 1))[evaluated]
    cp = 100.0 * class_p.mean() if evaluated.any() else float("nan")
    cr = 100.0 * class_r.mean() if evaluated.any() else float("nan")
    op = 100.0 * tp.sum() / npred.sum() if npred.sum() > 0 else 0.0
    orr = 100.0 * tp.sum() / npos.sum() if npos.sum() > 0 else float("nan")

    def f1(p, r):
        return 2 * p * r / (p + r) if p + r > 0 else (0.0 if p == p and r == r else float("nan"))

    out = {"CP": cp, "CR": cr, "CF1": f1(cp, cr), "OP": op, "OR": orr, "OF1": f1(op, orr)}
    return {f"{prefix}{k}{suffix}": float(v) for k, v in out.items()}


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
    npos, ap, ap_voc = _ap_per_class(scores, targets)
    evaluated = npos > 0

    tp, npred = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    tp_k, npred_k = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    for rows in _row_blocks(n, c):
        s, known, pos, _, _ = _block_inputs(scores, targets, rows, slice(0, c))
        if known is None:
            known = np.ones_like(pos)
        pred = s >= threshold
        tp += np.count_nonzero(pred & pos, axis=0)
        npred += np.count_nonzero(pred & known, axis=0)
        pred &= _topk_mask(s, top_k)
        tp_k += np.count_nonzero(pred & pos, axis=0)
        npred_k += np.count_nonzero(pred & known, axis=0)

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


def compute_metrics(eval_pred, threshold: float = 0.5, top_k: int = 3) -> dict[str, float]:
    """``compute_metrics`` for the ``transformers.Trainer`` (which prefixes ``eval_`` itself).

    ``eval_pred.predictions`` are logits (N, C), or a tuple whose first item is; the
    sigmoid is applied here (in float64, so that confident logits do not all round to 1.0
    and tie). ``eval_pred.label_ids`` are (N, C) multi-hot targets, -1 for unknown.
    Returns the scalar metrics only.
    """
    logits = eval_pred.predictions
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    labels = eval_pred.label_ids
    if isinstance(labels, (tuple, list)):
        labels = labels[0]
    logits = _as_2d(logits, "predictions")
    probs = torch.sigmoid(torch.from_numpy(logits.astype(np.float64))).numpy()
    result = compute(probs, labels, threshold=threshold, top_k=top_k)
    keys = ["mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1"]
    keys += [f"{k}_top{top_k}" for k in keys[2:]]
    return {k: float(result[k]) for k in keys}
