"""Annotation values of the wrong type, names that differ only in Unicode form or invisible characters,
one image file under two rows, byte-order marks, and links out of the dataset folder: each loader answers
with one DatasetLayoutError naming the file, the row and the value (or, where docs/errors.md says so,
normalises the value and loads), never another exception, a silent conversion or a hang."""

from __future__ import annotations

import json
import os
import signal
import unicodedata

import pytest
from data_fixtures import make_nus_official, write_image

from hf_mlcls.data import DatasetLayoutError, load_multilabel_dataset

NFC = unicodedata.normalize("NFC", "caf\u00e9")
NFD = unicodedata.normalize("NFD", "caf\u00e9")
BOM = "\ufeff"


def _names(ds, split="train"):
    return list(ds[split].features["labels"].feature.names)


# ------------------------------------------------------------------------------------------ COCO


def _coco(root, *, images=None, anns=None, cats=None, bom=False):
    """A COCO 2014 folder whose train and val files are the same: 2 images, 2 categories."""
    images = images if images is not None else [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}]
    anns = anns if anns is not None else [{"id": 10, "image_id": 1, "category_id": 1}, {"id": 11, "image_id": 2, "category_id": 2}]
    cats = cats if cats is not None else [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for native in ("train2014", "val2014"):
        for k, name in enumerate(("a.jpg", "b.jpg")):
            write_image(os.path.join(root, native, name), "rgb", seed=k)
        text = json.dumps({"images": images, "annotations": anns, "categories": cats})
        with open(os.path.join(root, "annotations", f"instances_{native}.json"), "w", encoding="utf-8") as fh:
            fh.write((BOM if bom else "") + text)
    return str(root)


COCO_BAD = {
    "image-id-float": (dict(images=[{"id": 1.0, "file_name": "a.jpg"}]), r"images\[0\] \(id 1\.0\) has no integer 'id': 1\.0 \(a float\)"),
    "image-id-numeric-string": (dict(images=[{"id": "1", "file_name": "a.jpg"}]), r"images\[0\] \(id '1'\) has no integer 'id': '1' \(a str\)"),
    "image-id-bool": (dict(images=[{"id": True, "file_name": "a.jpg"}]), r"images\[0\] .*has no integer 'id': True \(a bool\)"),
    "annotation-image-id-string": (
        dict(images=[{"id": 1, "file_name": "a.jpg"}], anns=[{"id": 7, "image_id": "1", "category_id": 1}]),
        r"annotations\[0\] \(id 7\) has no integer 'image_id': '1'"),
    "category-id-bool": (
        dict(images=[{"id": 1, "file_name": "a.jpg"}], anns=[{"id": 7, "image_id": 1, "category_id": True}]),
        r"annotations\[0\] \(id 7\) has no integer 'category_id': True"),
    "category-name-null": (dict(cats=[{"id": 1, "name": None}, {"id": 2, "name": "cat"}]),
                           r"categories\[0\] \(id 1\): class name None is a NoneType, not a string"),
    "category-name-list": (dict(cats=[{"id": 1, "name": ["dog"]}, {"id": 2, "name": "cat"}]),
                           r"categories\[0\] \(id 1\): class name \['dog'\] is a list"),
    "category-name-empty": (dict(cats=[{"id": 1, "name": " \u200b "}, {"id": 2, "name": "cat"}]), r"categories\[0\] .* is empty"),
    "category-names-nfc-nfd": (dict(cats=[{"id": 1, "name": NFC}, {"id": 2, "name": NFD}]), r"duplicated category name\(s\) \['caf\u00e9'\]"),
    "category-names-spaces": (dict(cats=[{"id": 1, "name": "dog"}, {"id": 2, "name": "dog\u00a0 "}]), r"duplicated category name\(s\) \['dog'\]"),
    "iscrowd-string": (
        dict(images=[{"id": 1, "file_name": "a.jpg"}], anns=[{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": "0"}]),
        r"annotations\[0\] \(id 7\) has 'iscrowd' '0'; expected 0 or 1"),
    "same-file-two-ids": (
        dict(images=[{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "a.jpg"}]),
        r"instances_train2014\.json: image id 2 names the image file .*a\.jpg again \(first at instances_train2014\.json: image id 1\)"),
}


@pytest.mark.parametrize("case", list(COCO_BAD))
def test_coco_wrong_types_and_duplicates_are_refused(tmp_path, case):
    kwargs, message = COCO_BAD[case]
    root = _coco(tmp_path / "coco", **kwargs)
    with pytest.raises(DatasetLayoutError, match=message) as info:
        load_multilabel_dataset("coco2014", root, include_crowd=False)  # iscrowd is read only then
    assert "instances_train2014.json" in str(info.value)


def test_coco_byte_order_mark_and_padded_names_load(tmp_path):
    root = _coco(tmp_path / "coco", bom=True, cats=[{"id": 1, "name": f" {NFD}\u00a0"}, {"id": 2, "name": "cat\u200b"}])
    ds = load_multilabel_dataset("coco2014", root)
    assert _names(ds) == [NFC, "cat"]
    assert ds["train"]["labels"] == [[0], [1]]


# ------------------------------------------------------------------------------------------- VOC


def _voc(root, objects, *, bom=False):
    voc = os.path.join(root, "VOC2007")
    os.makedirs(os.path.join(voc, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(voc, "ImageSets", "Main"), exist_ok=True)
    for k, image_id in enumerate(("000001", "000002")):
        objs = objects if k == 0 else [("dog", "0")]
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult></object>" for n, d in objs)
        with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w", encoding="utf-8") as fh:
            fh.write(f"<annotation><filename>{image_id}.jpg</filename>{body}</annotation>")
        write_image(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), "rgb", seed=k)
    for name in ("train", "val"):
        with open(os.path.join(voc, "ImageSets", "Main", f"{name}.txt"), "w", encoding="utf-8") as fh:
            fh.write((BOM if bom else "") + "000001\n000002\n")
    return str(root)


VOC_BAD = [
    ("difficult-inf", [("cat", "inf")], r"000001\.xml: object 1 \('cat'\) has <difficult> 'inf'; expected 0 or 1"),
    ("difficult-fraction", [("cat", "1.5")], r"000001\.xml: object 1 \('cat'\) has <difficult> '1\.5'; expected 0 or 1"),
    ("difficult-nan", [("cat", "nan")], r"has <difficult> 'nan'"),
    ("name-empty", [("", "0")], r"000001\.xml: object 1 <name>: class name '' is empty"),
    ("name-invisible", [("c\u200bat", "0")], r"000001\.xml: object 1 <name>: class name 'c\\u200bat' holds the invisible character U\+200B"),
]


@pytest.mark.parametrize("case,objects,message", VOC_BAD, ids=[c[0] for c in VOC_BAD])
def test_voc_bad_object_values_are_refused(tmp_path, case, objects, message):
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset("voc2007", _voc(tmp_path, objects))


def test_voc_split_file_with_a_byte_order_mark_loads(tmp_path):
    ds = load_multilabel_dataset("voc2007", _voc(tmp_path, [("cat", "0")], bom=True))
    assert ds["train"].num_rows == 2
    assert os.path.basename(ds["train"][0]["image"].filename) == "000001.jpg"


# ------------------------------------------------------------------------------- CSV / JSON lines


def _csv(root, rows, header="image,labels"):
    os.makedirs(root, exist_ok=True)
    for k in range(len(rows)):
        write_image(os.path.join(root, f"{k}.jpg"), "rgb", seed=k)
    for name in ("train.csv", "validation.csv"):
        with open(os.path.join(root, name), "w", encoding="utf-8", newline="") as fh:
            fh.write(header + "\n" + "".join(f'{k}.jpg,"{cell}"\n' for k, cell in enumerate(rows)))
    return str(root)


def _jsonl(root, labels):
    os.makedirs(root, exist_ok=True)
    for k in range(len(labels)):
        write_image(os.path.join(root, f"{k}.jpg"), "rgb", seed=k)
    for name in ("train.jsonl", "validation.jsonl"):
        with open(os.path.join(root, name), "w", encoding="utf-8") as fh:
            fh.write("".join(json.dumps({"image": f"{k}.jpg", "labels": v}) + "\n" for k, v in enumerate(labels)))
    return str(root)


def test_csv_header_naming_a_column_twice_is_refused(tmp_path):
    root = _csv(tmp_path / "d", ["cat", "dog"], header="image,labels,labels")
    with open(os.path.join(root, "train.csv"), "w", encoding="utf-8") as fh:
        fh.write("image,labels,labels\n0.jpg,cat,dog\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.csv:1: the header names column\(s\) \['labels'\] more than once"):
        load_multilabel_dataset("csv", root)


CSV_BAD = [
    ("null-in-list", "[null]", r"train\.csv:2: label None is a NoneType"),
    ("nested-list", "[['dog']]", r"train\.csv:2: label \['dog'\] is a list"),
    ("bool-in-list", "[true]", r"train\.csv:2: label True is a bool"),
    ("float-in-list", "[1.5]", r"train\.csv:2: label 1\.5 is a float"),
    ("zero-width-inside", "c\u200bat", r"train\.csv:2: label 'c\\u200bat' holds the invisible character U\+200B"),
]


@pytest.mark.parametrize("case,cell,message", CSV_BAD, ids=[c[0] for c in CSV_BAD])
def test_csv_label_values_of_the_wrong_kind_are_refused(tmp_path, case, cell, message):
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset("csv", _csv(tmp_path / "d", [cell, "dog"]))


def test_csv_names_differing_only_in_unicode_form_or_spaces_are_one_class(tmp_path):
    ds = load_multilabel_dataset("csv", _csv(tmp_path / "d", [f"{NFC}|dog", f"{NFD}|\u00a0dog\u200b", BOM + "dog"]))
    assert _names(ds) == [NFC, "dog"]
    assert ds["train"]["labels"] == [[0, 1], [0, 1], [1]]


JSONL_BAD = [
    ("null-name", [None], r"train\.jsonl:1: label None is a NoneType"),
    ("nested-list", [["dog"]], r"train\.jsonl:1: label \['dog'\] is a list"),
    ("object", [{"name": "dog"}], r"train\.jsonl:1: label \{'name': 'dog'\} is a dict"),
    ("bool-cell", True, r"train\.jsonl:1: label cell True is a bool"),
    ("float-cell", 1.0, r"train\.jsonl:1: label cell 1\.0 is a float"),
    ("object-cell", {"dog": 1}, r"train\.jsonl:1: label cell \{'dog': 1\} is a dict"),
    ("empty-name", ["  "], r"train\.jsonl:1: label '  ' is empty"),
    ("index-among-names", [0, "cat"], r"train\.jsonl:1: label 0 is an index, but this dataset's labels are class names"),
]


@pytest.mark.parametrize("case,value,message", JSONL_BAD, ids=[c[0] for c in JSONL_BAD])
def test_jsonl_label_values_of_the_wrong_kind_are_refused(tmp_path, case, value, message):
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset("jsonl", _jsonl(tmp_path / "d", [value, ["dog"]]))


def test_jsonl_quoted_numbers_are_names_not_indices(tmp_path):
    ds = load_multilabel_dataset("jsonl", _jsonl(tmp_path / "d", [["3"], ["10"]]))
    assert _names(ds) == ["10", "3"]
    with pytest.raises(DatasetLayoutError, match=r"train\.jsonl:1: label '3' is not a class index"):
        load_multilabel_dataset("jsonl", _jsonl(tmp_path / "e", [["3"], ["10"]]), label_type="index")


def test_class_list_with_names_equal_after_normalisation_is_refused(tmp_path):
    root = _csv(tmp_path / "d", [NFC, "dog"])
    with open(os.path.join(root, "classes.txt"), "w", encoding="utf-8") as fh:
        fh.write(f"{NFC}\ndog\n{NFD} \n")
    with pytest.raises(DatasetLayoutError, match=r"classes\.txt: duplicated class name\(s\) \['caf\u00e9'\]"):
        load_multilabel_dataset("csv", root)


def test_class_list_line_with_an_invisible_character_inside_names_the_line(tmp_path):
    root = _csv(tmp_path / "d", ["cat", "dog"])
    with open(os.path.join(root, "classes.txt"), "w", encoding="utf-8") as fh:
        fh.write("cat\n\nd\u200bog\n")
    with pytest.raises(DatasetLayoutError, match=r"classes\.txt:3: class name 'd\\u200bog' holds the invisible character U\+200B"):
        load_multilabel_dataset("csv", root)


# ------------------------------------------------------------------------- NUS-WIDE, Visual Genome, Open Images


def test_nus_wide_image_list_with_a_byte_order_mark_loads(tmp_path):
    make_nus_official(str(tmp_path))
    lp = tmp_path / "ImageList" / "TrainImagelist.txt"
    lp.write_bytes(b"\xef\xbb\xbf" + lp.read_bytes())
    ds = load_multilabel_dataset("nus-wide", str(tmp_path), verify_images="none")
    assert ds["train"].with_format("arrow")[:1]["image"].to_pylist()[0]["path"] == str(tmp_path / "Flickr" / "actor" / "0001_1.jpg")


def test_nus_wide_csv_label_of_the_wrong_kind_is_refused(tmp_path):
    write_image(str(tmp_path / "a.jpg"), "rgb")
    (tmp_path / "data.csv").write_text('image,labels,split\na.jpg,"[None]",train\na.jpg,"[\'sky\']",val\n', encoding="utf-8")
    with pytest.raises(DatasetLayoutError, match=r"data\.csv:2: label None is a NoneType"):
        load_multilabel_dataset("nus-wide", str(tmp_path))


def _vg(root, *, bom=False):
    os.makedirs(os.path.join(root, "VG_100K"), exist_ok=True)
    for k in range(2):
        write_image(os.path.join(root, "VG_100K", f"{k}.jpg"), "rgb", seed=k)
    with open(os.path.join(root, "vg_category_500_labels_index.json"), "w", encoding="utf-8") as fh:
        json.dump({"0.jpg": [1], "1.jpg": [2]}, fh)
    for name in ("train_list_500.txt", "test_list_500.txt"):
        with open(os.path.join(root, name), "w", encoding="utf-8") as fh:
            fh.write((BOM if bom else "") + "0.jpg\n1.jpg\n")
    return str(root)


def test_visual_genome_list_with_a_byte_order_mark_loads(tmp_path):
    ds = load_multilabel_dataset("visual-genome", _vg(tmp_path, bom=True))
    assert ds["train"]["labels"] == [[1], [2]]


def test_visual_genome_image_with_two_entries_in_the_labels_file_is_refused(tmp_path):
    root = _vg(tmp_path)
    with open(os.path.join(root, "vg_category_500_labels_index.json"), "w", encoding="utf-8") as fh:
        fh.write('{"0.jpg": [1], "1.jpg": [2], "0.jpg": [3]}')
    with pytest.raises(DatasetLayoutError, match=r"vg_category_500_labels_index\.json: image '0\.jpg' has two entries"):
        load_multilabel_dataset("visual-genome", root)


def test_visual_genome_class_names_equal_after_normalisation_are_refused(tmp_path):
    names = [f"c{i}" for i in range(498)] + [NFC, NFD]
    with pytest.raises(DatasetLayoutError, match=r"class_names: duplicated class name\(s\) \['caf\u00e9'\]"):
        load_multilabel_dataset("visual-genome", _vg(tmp_path), class_names=names)


def test_open_images_empty_display_name_is_refused(tmp_path):
    (tmp_path / "oidv6-class-descriptions.csv").write_text("LabelName,DisplayName\n/m/01,Cat\n/m/02,\u200b\n", encoding="utf-8")
    (tmp_path / "oidv6-train-annotations-human-imagelabels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n0a,x,/m/01,1\n", encoding="utf-8")
    (tmp_path / "validation-annotations-human-imagelabels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n0b,x,/m/01,1\n", encoding="utf-8")
    with pytest.raises(DatasetLayoutError, match=r"oidv6-class-descriptions\.csv:3: DisplayName: class name '\\u200b' is empty"):
        load_multilabel_dataset("openimages-v6", str(tmp_path))


# ------------------------------------------------------------------------------ links and special files


def test_a_symlink_inside_the_data_folder_pointing_outside_is_refused(tmp_path):
    secret = tmp_path / "outside" / "secret.jpg"
    write_image(str(secret), "rgb")
    root = _csv(tmp_path / "d", ["cat", "dog"])
    os.remove(os.path.join(root, "1.jpg"))
    os.symlink(secret, os.path.join(root, "1.jpg"))
    with pytest.raises(DatasetLayoutError, match=r"csv split 'train': train\.csv:3: image .*1\.jpg escapes the dataset folder: a link to .*secret\.jpg, outside"):
        load_multilabel_dataset("csv", root)


def test_a_link_inside_the_image_folder_pointing_outside_is_refused(tmp_path):
    write_image(str(tmp_path / "outside" / "a.jpg"), "rgb")
    root = _coco(tmp_path / "coco", images=[{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}])
    os.remove(os.path.join(root, "train2014", "a.jpg"))
    os.symlink(tmp_path / "outside" / "a.jpg", os.path.join(root, "train2014", "a.jpg"))
    with pytest.raises(DatasetLayoutError, match=r"image id 1: image .*a\.jpg escapes the dataset folder: a link to .*outside"):
        load_multilabel_dataset("coco2014", root)


def test_a_link_that_stays_inside_the_data_folder_is_followed(tmp_path):
    root = _csv(tmp_path / "d", ["cat", "dog"])
    os.remove(os.path.join(root, "1.jpg"))
    write_image(os.path.join(root, "store", "x.jpg"), "rgb")
    os.symlink(os.path.join(root, "store", "x.jpg"), os.path.join(root, "1.jpg"))
    assert load_multilabel_dataset("csv", root)["train"].num_rows == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_a_named_pipe_in_place_of_an_image_is_skipped_never_opened(tmp_path):
    root = _csv(tmp_path / "d", ["cat", "dog"])
    os.remove(os.path.join(root, "1.jpg"))
    os.mkfifo(os.path.join(root, "1.jpg"))  # opening it for reading would block forever
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the loader opened the named pipe (hang)"))
    signal.alarm(60)
    try:
        with pytest.warns(UserWarning, match="not a file"):
            ds = load_multilabel_dataset("csv", root)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert ds["train"].num_rows == 1
