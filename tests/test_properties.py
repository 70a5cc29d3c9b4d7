"""Property-based tests (hypothesis).

Metrics: AP depends only on the order of the scores (any strictly increasing transform of them
gives the same AP), not on the order of the samples (without ties), and scores that rank every
positive above every negative give 100 whatever the unknown entries score.

Parsers: the CSV, JSON-lines and COCO readers, fed arbitrary rows, arbitrary JSON and arbitrary
bytes, either load or raise a documented error (``DatasetLayoutError`` and its subclasses,
``MissingDatasetFileError`` being also a ``FileNotFoundError``), never anything else; what they
load is consistent (label indices in range, image paths inside the dataset folder).

Example counts are kept modest (the file runs in well under a minute on 2 cores); hypothesis'
example database is off so nothing is written into the checkout.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import warnings
from unittest import mock

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install hypothesis")
from hypothesis import HealthCheck, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

from hf_mlcls.data import DatasetLayoutError, load_multilabel_dataset  # noqa: E402
from hf_mlcls.metrics import average_precision, compute  # noqa: E402

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------------- metrics


@st.composite
def scored_targets(draw, max_n=30, max_c=4, unknown=True, ties=True):
    """(scores, targets): targets in {0, 1} (and -1 when ``unknown``), scores from a small
    grid (many ties) or any finite float."""
    n = draw(st.integers(2, max_n))
    c = draw(st.integers(1, max_c))
    values = st.sampled_from([-1, 0, 1]) if unknown else st.sampled_from([0, 1])
    targets = draw(arrays(np.int64, (n, c), elements=values))
    if ties and draw(st.booleans()):
        scores = draw(arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])))
    else:
        scores = draw(arrays(np.float64, (n, c), elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)))
    return scores, targets


def assert_same_ap(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)


@settings(max_examples=60, **SETTINGS)
@given(data=scored_targets(), increments=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=200),
       offset=st.floats(-1e6, 1e6))
def test_ap_is_invariant_to_any_strictly_increasing_transform(data, increments, offset):
    """On the finite set of values present, a strictly increasing map is any sorted set of new
    values: the distinct scores (ties included) are sent to ``offset + cumsum(increments)``."""
    scores, targets = data
    distinct = np.unique(scores)
    steps = np.resize(np.asarray(increments), distinct.size)
    new_values = offset + np.cumsum(steps)
    assume(np.all(np.diff(new_values) > 0))  # still strictly increasing in floating point
    transformed = new_values[np.searchsorted(distinct, scores)]
    for definition in ("asl", "voc"):
        assert_same_ap(average_precision(transformed, targets, definition), average_precision(scores, targets, definition))
    # and the usual suspects: sigmoid of logits, an affine map, exp of a bounded range
    bounded = np.clip(scores, -30, 30)
    for f in (lambda x: 1 / (1 + np.exp(-x)), lambda x: 3.5 * x - 2.0, np.exp):
        mapped = f(bounded)
        if np.unique(mapped).size == np.unique(bounded).size:  # no two values rounded together
            assert_same_ap(average_precision(mapped, targets), average_precision(bounded, targets))


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_ap_is_invariant_to_the_order_of_samples(data):
    """Without ties; with ties the order among equal scores is each definition's documented
    tie rule (later sample first / earlier sample first), which depends on the sample order."""
    n = data.draw(st.integers(2, 30))
    c = data.draw(st.integers(1, 4))
    scores = data.draw(arrays(np.float64, (n, c), elements=st.floats(-1e3, 1e3, allow_nan=False), unique=True))
    targets = data.draw(arrays(np.int64, (n, c), elements=st.sampled_from([-1, 0, 1])))
    order = np.asarray(data.draw(st.permutations(range(n))))
    for definition in ("asl", "voc"):
        assert_same_ap(average_precision(scores[order], targets[order], definition),
                       average_precision(scores, targets, definition))
    a, b = compute(scores, targets), compute(scores[order], targets[order])
    for key in ("mAP", "mAP_voc", "CF1", "OF1", "num_classes_skipped"):
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-9, nan_ok=True), key


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_scores_ranking_every_positive_first_give_100(data):
    n = data.draw(st.integers(1, 30))
    c = data.draw(st.integers(1, 5))
    targets = data.draw(arrays(np.int64, (n, c), elements=st.sampled_from([-1, 0, 1])))
    high = data.draw(arrays(np.float64, (n, c), elements=st.floats(0.6, 1.0)))
    low = data.draw(arrays(np.float64, (n, c), elements=st.floats(0.0, 0.5)))
    anything = data.draw(arrays(np.float64, (n, c), elements=st.floats(0.0, 1.0)))
    # positives above every negative; unknown entries score anything (they are left out)
    scores = np.where(targets == 1, high, np.where(targets == 0, low, anything))
    result = compute(scores, targets)
    has_positive = (targets == 1).any(axis=0)
    assert result["num_classes_skipped"] == int((~has_positive).sum())
    if has_positive.any():
        assert result["mAP"] == pytest.approx(100.0, abs=1e-6)  # ASL's 1e-8 in the denominator
        assert result["mAP_voc"] == pytest.approx(100.0, abs=1e-9)
        np.testing.assert_allclose(result["AP_per_class"][has_positive], 100.0, atol=1e-6)
    else:
        assert np.isnan(result["mAP"]) and np.isnan(result["mAP_voc"])
    assert np.isnan(result["AP_per_class"][~has_positive]).all()


# ----------------------------------------------------------------------------------- parsers

# Text that exercises CSV quoting, label-list literals, separators, paths and Unicode (surrogates
# included: a JSON "\ud800" escape produces one).
TRICKY = st.sampled_from(['"', "'", ",", "|", ";", "[", "]", "{", "}", "\n", "\r", "\x00", "\\", "/", "..", " ",
                          "\ufeff", "\ud800", "é", "0", "-1", "99999999999", "1e400", "null", "True"])
CELL = st.lists(st.one_of(TRICKY, st.text(max_size=6)), max_size=6).map("".join)
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), CELL)
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(CELL, inner, max_size=4)), max_leaves=12)


def run_loader(name, files: dict, **options):
    """Write ``files`` into a fresh folder and load it; returns the DatasetDict or the
    documented error. Anything else propagates and fails the test."""
    with tempfile.TemporaryDirectory() as root:
        for rel, content in files.items():
            path = os.path.join(root, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                loaded = load_multilabel_dataset(name, root, verify_images=False, **options)
            except DatasetLayoutError as err:  # MissingDatasetFileError is one too
                assert str(err)
                return err
        for split in loaded.values():
            n = split.features["labels"].feature.num_classes
            for row in split.select_columns([c for c in split.column_names if c.endswith("labels")]).to_list():
                assert all(0 <= i < n for labels in row.values() for i in labels)
            for item in split.cast_column("image", type(split.features["image"])(decode=False))["image"]:
                assert os.path.normpath(item["path"]).startswith(os.path.realpath(root) + os.sep) or \
                    os.path.normpath(item["path"]).startswith(root + os.sep)
        return loaded


def csv_text(rows, well_formed: bool) -> str:
    if well_formed:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue()
    return "".join(",".join(row) + "\n" for row in rows)


HEADER = st.one_of(st.just(["image", "labels"]), st.just(["image", "labels", "unknown_labels"]),
                   st.lists(CELL, max_size=4))
# Well-formed rows too, so that loading succeeds often enough for its result to be checked.
IMAGE_NAME = st.sampled_from(["a.jpg", "b.png", "sub/c.jpg", "d e.jpg", "é.jpg"])
LABEL_TEXT = st.sampled_from(["cat", "cat|dog", "dog", "", "[0, 1]", "[2]", '["cat", "traffic light"]', "['dog']"])
GOOD_CSV_ROWS = st.lists(st.tuples(IMAGE_NAME, LABEL_TEXT).map(list), min_size=1, max_size=5, unique_by=lambda r: r[0])
CSV_FILE = st.one_of(
    st.builds(lambda header, rows, ok: csv_text([header] + rows, ok), HEADER,
              st.lists(st.lists(CELL, min_size=0, max_size=4), max_size=6), st.booleans()),
    st.builds(lambda rows: csv_text([["image", "labels"]] + rows, True), GOOD_CSV_ROWS),
    st.binary(max_size=200),
)
OPTIONS = st.fixed_dictionaries({}, optional={
    "classes": st.one_of(st.lists(CELL, max_size=4), st.just("classes.txt")),
    "label_type": st.sampled_from(["auto", "name", "index"]),
    "drop_unlisted_labels": st.booleans(),
    "keep_empty": st.booleans(),
})
CLASS_FILE = st.one_of(st.none(), st.binary(max_size=40), st.lists(CELL, max_size=4).map("\n".join))


def _files(name, content, class_file):
    files = {name: content}
    if class_file is not None:
        files["classes.txt"] = class_file
    return files


@settings(max_examples=120, **SETTINGS)
@given(train=CSV_FILE, class_file=CLASS_FILE, options=OPTIONS)
@example(train="image,labels\na.jpg,100000000000\n", class_file=None, options={})  # an id column, not classes
@example(train="image,labels\na.jpg," + "[" * 50000 + "\n", class_file=None, options={})  # nested too deeply
@example(train="image,labels\na.jpg,caf\xe9\n".encode("latin-1"), class_file=None, options={})  # not UTF-8
@example(train='image,labels\na.jpg,"[1, 2\n', class_file=None, options={})  # truncated in a quoted field
def test_csv_parser_raises_only_documented_errors(train, class_file, options):
    run_loader("csv", _files("train.csv", train, class_file), splits=["train"], **options)


JSONL_LINE = st.one_of(
    st.builds(lambda image, labels: json.dumps({"image": image, "labels": labels}), CELL, JSON_VALUE),
    st.builds(json.dumps, JSON_VALUE),
    CELL,
)
GOOD_JSONL = st.lists(
    st.tuples(IMAGE_NAME, st.one_of(st.lists(st.sampled_from(["cat", "dog", "traffic light"]), max_size=3),
                                    st.lists(st.integers(0, 3), max_size=3), LABEL_TEXT)),
    min_size=1, max_size=5, unique_by=lambda r: r[0],
).map(lambda rows: "\n".join(json.dumps({"image": i, "labels": labels}) for i, labels in rows))
JSONL_FILE = st.one_of(st.lists(JSONL_LINE, max_size=6).map("\n".join), GOOD_JSONL, st.binary(max_size=200))


@settings(max_examples=120, **SETTINGS)
@given(train=JSONL_FILE, class_file=CLASS_FILE, options=OPTIONS)
@example(train='{"image": "a\\ud800.jpg", "labels": ["x"]}', class_file=None, options={})  # lone surrogate
@example(train='{"image": "a.jpg", "labels": "' + "[" * 5000 + '"}', class_file=None, options={})
@example(train='{"image": "a.jpg", "labels": [1, 2]', class_file=None, options={})  # truncated line
@example(train='{"image": "a.jpg", "labels": "cat"}', class_file=None, options={"label_type": "index"})  # a name, not an index
def test_jsonl_parser_raises_only_documented_errors(train, class_file, options):
    run_loader("jsonl", _files("train.jsonl", train, class_file), splits=["train"], **options)


ID = st.one_of(st.integers(), st.integers(-5, 5), st.floats(allow_nan=False), st.booleans(), st.none(), CELL)
COCO_DOC = st.fixed_dictionaries(
    {},
    optional={
        "images": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"id": ID, "file_name": CELL}), max_size=5),
                            JSON_VALUE),
        "annotations": st.one_of(
            st.lists(st.fixed_dictionaries({}, optional={"image_id": ID, "category_id": ID, "iscrowd": JSON_VALUE,
                                                          "id": ID}), max_size=6),
            JSON_VALUE),
        "categories": st.one_of(st.lists(st.fixed_dictionaries({}, optional={"id": ID, "name": JSON_VALUE}),
                                         max_size=4), JSON_VALUE),
    },
)
VALID_COCO = json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
                         "annotations": [{"id": 9, "image_id": 1, "category_id": 3, "segmentation": [[0, 0, 1, 1]]}],
                         "categories": [{"id": 3, "name": "cat"}]})
@st.composite
def good_coco(draw):
    """A well-formed document: unique image and category ids, annotations pointing at them (or not)."""
    image_ids = draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=4, unique=True))
    names = draw(st.lists(IMAGE_NAME, min_size=len(image_ids), max_size=len(image_ids), unique=True))
    cat_ids = draw(st.lists(st.integers(1, 90), min_size=1, max_size=3, unique=True))
    cat_names = draw(st.lists(st.sampled_from(["cat", "dog", "person", "traffic light"]), min_size=len(cat_ids),
                              max_size=len(cat_ids), unique=True))
    known = st.sampled_from(image_ids), st.sampled_from(cat_ids)
    anns = draw(st.lists(st.tuples(st.one_of(known[0], ID), st.one_of(known[1], ID), st.sampled_from([0, 1])), max_size=6))
    return json.dumps({"images": [{"id": i, "file_name": n} for i, n in zip(image_ids, names)],
                       "annotations": [{"id": k, "image_id": i, "category_id": c, "iscrowd": crowd}
                                       for k, (i, c, crowd) in enumerate(anns)],
                       "categories": [{"id": i, "name": n} for i, n in zip(cat_ids, cat_names)]})


COCO_FILE = st.one_of(
    COCO_DOC.map(lambda d: json.dumps(d)),
    good_coco(),
    st.builds(json.dumps, JSON_VALUE),
    st.integers(0, len(VALID_COCO)).map(lambda k: VALID_COCO[:k]),  # truncated anywhere
    st.binary(max_size=200),
)


@pytest.mark.parametrize("parser", ["orjson", "json"])
def test_coco_parser_raises_only_documented_errors(parser):
    """With orjson (when installed) and with the standard library's parser (orjson is optional)."""
    if parser == "orjson":
        pytest.importorskip("orjson")
    hidden = {"orjson": None} if parser == "json" else {}

    @settings(max_examples=100, **SETTINGS)
    @given(doc=COCO_FILE)
    @example(doc=json.dumps({"images": [{"id": 2**70, "file_name": "a.jpg"}], "annotations": [],
                             "categories": [{"id": 1, "name": "x"}]}))
    @example(doc=json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [],
                             "categories": [{"id": -(2**70), "name": "x"}]}))
    @example(doc=json.dumps({"images": [{"id": 1, "file_name": "a\ud800"}], "annotations": [],
                             "categories": [{"id": 1, "name": "x"}]}))
    @example(doc="[" * 100_000)
    def check(doc):
        files = {"annotations/instances_val2014.json": doc, "val2014/.keep": b""}
        run_loader("coco2014", files, splits=["validation"])

    with mock.patch.dict(sys.modules, hidden):
        check()


# The other CSV readers: NUS-WIDE's data.csv and Open Images' label and class files.

NUS_GOOD_ROW = st.tuples(st.sampled_from(["a.jpg", "Flickr/b.jpg", "c d.jpg", "a.jpg"]),
                         st.sampled_from(["['sky', 'water']", "[]", "['sky']", "['zebra']", "[\"it's\"]"]),
                         st.sampled_from(["train", "val"])).map(list)
NUS_ROW = st.one_of(
    NUS_GOOD_ROW,
    st.tuples(st.one_of(st.sampled_from(["a.jpg", "../a.jpg", "/etc/passwd"]), CELL), CELL, CELL).map(list),
    st.lists(CELL, max_size=4),  # any number of fields
)
NUS_FILE = st.one_of(
    st.builds(lambda rows, ok: csv_text([["image_path", "tags", "split"]] + rows, ok),
              st.one_of(st.lists(NUS_GOOD_ROW, min_size=1, max_size=4), st.lists(NUS_ROW, max_size=6)), st.booleans()),
    st.binary(max_size=200),
)


@settings(max_examples=80, **SETTINGS)
@given(data=NUS_FILE, class_file=CLASS_FILE, drop=st.booleans())
@example(data="image_path,tags,split\na.jpg,\"['sky'\",train\nb.jpg,[],val\n", class_file=None, drop=False)  # unclosed list
@example(data="image_path,tags,split\n../a.jpg,\"['sky']\",train\nb.jpg,[],val\n", class_file=None, drop=False)
def test_nus_wide_csv_parser_raises_only_documented_errors(data, class_file, drop):
    options = {"drop_unlisted_labels": drop}
    if class_file is not None:
        options["classes"] = "classes.txt"
    run_loader("nus-wide", _files("data.csv", data, class_file), layout="csv", splits=["train"], **options)


OI_GOOD_ROW = st.tuples(st.sampled_from(["000a1", "000b2"]), st.sampled_from(["verification", "crowdsource"]),
                        st.sampled_from(["/m/01", "/m/02"]), st.sampled_from(["0", "1"])).map(list)
OI_ROW = st.one_of(
    OI_GOOD_ROW,
    st.tuples(st.one_of(st.sampled_from(["000a1", "../x"]), CELL), CELL, st.one_of(st.just("/m/01"), CELL),
              st.one_of(st.sampled_from(["0", "1", "0.5", "nan"]), CELL)).map(list),
    st.lists(CELL, max_size=5),  # any number of fields
)
OI_DESCRIPTIONS = st.one_of(
    st.just("LabelName,DisplayName\n/m/01,Cat\n/m/02,Dog\n"),
    st.builds(lambda rows, ok: csv_text([["LabelName", "DisplayName"]] + rows, ok), st.lists(OI_ROW, max_size=4),
              st.booleans()),
    st.binary(max_size=100),
)
OI_LABELS = st.one_of(
    st.builds(lambda rows, ok: csv_text([["ImageID", "Source", "LabelName", "Confidence"]] + rows, ok),
              st.one_of(st.lists(OI_GOOD_ROW, min_size=1, max_size=4), st.lists(OI_ROW, max_size=6)), st.booleans()),
    st.builds(lambda header, rows: csv_text([header] + rows, True), st.lists(CELL, max_size=4), st.lists(OI_ROW, max_size=3)),
    st.binary(max_size=200),
)


@settings(max_examples=80, **SETTINGS)
@given(descriptions=OI_DESCRIPTIONS, labels=OI_LABELS, trainable=st.one_of(st.none(), st.lists(CELL, max_size=3).map("\n".join)),
       unverified_as_negative=st.booleans())
@example(descriptions="LabelName,DisplayName\n/m/01,Cat\n", labels="ImageID,Source,LabelName,Confidence\n000a1,x,/m/01,1e400\n",
         trainable=None, unverified_as_negative=False)
def test_open_images_parser_raises_only_documented_errors(descriptions, labels, trainable, unverified_as_negative):
    files = {"oidv6-class-descriptions.csv": descriptions, "oidv6-train-annotations-human-imagelabels.csv": labels}
    if trainable is not None:
        files["oidv6-classes-trainable.txt"] = trainable
    run_loader("openimages-v6", files, splits=["train"], unverified_as_negative=unverified_as_negative)
