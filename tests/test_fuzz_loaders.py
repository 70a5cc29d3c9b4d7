"""Fuzz pass over every loader's own file format: values of the wrong type, duplicates, invisible characters
(BOM, zero-width space, NBSP) and Unicode variants (NFC / NFD) drawn into COCO JSON, VOC XML, CSV, JSON lines,
NUS-WIDE lists and data.csv, Open Images CSVs and Visual Genome files.

Each example either loads, and then its classes are exactly the distinct names the file holds after the
documented normalisation (docs/errors.md, "Values inside annotation files"), or raises a DatasetLayoutError
naming the file; never another exception, never a hang (each example runs under an alarm). Runs are
derandomised (the same examples every run) and small (about 40 per format), so a failure reproduces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import unicodedata
from contextlib import contextmanager
from xml.sax.saxutils import escape

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hf_mlcls.data import DatasetLayoutError, load_multilabel_dataset  # noqa: E402

def _png_bytes() -> bytes:
    import io

    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.new("RGB", (2, 2), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])

PNG = _png_bytes()
BASE = ["cat", "dog", "caf\u00e9", "traffic light", "3"]
INVISIBLE = ["\ufeff", "\u200b", "\u00a0", " ", ""]


@st.composite
def name_text(draw):
    """A class name as a file may spell it: a base name in NFC or NFD, maybe padded with invisible characters,
    or (rarely) with a zero-width space inside."""
    base = draw(st.sampled_from(BASE))
    base = unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), base)
    if draw(st.integers(0, 9)) == 0:
        base = base[:1] + "\u200b" + base[1:]
    return draw(st.sampled_from(INVISIBLE)) + base + draw(st.sampled_from(INVISIBLE))


#: a JSON value where a name or an id belongs: mostly right, sometimes of the wrong type
WRONG = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False, width=16),
                  st.lists(st.sampled_from(BASE), max_size=2), st.dictionaries(st.sampled_from(BASE), st.integers(0, 3), max_size=1),
                  st.sampled_from(["1", "", " "]))
NAME_VALUE = st.one_of(name_text(), name_text(), name_text(), WRONG)
ID_VALUE = st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), WRONG)


def expected_name(text: str):
    """The documented normalisation (NFC, Unicode spaces to spaces, white space and invisible format characters
    stripped at the ends); None where the name must be refused."""
    if not isinstance(text, str):
        return None
    name = "".join(" " if unicodedata.category(c) == "Zs" else c for c in unicodedata.normalize("NFC", text))
    name = name.strip(" \t\r\n\ufeff\u200b")
    if not name or any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        return None
    return name


@contextmanager
def folder_and_alarm(seconds: int = 30):
    root = tempfile.mkdtemp(prefix="hf-mlcls-fuzz-")
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail(f"a loader ran over {seconds} s (hang?)"))
    signal.alarm(seconds)
    try:
        yield root
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        shutil.rmtree(root, ignore_errors=True)


def _image(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(PNG)


def q(cell: str) -> str:
    """A CSV field, quoted the CSV way (not JSON's: CSV keeps backslashes as they are)."""
    return '"' + cell.replace('"', '""') + '"'


def load_or_refuse(name: str, root: str, culprit: str, **options):
    """The dataset, or None after checking the DatasetLayoutError names ``culprit`` (a file name)."""
    try:
        return load_multilabel_dataset(name, root, **options)
    except DatasetLayoutError as exc:
        assert culprit in str(exc), f"{type(exc).__name__} does not name {culprit}: {exc}"
        return None


def assert_classes(ds, names) -> None:
    if ds is None:
        return
    for split in ds.values():
        assert split.features["labels"].feature.names == names


# ------------------------------------------------------------------------------------------------ the formats


def _mostly(valid, wrong=WRONG, odds=4):
    """``valid`` most of the time, a value of the wrong type one time in ``odds``."""
    return st.integers(1, odds).flatmap(lambda k: wrong if k == odds else valid)  # hypothesis leans to small k


@SETTINGS
@given(names=_mostly(st.lists(name_text(), min_size=1, max_size=3, unique_by=expected_name),
                     st.lists(name_text(), min_size=2, max_size=3)),
       image_ids=st.tuples(_mostly(st.just(1), st.one_of(WRONG, st.just(2)), odds=6), st.just(2)),
       files=st.sampled_from([("a.jpg", "b.jpg"), ("a.jpg", "b.jpg"), ("a.jpg", "a.jpg")]),
       anns=st.lists(st.tuples(_mostly(st.sampled_from([1, 2]), odds=10), _mostly(st.just(1), odds=10)), max_size=3),
       cat_id=_mostly(st.just(1), odds=8), bom=st.booleans())
def test_coco(names, image_ids, files, anns, cat_id, bom):
    with folder_and_alarm() as root:
        cats = [{"id": cat_id if k == 0 else k + 1, "name": n} for k, n in enumerate(names)]
        doc = {"images": [{"id": i, "file_name": f} for i, f in zip(image_ids, files)],
               "annotations": [{"id": k, "image_id": i, "category_id": c} for k, (i, c) in enumerate(anns)],
               "categories": cats}
        os.makedirs(os.path.join(root, "annotations"))
        for native in ("train2014", "val2014"):
            for f in ("a.jpg", "b.jpg"):
                _image(os.path.join(root, native, f))
            with open(os.path.join(root, "annotations", f"instances_{native}.json"), "w", encoding="utf-8") as fh:
                fh.write(("\ufeff" if bom else "") + json.dumps(doc))
        ds = load_or_refuse("coco2014", root, "instances_")
        if ds is not None:
            assert all(type(i) is int for i in image_ids) and len(set(files)) == 2 and type(cat_id) is int
            assert_classes(ds, [expected_name(c["name"]) for c in sorted(cats, key=lambda c: c["id"])])


@SETTINGS
@given(objects=st.lists(st.tuples(_mostly(st.sampled_from(["dog", "cat", " dog\u00a0", "\u200bcat"]), name_text()),
                                  _mostly(st.sampled_from(["0", "1", " 1 ", ""]),
                                          st.sampled_from(["inf", "nan", "1.5", "-0", "\u0661", "true"]), odds=6)),
                        min_size=1, max_size=3),
       ids=st.lists(st.sampled_from(["000001", "000002", "000001", "\ufeff000001", "000001\u200b"]), min_size=1, max_size=2,
                    unique=True))
def test_voc(objects, ids):
    with folder_and_alarm() as root:
        voc = os.path.join(root, "VOC2007")
        os.makedirs(os.path.join(voc, "Annotations"))
        os.makedirs(os.path.join(voc, "ImageSets", "Main"))
        for image_id in ("000001", "000002"):
            body = "".join(f"<object><name>{escape(n)}</name><difficult>{escape(d)}</difficult></object>" for n, d in objects)
            with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w", encoding="utf-8") as fh:
                fh.write(f"<annotation>{body}</annotation>")
            _image(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
        for split in ("train", "val"):
            with open(os.path.join(voc, "ImageSets", "Main", f"{split}.txt"), "w", encoding="utf-8") as fh:
                fh.write("\n".join(ids) + "\n")
        ds = load_or_refuse("voc2007", root, ".")
        if ds is not None:
            assert all(expected_name(n) in ("dog", "cat") and d.strip() in ("0", "1", "") for n, d in objects)
            assert all(i.lstrip("\ufeff") in ("000001", "000002") for i in ids[:1]) and all(i in ("000001", "000002") for i in ids[1:])


def _label_cell(draw_names, style):
    if style == "bar":
        return "|".join(draw_names)
    if style == "json":
        return json.dumps(draw_names)
    return repr(list(draw_names))


@SETTINGS
@given(rows=st.lists(st.tuples(st.sampled_from(["a.jpg", "b.jpg", "c.jpg"]), st.lists(name_text(), max_size=3),
                               st.sampled_from(["bar", "json", "python"])), min_size=1, max_size=4),
       header=st.sampled_from(["image,labels", "\ufeffimage,labels", "image,labels,labels", "image,label"]))
def test_csv(rows, header):
    with folder_and_alarm() as root:
        for f in ("a.jpg", "b.jpg", "c.jpg"):
            _image(os.path.join(root, f))
        lines = [header] + [f"{p},{q(_label_cell(names, style))}" + (",x" if header.endswith("labels,labels") else "")
                            for p, names, style in rows]
        for split in ("train.csv", "validation.csv"):
            with open(os.path.join(root, split), "w", encoding="utf-8", newline="") as fh:
                fh.write("\n".join(lines) + "\n")
        ds = load_or_refuse("csv", root, ".csv", label_type="name")
        if ds is not None:
            names = sorted({expected_name(n) for _, ns, _ in rows for n in ns})
            assert None not in names
            assert_classes(ds, names)


@SETTINGS
@given(rows=st.lists(st.tuples(st.sampled_from(["a.jpg", "b.jpg", "c.jpg"]),
                               _mostly(st.lists(_mostly(name_text(), odds=12), max_size=3), odds=8)),
                     min_size=1, max_size=3, unique_by=lambda r: r[0]), bom=st.booleans())
def test_jsonl(rows, bom):
    with folder_and_alarm() as root:
        for f in ("a.jpg", "b.jpg", "c.jpg"):
            _image(os.path.join(root, f))
        text = ("\ufeff" if bom else "") + "".join(json.dumps({"image": p, "labels": v}) + "\n" for p, v in rows)
        for split in ("train.jsonl", "validation.jsonl"):
            with open(os.path.join(root, split), "w", encoding="utf-8") as fh:
                fh.write(text)
        ds = load_or_refuse("jsonl", root, ".jsonl", label_type="name")
        if ds is not None:
            values = [n for _, v in rows if v is not None for n in (v if isinstance(v, list) else [v])]
            assert all(isinstance(n, str) for n in values)
            assert_classes(ds, sorted({expected_name(n) for n in values}))


@SETTINGS
@given(concepts=st.lists(name_text(), min_size=1, max_size=3),
       entries=st.lists(st.sampled_from(["a/1.jpg", "a\\2.jpg", "a/1.jpg", "\ufeffa/3.jpg", "C:\\x\\Flickr\\a\\4.jpg"]),
                        min_size=1, max_size=3),
       values=st.sampled_from(["0", "1", "2", " 1", "\ufeff1"]))
def test_nus_wide_official(concepts, entries, values):
    with folder_and_alarm() as root:
        with open(os.path.join(root, "Concepts81.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(concepts) + "\n")
        os.makedirs(os.path.join(root, "ImageList"))
        os.makedirs(os.path.join(root, "TrainTestLabels"))
        for f in ("1.jpg", "2.jpg", "3.jpg", "4.jpg"):
            _image(os.path.join(root, "Flickr", "a", f))
        for nat in ("Train", "Test"):
            with open(os.path.join(root, "ImageList", f"{nat}Imagelist.txt"), "w", encoding="utf-8") as fh:
                fh.write("\r\n".join(entries) + "\r\n")
            for c in {expected_name(c) or c.strip() for c in concepts}:
                if c and "/" not in c:
                    with open(os.path.join(root, "TrainTestLabels", f"Labels_{c}_{nat}.txt"), "w", encoding="utf-8") as fh:
                        fh.write("".join(values + "\n" for _ in entries))
        ds = load_or_refuse("nus-wide", root, root)
        if ds is not None:
            assert_classes(ds, [expected_name(c) for c in concepts])


@SETTINGS
@given(rows=st.lists(st.tuples(st.sampled_from(["a.jpg", "b.jpg"]), st.lists(name_text(), max_size=2),
                               st.sampled_from(["train", "val", " val"])), min_size=2, max_size=4))
def test_nus_wide_csv(rows):
    with folder_and_alarm() as root:
        for f in ("a.jpg", "b.jpg"):
            _image(os.path.join(root, f))
        with open(os.path.join(root, "data.csv"), "w", encoding="utf-8", newline="") as fh:
            fh.write("image,labels,split\n" + "".join(f"{p},{q(repr(list(ns)))},{s}\n" for p, ns, s in rows))
        ds = load_or_refuse("nus-wide", root, "data.csv")
        if ds is not None:
            names = sorted({expected_name(n) for _, ns, s in rows if s.strip() in ("train", "val") for n in ns})
            assert_classes(ds, names)


@SETTINGS
@given(display=st.lists(name_text(), min_size=2, max_size=2),
       rows=st.lists(st.tuples(st.sampled_from(["0a", "0b", "0a", "\ufeff0c", "0\u200bd"]), st.sampled_from(["/m/01", "/m/02", "/m/03"]),
                               st.sampled_from(["1", "0", "1.0", "2", "", "true"])), min_size=1, max_size=4),
       bom=st.booleans())
def test_open_images(display, rows, bom):
    with folder_and_alarm() as root:
        with open(os.path.join(root, "oidv6-class-descriptions.csv"), "w", encoding="utf-8") as fh:
            fh.write(("\ufeff" if bom else "") + "LabelName,DisplayName\n"
                     + "".join(f"/m/0{k + 1},{q(d)}\n" for k, d in enumerate(display)))
        body = "ImageID,Source,LabelName,Confidence\n" + "".join(f"{i},x,{m},{c}\n" for i, m, c in rows)
        for f in ("oidv6-train-annotations-human-imagelabels.csv", "validation-annotations-human-imagelabels.csv"):
            with open(os.path.join(root, f), "w", encoding="utf-8") as fh:
                fh.write(("\ufeff" if bom else "") + body)
        for split in ("train", "validation"):
            for i in ("0a", "0b"):
                _image(os.path.join(root, split, f"{i}.jpg"))
        ds = load_or_refuse("openimages-v6", root, ".csv")
        if ds is not None:
            got = ds["train"].features["labels"].feature.names
            want = [expected_name(d) for d in display]
            assert got == want or (want[0] == want[1] and got == [f"{want[0]} (/m/01)", f"{want[1]} (/m/02)"])


@SETTINGS
@given(table=st.dictionaries(st.sampled_from(["a.jpg", "b.jpg", "a.jpg", "b.jpg", "\ufeffa.jpg"]),
                             _mostly(st.lists(_mostly(st.integers(0, 499), st.one_of(WRONG, st.sampled_from([-1, 500]))), max_size=3)),
                             max_size=3),
       listed=st.lists(st.sampled_from(["a.jpg", "b.jpg", "a.jpg", "b.jpg", "c.jpg"]), min_size=1, max_size=2), bom=st.booleans())
def test_visual_genome(table, listed, bom):
    with folder_and_alarm() as root:
        for f in ("a.jpg", "b.jpg"):
            _image(os.path.join(root, "VG_100K", f))
        with open(os.path.join(root, "vg_category_500_labels_index.json"), "w", encoding="utf-8") as fh:
            fh.write(("\ufeff" if bom else "") + json.dumps(table))
        for f in ("train_list_500.txt", "test_list_500.txt"):
            with open(os.path.join(root, f), "w", encoding="utf-8") as fh:
                fh.write(("\ufeff" if bom else "") + "\n".join(listed) + "\n")
        ds = load_or_refuse("visual-genome", root, root)
        if ds is not None:
            for split in ds.values():
                assert all(0 <= i < 500 for row in split["labels"] for i in row)
            assert all(type(i) is int for name in set(listed) for i in table[name])
