"""Counting engine behind :mod:`hf_mlcls.metrics`'s average precisions (both definitions).

One concern: ranking every class's samples without sorting them. Scores are copied out of
the (samples, classes) input class-major, a block of classes at a time (validated on the
way); every score goes into a bucket whose number grows with the score, a histogram of the
buckets gives how many samples of the class rank above each bucket, and only the buckets
that hold a positive are sorted exactly. :func:`_block_ap_sums` returns, per class, the sums
of both definitions' per-positive precisions; :mod:`hf_mlcls.metrics` documents the
definitions, their tie orders and the unknown (-1) targets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

ASL_EPS = 1e-8
"""The official ASL code divides by ``num_positives + ASL_EPS``; kept for identical numbers."""

_BLOCK_ELEMENTS = 1 << 19  # scores per block of classes (or of samples, for top-k)
_STAGE_ELEMENTS = 1 << 22  # scores copied out of the input at a time
_TILE_ROWS = 256  # rows transposed at a time, at least
_TILE_ELEMENTS = 1 << 16  # scores transposed at a time, at least
_HUGE_PAGES_FROM = 1 << 22  # bytes from which numpy asks Linux for huge pages
_COARSE_BITS = 10  # coarse bins per class: 2**10 + 1
_SAMPLE_ROWS = 2048  # samples per class looked at to size the coarse bins
_PER_BUCKET = 2.0  # samples per fine bucket aimed at
_LINEAR_PER_BUCKET = 1.0  # samples per evenly spaced bucket
_LINEAR_HOT_LIMIT = 8  # evenly spaced buckets are kept while they hold at most this many samples per positive


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


#: The workspace (arrays of the block size: tens of MB at COCO or NUS-WIDE size) of the last finished call,
#: reused by the next call of the same shapes: fresh memory costs page faults on every call, which on small
#: virtual machines cost more than the counting. A call running while another holds it builds its own.
_SPARE: list = []


class _Buffers:
    """The arrays that grow with a block, carved from one allocation and reused per block.

    Fresh memory costs page faults, which on small virtual machines cost more than the
    arithmetic done in it; one large allocation also gets huge pages.
    """

    def __init__(self, size: int, n_buckets: int, score_dtype):
        key_dtype = np.uint32 if score_dtype == np.float32 else np.uint64
        layout = [
            ("cum", np.int64, n_buckets), ("hot", np.bool_, n_buckets),
            ("key", key_dtype), ("diff", np.uint64), ("coarse", np.int64), ("bucket", np.int64),
            ("mask", np.bool_),
        ]  # fmt: skip
        self._arrays, total = {}, 0
        for name, dtype, *length in layout:
            nbytes = (length[0] if length else size) * np.dtype(dtype).itemsize
            self._arrays[name] = (total, nbytes, dtype)
            total += -(-nbytes // 64) * 64
        buffer = np.empty(total, dtype=np.uint8)
        self._arrays = {k: buffer[o : o + nb].view(dt) for k, (o, nb, dt) in self._arrays.items()}

    def get(self, name: str, c: int, n: int) -> np.ndarray:
        return self._arrays[name][: c * n].reshape(c, n)

    def flat(self, name: str, size: int) -> np.ndarray:
        return self._arrays[name][:size]


def _check_targets(t: np.ndarray, row: int, col: int) -> bool:
    """Whether any target is -1; raises, naming the sample (row) and class, unless every
    target is 1, 0 or -1."""
    if t.dtype == bool:
        return False
    tmin = t.min()
    valid = tmin >= -1 and t.max() <= 1
    if valid and t.dtype.kind == "f":  # also no 0.5, no NaN
        valid = np.count_nonzero(t == 0) + np.count_nonzero(t == 1) + np.count_nonzero(t == -1) == t.size
    if not valid:
        r, k = np.argwhere((t != 1) & (t != 0) & (t != -1))[0]
        raise ValueError(
            "`targets` must hold 1 (positive), 0 (negative) or -1 (unknown); "
            f"row {r + row}, class {k + col} holds {t[r, k].item()!r}"
        )
    return bool(tmin < 0)


def _class_blocks(scores: np.ndarray, targets: np.ndarray) -> Iterator[tuple]:
    """Blocks of classes, validated and class-major: every array is (classes, samples).

    Yields ``cols, scores, known, pos, lo, hi, buffers``: ``known`` is None when no target
    is -1; ``lo``, ``hi`` are each class's extreme scores; the arrays are views into
    reused memory, valid until the next block. Raises on a NaN score or on a target that is
    not 1, 0 or -1, naming the sample (row) and class.
    """
    n, c = scores.shape
    stage_width = max(1, min(c, _STAGE_ELEMENTS // n))
    width = max(1, min(stage_width, _BLOCK_ELEMENTS // n))
    # fine buckets per class: below 2 per sampled score, or 2 per coarse bin
    n_buckets = width * max(n + max(1, n // _SAMPLE_ROWS) + 2 * ((1 << _COARSE_BITS) + 1), int(n / _LINEAR_PER_BUCKET)) + 1
    tile_rows = max(_TILE_ROWS, _TILE_ELEMENTS // stage_width)
    key = (n, stage_width, width, n_buckets, tile_rows, scores.dtype, targets.dtype)
    try:
        workspace = _SPARE.pop()
    except IndexError:
        workspace = None
    if workspace is None or workspace[0] != key:
        # Columns are copied out of the (samples, classes) input many at a time, so that each
        # row is read in one long stretch, through a tile of rows that is transposed in cache.
        # Targets are not transposed: only where the positives (and unknowns) are is recorded.
        workspace = (key, _Buffers(width * n, n_buckets, scores.dtype),
                     np.empty((stage_width, n), dtype=scores.dtype), np.empty((stage_width, n), dtype=bool),
                     np.empty((tile_rows, stage_width), dtype=scores.dtype),
                     np.empty((tile_rows, stage_width), dtype=targets.dtype))
    try:
        yield from _fill_blocks(scores, targets, stage_width, width, tile_rows, *workspace[1:])
    finally:
        _SPARE[:] = [workspace]  # the next call with the same shapes reuses this memory


def _fill_blocks(scores, targets, stage_width, width, tile_rows, buffers, stage_s, stage_pos, tile_s, tile_t):
    n, c = scores.shape
    stage_known = None
    for stage_start in range(0, c, stage_width):
        stage_cols = slice(stage_start, min(c, stage_start + stage_width))
        w = stage_cols.stop - stage_start
        unknowns = False
        for r in range(0, n, tile_rows):
            h = min(tile_rows, n - r)
            np.copyto(tile_s[:h, :w], scores[r : r + h, stage_cols])
            np.copyto(stage_s[:w, r : r + h], tile_s[:h, :w].T)
            t = tile_t[:h, :w]
            np.copyto(t, targets[r : r + h, stage_cols])
            has_unknown = _check_targets(t, r, stage_start)
            np.equal(t.T, 1, out=stage_pos[:w, r : r + h])  # transposed from a tile in cache
            if has_unknown and not unknowns:  # the first -1 of this stage
                if stage_known is None:
                    stage_known = np.empty((stage_width, n), dtype=bool)
                stage_known[:w, :r] = True
                unknowns = True
            if unknowns:
                np.greater_equal(t.T, 0, out=stage_known[:w, r : r + h])
        for start in range(stage_start, stage_cols.stop, width):
            cols = slice(start, min(stage_cols.stop, start + width))
            rows = slice(start - stage_start, cols.stop - stage_start)
            s = stage_s[rows]
            lo, hi = s.min(axis=1), s.max(axis=1)  # a NaN propagates into both
            if np.isnan(lo).any():
                k, r = np.argwhere(np.isnan(s))[0]
                raise ValueError(f"`scores` is NaN at row {r}, class {k + start}")
            yield cols, s, (stage_known[rows] if unknowns else None), stage_pos[rows], lo, hi, buffers


# --------------------------------------------------------------------------- ranking


def _ordered_key(x: np.ndarray, nonnegative: bool, out=None, scratch=None) -> np.ndarray:
    """Unsigned integer key with the order of the floats ``x``; -0.0 and 0.0 get the same key."""
    sint, uint = (np.int32, np.uint32) if x.dtype == np.float32 else (np.int64, np.uint64)
    bits = x.view(sint)
    out = np.empty(x.shape, dtype=uint) if out is None else out
    signed = out.view(sint)
    if nonnegative:  # probabilities: the bit patterns are already in order, but for -0.0
        np.maximum(bits, 0, out=signed)
        return out
    np.right_shift(bits, 8 * bits.itemsize - 1, out=signed)  # all ones if negative, else 0
    np.bitwise_or(signed, np.iinfo(sint).min, out=signed)  # ... or just the sign bit
    np.bitwise_xor(signed, bits, out=signed)  # negative floats: all bits flipped; others: sign set
    scratch = np.empty(x.shape, dtype=bool) if scratch is None else scratch
    np.equal(out, np.iinfo(uint).max >> 1, out=scratch)  # -0.0 became 0x7f..f; make it +0.0
    out += scratch
    return out


def _sort_hot(cls, rows, key, n_rows, n_cls, later_first):
    """Rank order of the samples in hot buckets: by class, score descending, then ties
    (the later sample first if ``later_first``, else the earlier one).

    Returns their classes and rows in that order, and ``same``: whether each one has the
    class and score of the one before it.
    """
    tie = (n_rows - 1 - rows) if later_first else rows
    if key.dtype == np.uint32:
        desc = (np.uint32(0xFFFFFFFF) - key).astype(np.uint64)
        kbits = 32
    else:  # 64-bit keys: only their order matters, so replace them by their dense rank
        uniq, rank = np.unique(key, return_inverse=True)
        desc = (len(uniq) - 1 - rank).astype(np.uint64)
        kbits = max(1, (len(uniq) - 1).bit_length())
    rbits = max(1, (n_rows - 1).bit_length())
    if rbits + kbits + max(1, (n_cls - 1).bit_length()) > 64:  # too wide to pack: lexsort
        order = np.lexsort((tie, desc, cls))
        cls, rows, desc = cls[order], rows[order], desc[order]
        return cls, rows, (cls[1:] == cls[:-1]) & (desc[1:] == desc[:-1])
    # one packed key, sorted by value: several times faster than an argsort or a lexsort
    packed = cls.astype(np.uint64) << np.uint64(kbits + rbits)
    packed |= desc << np.uint64(rbits)
    packed |= tie.astype(np.uint64)
    packed.sort()
    tie = (packed & np.uint64((1 << rbits) - 1)).astype(np.intp)
    head = packed >> np.uint64(rbits)
    cls = (head >> np.uint64(kbits)).astype(np.intp)
    return cls, (n_rows - 1 - tie) if later_first else tie, head[1:] == head[:-1]


def _reverse_runs(same: np.ndarray) -> np.ndarray:
    """Permutation that reverses every run of items equal to the one before (``same``)."""
    idx = np.arange(len(same) + 1)
    first = np.maximum.accumulate(np.where(np.concatenate(([True], ~same)), idx, 0))
    last = np.minimum.accumulate(np.where(np.concatenate((~same, [True])), idx, len(idx))[::-1])[::-1]
    return first + last - idx


def _positive_precisions(cls, rows, n, pos, bucket, cum, class_last, npos):
    """Precision at every positive, from the rank order of the samples in hot buckets.

    ``cls``, ``rows``: those samples in rank order; ``pos``, ``bucket``: the block's flat
    positive mask and buckets; ``cum``: cumulative known counts per bucket; ``class_last``:
    each class's last bucket; ``npos``: positives per class. Returns the positives' classes
    and precisions, in rank order.
    """
    flat = cls * n + rows
    bucket = bucket[flat]
    at = np.flatnonzero(pos[flat])  # where the positives are in rank order
    idx = np.arange(len(flat))
    start = np.ones(len(flat), dtype=bool)
    start[1:] = bucket[1:] != bucket[:-1]  # a bucket's samples are adjacent in rank order
    first_in_bucket = np.maximum.accumulate(np.where(start, idx, 0))[at]
    cls, bucket = cls[at], bucket[at]
    # known samples ranked above: in higher buckets of the class, then earlier in this one
    known_before = cum[class_last[cls]] - cum[bucket] + (at - first_in_bucket)
    # positives ranked above: the positives come class after class, npos[k] of class k
    pos_before = np.arange(len(at)) - np.repeat(np.cumsum(npos) - npos, npos)
    return cls, (pos_before + 1) / (known_before + 1)


def _buckets(x: np.ndarray, xmin: np.ndarray, xmax: np.ndarray, buffers: _Buffers):
    """Bucket of every score: monotone in the score within a class, about two per bucket.

    ``x`` (c, N) holds unsigned integers in the order of the scores: their 32-bit keys, or
    their 64-bit keys minus the class's smallest (so that the table below fits in int64);
    ``xmin`` and ``xmax`` are its extremes per class. The high bits of ``x``
    give 1025 coarse bins per class, aligned to a power of two; a sample of the scores tells
    how full each bin is, and each bin gets a power of two of fine buckets (the next bits of
    ``x``) to match, so crowded ranges of the score (uniform probabilities, logits far from
    zero, ...) are cut finer.
    Returns the bucket numbers (c, N) int64, one range per class, and the ranges' starts.
    """
    c, n = x.shape
    ncb = (1 << _COARSE_BITS) + 1
    lo, hi = xmin.tolist(), xmax.tolist()
    shift = [max(0, (h - l).bit_length() - _COARSE_BITS) for l, h in zip(lo, hi)]
    first = np.array([l >> s for l, s in zip(lo, shift)], dtype=np.int64)[:, None]
    shift = np.array(shift, dtype=np.int64)[:, None]
    offset = np.arange(0, c * ncb, ncb, dtype=np.int64)[:, None] - first  # bin -> row of tables
    stride = max(1, n // _SAMPLE_ROWS)
    sample = (x[:, ::stride] >> shift.astype(x.dtype)).astype(np.int64) + offset
    seen = np.bincount(sample.ravel(), minlength=c * ncb).reshape(c, ncb) * stride
    log_fine = np.ceil(np.log2(np.maximum(seen / _PER_BUCKET, 1.0))).astype(np.int64)
    log_fine = np.minimum(log_fine, shift)
    base = np.zeros(c * ncb + 1, dtype=np.int64)
    np.cumsum(np.left_shift(1, log_fine.ravel()), out=base[1:])
    # bucket = base[bin] + (x - bin start) >> fine shift = x >> fine shift + adjust[bin]:
    # one gather per score, of adjust * 64 + fine shift (fine shift < 64)
    adjust = base[:-1] - ((first + np.arange(ncb)) << log_fine).ravel()
    table = adjust * 64 + (shift - log_fine).ravel()

    xu = x.dtype.type
    coarse, bucket = buffers.get("coarse", c, n), buffers.get("bucket", c, n)
    np.right_shift(x, shift.astype(xu), out=coarse.view(xu) if xu is np.uint64 else coarse)
    coarse += offset
    np.take(table, coarse, out=bucket, mode="clip")
    np.bitwise_and(bucket, 63, out=coarse)
    if xu is np.uint64:
        np.right_shift(x, coarse.view(np.uint64), out=coarse.view(np.uint64))
    else:
        np.right_shift(x, coarse, out=coarse)
    bucket >>= 6
    bucket += coarse
    return bucket, base[::ncb]


def _linear_buckets(scores: np.ndarray, lo: np.ndarray, hi: np.ndarray, buffers: _Buffers):
    """Evenly spaced buckets between each class's extreme scores, about two samples per bucket.

    ``floor((score - lo) * (B - 1) / (hi - lo))`` plus the class's first bucket, computed in the
    scores' own precision: every step rounds monotonically, so a higher score never lands in a
    lower bucket, which is all the counting needs. Returns ``(None, None)`` when the range is
    not finite (infinite scores), or when the bucket numbers would not be exact in that precision.
    """
    c, n = scores.shape
    per_class = max(1, int(n / _LINEAR_PER_BUCKET))
    span = hi - lo
    if not np.isfinite(span).all() or c * per_class >= 1 << (np.finfo(scores.dtype).nmant - 1):
        return None, None
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(span > 0, (per_class - 1) / span, 0).astype(scores.dtype)
    start = np.arange(0, (c + 1) * per_class, per_class, dtype=np.int64)
    # the float work runs in the "key" buffer (same item size as the scores), the result in "bucket"
    work = buffers.get("key", c, n).view(scores.dtype)
    np.subtract(scores, lo[:, None], out=work)
    np.multiply(work, scale[:, None], out=work)
    np.add(work, start[:-1, None].astype(scores.dtype), out=work)
    bucket = buffers.get("bucket", c, n)
    np.copyto(bucket, work, casting="unsafe")  # truncation: the values are >= 0
    return bucket, start


def _block_ap_sums(scores, known, pos, lo, hi, buffers, want_asl=True, want_voc=True):
    """Per-class sums of the two AP definitions' terms, for one class-major block.

    A plain sort of every class costs about as much as the official per-class loop, so we
    count instead: every score goes into a bucket (evenly spaced, :func:`_linear_buckets`, or,
    when the positives' buckets would hold more than ``_LINEAR_HOT_LIMIT`` samples per positive,
    cut to the scores' distribution, :func:`_buckets`); a histogram gives how
    many known samples of the class score in higher buckets, and only the buckets holding
    a positive are sorted exactly. Exact whatever the data; the sorted part grows with the
    number of positives.
    """
    c, n = scores.shape
    pos_at = np.flatnonzero(pos)
    npos = np.bincount(pos_at // n, minlength=c)
    asl = np.zeros(c)
    voc = np.zeros(c)
    if not len(pos_at):
        return npos, asl, voc
    mask = buffers.get("mask", c, n)
    nonneg = bool((lo >= 0).all())
    key = None
    for linear in (True, False):
        if linear:  # evenly spaced buckets: a few cheap passes, enough unless the scores crowd
            bucket, class_start = _linear_buckets(scores, lo, hi, buffers)
            if bucket is None:
                continue
        else:  # buckets cut to the scores' distribution (see _buckets)
            key = _ordered_key(scores, nonneg, out=buffers.get("key", c, n), scratch=mask)
            klo, khi = _ordered_key(lo, nonneg), _ordered_key(hi, nonneg)
            if key.dtype == np.uint32:
                bucket, class_start = _buckets(key, klo, khi, buffers)
            else:  # 64-bit keys: bucket their distance to the class's smallest instead
                diff = np.subtract(key, klo[:, None], out=buffers.get("diff", c, n))
                bucket, class_start = _buckets(diff, np.zeros_like(klo), khi - klo, buffers)
        unknown_bin = class_start[-1]
        if known is not None:
            np.putmask(bucket, np.logical_not(known, out=mask), unknown_bin)
        bucket = bucket.ravel()
        hot = buffers.flat("hot", unknown_bin + 1)
        hot[:] = False
        hot[bucket[pos_at]] = True
        idx = np.flatnonzero(np.take(hot, bucket, out=mask.ravel(), mode="clip"))  # samples in hot buckets
        if not linear or len(idx) <= _LINEAR_HOT_LIMIT * len(pos_at) + c:
            break  # else the positives share their buckets with too many others: cut finer
    # (at least 4 MiB, so that numpy asks for huge pages: fresh small pages fault one by one)
    hist = np.bincount(bucket, minlength=max(unknown_bin + 1, _HUGE_PAGES_FROM // 8))
    cum = np.cumsum(hist[:unknown_bin], out=buffers.flat("cum", unknown_bin))
    del hist
    cls, rows = np.divmod(idx, n)
    hkey = key.ravel()[idx] if key is not None else _ordered_key(scores.ravel()[idx], nonneg)
    class_last = class_start[1:] - 1
    cls_s, rows_s, same = _sort_hot(cls, rows, hkey, n, c, later_first=False)  # Query2Label's ties
    ties = bool(same.any())
    if want_voc or not ties:  # without ties both definitions see the same order
        pcls, prec = _positive_precisions(cls_s, rows_s, n, pos.ravel(), bucket, cum, class_last, npos)
    if want_voc:
        # precision envelope: running max from the last positive of each class backwards;
        # the class offset stops it from leaking across classes (precisions lie in (0, 1])
        offset = 2.0 * pcls
        env = np.maximum.accumulate((prec - offset)[::-1])[::-1] + offset
        voc = np.bincount(pcls, weights=env, minlength=c)
    if want_asl:
        if ties:  # ASL's tie order differs: later samples first
            flip = _reverse_runs(same)
            cls_s, rows_s = cls_s[flip], rows_s[flip]
            pcls, prec = _positive_precisions(cls_s, rows_s, n, pos.ravel(), bucket, cum, class_last, npos)
        asl = np.bincount(pcls, weights=prec, minlength=c)
    return npos, asl, voc


def _finish_ap(npos, asl, voc):
    with np.errstate(invalid="ignore", divide="ignore"):
        asl = np.where(npos > 0, 100.0 * asl / (npos + ASL_EPS), np.nan)
        voc = np.where(npos > 0, 100.0 * voc / npos, np.nan)
    return asl, voc
