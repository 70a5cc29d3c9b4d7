"""hf_mlcls.metrics: hand-computed answers, ties, skipped classes, unknown targets, agreement
with per-class references of both official definitions and with scikit-learn, the Trainer
hook and the `evaluate` module."""


import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hf_mlcls import _ap_counting
from hf_mlcls.metrics import average_precision, compute, compute_metrics


EPS = 1e-8  # the official ASL code divides by (number of positives + 1e-8)


# ----------------------------------------------------------------------------- references
# Written from the two definitions, one class and one sample at a time, in plain Python.


def ranked_labels(scores, targets, later_first):
    """Labels of the known samples of one class, best score first, in the given tie order."""
    known = [i for i in range(len(scores)) if targets[i] != -1]
    tie = (lambda i: -i) if later_first else (lambda i: i)
    known.sort(key=lambda i: (-float(scores[i]), tie(i)))
    return [int(targets[i]) for i in known]


def ref_asl_ap(scores, targets):
    """Mean over the positives of (positives so far / rank); ties: later sample first."""
    labels = ranked_labels(scores, targets, later_first=True)
    hits, total = 0, 0.0
    for rank, label in enumerate(labels, start=1):
        if label == 1:
            hits += 1
            total += hits / rank
    return float("nan") if hits == 0 else 100.0 * total / (hits + EPS)


def ref_voc_ap(scores, targets):
    """Area under the precision envelope over recall steps; ties: earlier sample first."""
    labels = ranked_labels(scores, targets, later_first=False)
    npos = sum(1 for label in labels if label == 1)
    if npos == 0:
        return float("nan")
    precision, recall, hits = [], [], 0
    for rank, label in enumerate(labels, start=1):
        hits += label == 1
        precision.append(hits / rank)
        recall.append(hits / npos)
    area, prev_recall = 0.0, 0.0
    for i in range(len(labels)):
        if recall[i] > prev_recall:  # recall steps up at each positive
            area += (recall[i] - prev_recall) * max(precision[i:])
            prev_recall = recall[i]
    return 100.0 * area


def ref_per_class(fn, scores, targets):
    return np.array([fn(scores[:, k], targets[:, k]) for k in range(scores.shape[1])])


def random_case(rng, n, c, ties=False, unknown=0.0, dtype=np.float64, logits=False):
    scores = rng.normal(0, 3, (n, c)) if logits else rng.random((n, c))
    if ties:
        scores = np.round(scores, 1)
    targets = (rng.random((n, c)) < rng.uniform(0.05, 0.5)).astype(np.int64)
    targets[rng.random((n, c)) < unknown] = -1
    return scores.astype(dtype), targets


# ----------------------------------------------------------------------------- known answers


def test_known_answer_ap_both_definitions():
    scores = np.array([[0.9, 0.9, 0.3], [0.8, 0.8, 0.2], [0.7, 0.7, 0.1], [0.6, 0.6, 0.4], [0.5, 0.5, 0.6]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    r = compute(scores, targets)
    # class 0: positives at ranks 1, 3, 5 -> precisions 1/1, 2/3, 3/5
    #   ASL: (1 + 2/3 + 3/5) / 3 = 0.755556;  VOC envelope: max(p_k..p_5) = 1, 2/3, 3/5 -> same
    # class 1: positives at ranks 2, 4, 5 -> precisions 1/2, 2/4, 3/5
    #   ASL: (1/2 + 1/2 + 3/5) / 3 = 0.533333; VOC envelope: 3/5, 3/5, 3/5 -> 0.6
    # class 2: no positive -> skipped
    asl0 = 100 * (1 + 2 / 3 + 3 / 5) / (3 + EPS)
    asl1 = 100 * (1 / 2 + 2 / 4 + 3 / 5) / (3 + EPS)
    np.testing.assert_allclose(r["AP_per_class"][:2], [asl0, asl1], atol=1e-9)
    np.testing.assert_allclose(r["AP_voc_per_class"][:2], [100 * (1 + 2 / 3 + 3 / 5) / 3, 60.0], atol=1e-9)
    assert np.isnan(r["AP_per_class"][2]) and np.isnan(r["AP_voc_per_class"][2])
    assert r["num_classes_skipped"] == 1 and r["num_classes"] == 3
    assert r["mAP"] == pytest.approx((asl0 + asl1) / 2, abs=1e-9)  # 64.4444, not /3
    assert r["mAP_voc"] == pytest.approx((75.555556 + 60.0) / 2, abs=1e-5)


def test_known_answer_thresholded_and_top_k():
    scores = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.1], [0.8, 0.3, 0.55], [0.1, 0.6, 0.3]])
    targets = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 1, 1]])
    r = compute(scores, targets, threshold=0.5, top_k=1)
    # at 0.5: predicted class 0 rows {0,2}, class 1 rows {1,3}, class 2 rows {0,2}
    # Nc = (1, 2, 2), Np = (2, 2, 2), Ng = (2, 2, 3)
    # CP = (1/2 + 1 + 1)/3 = 83.333, CR = (1/2 + 1 + 2/3)/3 = 72.222, CF1 = 2PR/(P+R) = 77.381
    # OP = 5/6 = 83.333, OR = 5/7 = 71.429, OF1 = 2 (5/6)(5/7) / (5/6 + 5/7) = 50/65 = 76.923
    assert r["CP"] == pytest.approx(250 / 3)
    assert r["CR"] == pytest.approx(100 * (0.5 + 1 + 2 / 3) / 3)
    cp, cr = 2.5 / 3, (0.5 + 1 + 2 / 3) / 3
    assert r["CF1"] == pytest.approx(100 * 2 * cp * cr / (cp + cr))
    assert r["OP"] == pytest.approx(500 / 6)
    assert r["OR"] == pytest.approx(500 / 7)
    assert r["OF1"] == pytest.approx(100 * 50 / 65)
    # top-1 (and >= 0.5): row 0 -> class 0, row 1 -> class 1, row 2 -> class 0, row 3 -> class 1
    # Nc = (1, 2, 0), Np = (2, 2, 0): class 2 predicts nothing -> precision 0
    # CP = (1/2 + 1 + 0)/3 = 50, CR = (1/2 + 1 + 0)/3 = 50, CF1 = 50
    # OP = 3/4 = 75, OR = 3/7 = 42.857, OF1 = 2 (3/4)(3/7) / (3/4 + 3/7) = 54.545
    assert r["CP_top1"] == pytest.approx(50.0)
    assert r["CR_top1"] == pytest.approx(50.0)
    assert r["CF1_top1"] == pytest.approx(50.0)
    assert r["OP_top1"] == pytest.approx(75.0)
    assert r["OR_top1"] == pytest.approx(300 / 7)
    assert r["OF1_top1"] == pytest.approx(100 * 2 * 0.75 * 3 / 7 / (0.75 + 3 / 7))


def test_top_k_requires_the_threshold_too_and_breaks_ties_by_class_index():
    scores = np.array([[0.7, 0.7, 0.7, 0.1], [0.2, 0.9, 0.3, 0.4]])
    targets = np.array([[0, 0, 1, 0], [1, 1, 0, 1]])
    r = compute(scores, targets, threshold=0.5, top_k=2)
    # row 0: three-way tie at 0.7 -> classes 0 and 1 (lowest indices); neither is positive
    # row 1: top-2 are classes 1 (0.9) and 3 (0.4), but 0.4 < 0.5 -> only class 1, a hit
    # Nc = (0, 1, 0, 0), Np = (1, 2, 0, 0), Ng = (1, 1, 1, 1)
    assert r["OP_top2"] == pytest.approx(100 / 3)  # 1 / 3
    assert r["OR_top2"] == pytest.approx(25.0)  # 1 / 4
    assert r["CP_top2"] == pytest.approx(12.5)  # (0/1 + 1/2 + 0 + 0) / 4
    assert r["CR_top2"] == pytest.approx(25.0)  # (0 + 1/1 + 0 + 0) / 4


# ----------------------------------------------------------------------------- ties


@pytest.mark.parametrize(
    "targets, asl, voc",
    [
        # scores tie at 0.5. ASL puts the later sample first, Query2Label the earlier one.
        ([1, 0], 50.0, 100.0),  # ASL: positive at rank 2 -> 1/2;  VOC: rank 1 -> 1
        ([0, 1], 100.0, 50.0),  # ASL: rank 1 -> 1;  VOC: rank 2 -> precision 1/2, envelope 1/2
    ],
)
def test_tie_order_of_each_definition(targets, asl, voc):
    scores = np.array([[0.5], [0.5]])
    targets = np.array(targets)[:, None]
    assert average_precision(scores, targets)[0] == pytest.approx(asl * 1 / (1 + EPS), abs=1e-9)
    assert average_precision(scores, targets, "voc")[0] == pytest.approx(voc, abs=1e-9)


def test_tie_order_is_the_stable_reading_of_the_official_expressions():
    # The official code sorts with numpy's default argsort, which is not stable (on AVX-512
    # CPUs not even for 4 samples), so its tie order is machine-dependent. Ours is the order
    # of the same expressions with a stable sort: checked here with numpy, tie-heavy data.
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = np.round(rng.random(40), 1)
        t = (rng.random(40) < 0.4).astype(int)
        t[0] = 1
        ranks = np.arange(1, 41)
        hit = t[np.argsort(s, kind="stable")[::-1]] == 1  # ASL: argsort()[::-1]
        asl = 100 * np.sum(np.cumsum(hit)[hit] / ranks[hit]) / (hit.sum() + EPS)
        hit = t[np.argsort(-s, kind="stable")] == 1  # Query2Label: argsort(-scores)
        precision = np.cumsum(hit) / ranks
        voc = 100 * np.maximum.accumulate(precision[::-1])[::-1][hit].mean()
        assert average_precision(s[:, None], t[:, None])[0] == pytest.approx(asl, abs=1e-9)
        assert average_precision(s[:, None], t[:, None], "voc")[0] == pytest.approx(voc, abs=1e-9)


def test_negative_zero_ties_with_zero():
    scores = np.array([[-0.0], [0.0], [0.0], [-0.0]], dtype=np.float32)
    targets = np.array([[0], [1], [0], [1]])
    np.testing.assert_allclose(average_precision(scores, targets), ref_per_class(ref_asl_ap, scores, targets))
    np.testing.assert_allclose(average_precision(scores, targets, "voc"), ref_per_class(ref_voc_ap, scores, targets))


# ----------------------------------------------------------------------------- skipped / unknown


def test_classes_without_positives_are_skipped_and_counted():
    rng = np.random.default_rng(1)
    scores, targets = random_case(rng, 50, 6)
    targets[:, 1] = 0
    targets[:, 4] = np.where(rng.random(50) < 0.5, -1, 0)  # unknowns and negatives only
    targets[:, [0, 2, 3, 5]] = np.maximum(targets[:, [0, 2, 3, 5]], np.eye(50, 4, dtype=int))
    r = compute(scores, targets)
    assert r["num_classes_skipped"] == 2
    assert np.isnan(r["AP_per_class"][[1, 4]]).all()
    kept = [0, 2, 3, 5]
    assert r["mAP"] == pytest.approx(np.mean(ref_per_class(ref_asl_ap, scores, targets)[kept]), abs=1e-9)
    assert r["mAP_voc"] == pytest.approx(np.mean(ref_per_class(ref_voc_ap, scores, targets)[kept]), abs=1e-9)
    # the class means leave the skipped classes out; the overall counts keep their predictions
    r_kept = compute(scores[:, kept], targets[:, kept])
    assert r["CP"] == pytest.approx(r_kept["CP"]) and r["CR"] == pytest.approx(r_kept["CR"])
    assert r["OR"] == pytest.approx(r_kept["OR"])


def test_all_classes_skipped():
    r = compute(np.random.default_rng(0).random((5, 3)), np.zeros((5, 3), dtype=int))
    assert r["num_classes_skipped"] == 3
    assert np.isnan(r["mAP"]) and np.isnan(r["mAP_voc"]) and np.isnan(r["CP"])


def test_unknown_targets_are_left_out():
    # class 0: the -1 entry (score 0.8) is dropped: ranking [0.9 neg, 0.7 pos] -> 1/2 = 50
    #   (counted as a negative it would be 1/3)
    # class 1: predicted at 0.5 on an unknown entry: neither a false nor a true positive
    scores = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.1]])
    targets = np.array([[0, -1], [-1, 1], [1, 0]])
    r = compute(scores, targets)
    assert r["AP_per_class"][0] == pytest.approx(50.0 / (1 + EPS))
    assert r["AP_voc_per_class"][0] == pytest.approx(50.0)
    # class 0 predicts rows 0 (neg), 2 (pos: 0.7 >= 0.5); class 1 predicts row 1 (pos) only
    assert r["OP"] == pytest.approx(200 / 3)  # Nc 1 + 1, Np 2 + 1 (row 0 of class 1 unknown)
    assert r["OR"] == pytest.approx(100.0)
    # and in general: the same as deleting those entries
    rng = np.random.default_rng(2)
    scores, targets = random_case(rng, 60, 1, unknown=0.3)
    keep = targets[:, 0] != -1
    np.testing.assert_allclose(average_precision(scores, targets), average_precision(scores[keep], targets[keep]))


# ----------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("logits", [False, True])
def test_agrees_with_reference_definitions(dtype, ties, logits):
    rng = np.random.default_rng(3)
    scores, targets = random_case(rng, 300, 7, ties=ties, unknown=0.1, dtype=dtype, logits=logits)
    targets[0] = 1  # every class has a positive
    np.testing.assert_allclose(
        average_precision(scores, targets), ref_per_class(ref_asl_ap, scores, targets), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        average_precision(scores, targets, "voc"), ref_per_class(ref_voc_ap, scores, targets), rtol=0, atol=1e-6
    )


def test_agrees_across_blocks_and_buckets(monkeypatch):
    # many classes per block or one; few samples per coarse bin or many: same numbers
    rng = np.random.default_rng(4)
    scores, targets = random_case(rng, 500, 9, ties=True, unknown=0.05, dtype=np.float32)
    expected = ref_per_class(ref_asl_ap, scores, targets), ref_per_class(ref_voc_ap, scores, targets)
    for block, sample_rows in [(64, 3), (1000, 50), (1 << 19, 2048)]:
        monkeypatch.setattr(_ap_counting, "_BLOCK_ELEMENTS", block)
        monkeypatch.setattr(_ap_counting, "_SAMPLE_ROWS", sample_rows)
        np.testing.assert_allclose(average_precision(scores, targets), expected[0], atol=1e-6, rtol=0)
        np.testing.assert_allclose(average_precision(scores, targets, "voc"), expected[1], atol=1e-6, rtol=0)


def test_the_reused_workspace_carries_nothing_from_one_call_to_the_next():
    # same shapes, so the second call works in the first call's memory: unknowns, ties and
    # positives of the first must not leak into the second (and a call left half-way gives it back)
    rng = np.random.default_rng(5)
    first = random_case(rng, 400, 6, ties=True, unknown=0.3, dtype=np.float32)
    second = random_case(rng, 400, 6, ties=False, unknown=0.0, dtype=np.float32)
    second[1][0] = 1
    expected = ref_per_class(ref_asl_ap, *second), ref_per_class(ref_voc_ap, *second)
    average_precision(*first)
    blocks = _ap_counting._class_blocks(*first)
    next(blocks)
    blocks.close()  # a consumer that stops early
    assert len(_ap_counting._SPARE) == 1
    np.testing.assert_allclose(average_precision(*second), expected[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(average_precision(*second, "voc"), expected[1], atol=1e-6, rtol=0)


def test_calls_in_several_threads_at_once_agree_with_one_at_a_time():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(6)
    cases = [random_case(rng, 3000, 12, ties=bool(i % 2), unknown=0.05 * (i % 3), dtype=np.float32) for i in range(8)]
    for scores, targets in cases:
        targets[0] = 1
    serial = [average_precision(s, t) for s, t in cases]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            parallel = list(pool.map(lambda case: average_precision(*case), cases))
            for a, b in zip(parallel, serial):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("crowded", [False, True])
def test_evenly_spaced_buckets_and_the_fallback_to_fitted_ones(monkeypatch, crowded):
    # evenly spaced buckets serve spread-out scores; scores crowded into a sliver of their
    # range (most near 0, a few spanning decades) fall back to buckets fitted to the data
    rng = np.random.default_rng(8)
    n, c = 2000, 5
    if crowded:
        scores = (10.0 ** rng.uniform(-12, 0, (n, c))) ** 4  # 1e-48 .. 1, most below 1e-8
    else:
        scores = rng.random((n, c))
    targets = (rng.random((n, c)) < 0.02).astype(np.int8)
    targets[0] = 1
    calls = {"linear": 0, "fitted": 0}
    for name, key in (("_linear_buckets", "linear"), ("_buckets", "fitted")):
        original = getattr(_ap_counting, name)

        def spy(*args, _original=original, _key=key):
            calls[_key] += 1
            return _original(*args)

        monkeypatch.setattr(_ap_counting, name, spy)
    for definition, ref in (("asl", ref_asl_ap), ("voc", ref_voc_ap)):
        np.testing.assert_allclose(
            average_precision(scores, targets, definition), ref_per_class(ref, scores, targets), rtol=0, atol=1e-9
        )
    assert calls["linear"] == 2
    assert calls["fitted"] == (2 if crowded else 0)


def test_extreme_values():
    values = [-np.inf, -1e300, -1.0, -1e-300, -0.0, 0.0, 1e-300, 1.0, 1e300, np.inf]
    rng = np.random.default_rng(5)
    scores = rng.choice(values, (200, 4))
    targets = (rng.random((200, 4)) < 0.3).astype(int)
    targets[0] = 1
    np.testing.assert_allclose(average_precision(scores, targets), ref_per_class(ref_asl_ap, scores, targets))
    np.testing.assert_allclose(average_precision(scores, targets, "voc"), ref_per_class(ref_voc_ap, scores, targets))


def test_agrees_with_sklearn_without_ties():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(6)
    scores, targets = random_case(rng, 400, 10)  # float64 uniform: no ties
    targets[0] = 1
    ours = average_precision(scores, targets) / 100 * (targets.sum(0) + EPS) / targets.sum(0)  # undo 1e-8
    theirs = [average_precision_score(targets[:, k], scores[:, k]) for k in range(10)]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    # scikit-learn ranks tied scores as one block; ours orders them as ASL does, so with ties
    # the two may differ (see the module docstring)


def test_rank_order_of_hot_samples_packed_and_lexsort_fallback():
    rng = np.random.default_rng(7)
    cls = rng.integers(0, 3, 50)
    key = rng.integers(0, 6, 50).astype(np.uint32)  # many ties
    rows = rng.permutation(50)
    for later_first in (False, True):
        tie = (lambda i: -rows[i]) if later_first else (lambda i: rows[i])
        expected = sorted(range(50), key=lambda i: (cls[i], -int(key[i]), tie(i)))
        packed = _ap_counting._sort_hot(cls, rows, key, 50, 3, later_first)
        fallback = _ap_counting._sort_hot(cls, rows, key, 1 << 40, 3, later_first)  # too wide to pack
        for got in (packed, fallback):
            assert np.array_equal(got[0], cls[expected]) and np.array_equal(got[1], rows[expected])
            same = (cls[expected][1:] == cls[expected][:-1]) & (key[expected][1:] == key[expected][:-1])
            assert np.array_equal(got[2], same)


# ----------------------------------------------------------------------------- inputs


def test_torch_and_list_inputs():
    rng = np.random.default_rng(8)
    scores, targets = random_case(rng, 30, 4)
    targets[0] = 1
    expected = compute(scores, targets)
    from_torch = compute(torch.from_numpy(scores), torch.from_numpy(targets))
    from_lists = compute(scores.tolist(), targets.tolist())
    for r in (from_torch, from_lists):
        assert r["mAP"] == expected["mAP"] and r["OF1"] == expected["OF1"]


@pytest.mark.parametrize(
    "scores, targets, message",
    [
        ([[0.1, np.nan]], [[1, 0]], "NaN at row 0, class 1"),
        ([[0.1, 0.2], [0.3, 0.4]], [[1, 0], [2, 0]], "row 1, class 0 holds 2"),
        ([[0.1, 0.2]], [[0.5, 1]], "row 0, class 0 holds 0.5"),
        ([[0.1, 0.2]], [[1, 0, 0]], "shape"),
        ([0.1, 0.2], [1, 0], "2-D"),
    ],
)
def test_bad_input_is_named(scores, targets, message):
    with pytest.raises(ValueError, match=message):
        compute(np.array(scores), np.array(targets))


# ----------------------------------------------------------------------------- Trainer, evaluate


def test_compute_metrics_on_eval_prediction():
    rng = np.random.default_rng(9)
    logits = rng.normal(0, 4, (40, 5)).astype(np.float32)
    labels = (rng.random((40, 5)) < 0.3).astype(np.float32)
    labels[0] = 1
    labels[1, 2] = -1
    attentions = rng.random((40, 5, 7)).astype(np.float32)
    out = compute_metrics(EvalPrediction(predictions=(logits, attentions), label_ids=labels))
    expected = compute(1 / (1 + np.exp(-logits.astype(np.float64))), labels)
    keys = ["mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1"]
    assert set(out) == set(keys) | {f"{k}_top3" for k in keys[2:]} | {"num_classes_skipped"}
    assert out.pop("num_classes_skipped") == expected["num_classes_skipped"]  # compute()'s own count, passed through
    for k, v in out.items():
        assert type(v) is float and v == pytest.approx(expected[k], abs=1e-9)
    out["num_classes_skipped"] = expected["num_classes_skipped"]
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == out
    with pytest.raises(ValueError, match="batch_eval_metrics"):
        compute_metrics(EvalPrediction(predictions=logits, label_ids=labels), compute_result=True)


def test_evaluate_module_offline(monkeypatch, tmp_path):
    import evaluate

    import hf_mlcls

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # the path must not depend on the working directory
    rng = np.random.default_rng(10)
    scores, targets = random_case(rng, 20, 4, unknown=0.1)
    targets[0] = 1
    targets[:, 3] = np.minimum(targets[:, 3], 0)  # a class with no positive
    metric = evaluate.load(hf_mlcls.EVALUATE_METRIC)
    for i in range(0, 20, 8):
        metric.add_batch(predictions=scores[i : i + 8].tolist(), references=targets[i : i + 8].tolist())
    r = metric.compute(top_k=2)
    expected = compute(scores, targets, top_k=2)
    assert r["mAP"] == pytest.approx(expected["mAP"]) and r["CF1_top2"] == pytest.approx(expected["CF1_top2"])
    assert r["num_classes_skipped"] == 1
    np.testing.assert_allclose(r["AP_voc_per_class"], expected["AP_voc_per_class"])
