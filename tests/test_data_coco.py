import json
import os

import numpy as np
import pytest
from data_fixtures import make_coco, multi_hot

import datasets
from hf_mlcls.data import (
    DatasetLayoutError,
    InvalidImageError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    load_multilabel_dataset,
    load_report,
)


def _matrix(ds):
    return multi_hot(ds["labels"], ds.features["labels"].feature.num_classes)


def _ids(ds):
    return [int(os.path.basename(p["path"]).split("_")[-1].split(".")[0]) for p in ds.cast_column("image", datasets.Image(decode=False))["image"]]


@pytest.fixture
def coco(tmp_path):
    expected = make_coco(str(tmp_path), 2014)
    return str(tmp_path), expected


def test_labels_classes_and_skips(coco):
    root, exp = coco
    with pytest.warns(SkippedImagesWarning, match=r"skipped 3 of 7 images \(empty: 1, missing: 1, truncated: 1\)"):
        ds = load_multilabel_dataset("coco2014", root)
    assert set(ds) == {"train", "validation"}
    assert ds["train"].features["labels"].feature.names == exp["names"]  # category-id order
    for split in ("train", "validation"):
        assert _ids(ds[split]) == exp[split]["ids"]
        np.testing.assert_array_equal(_matrix(ds[split]), multi_hot(exp[split]["all"], 5))
    report = load_report(ds["validation"])
    assert report["skipped"] == {"total": 3, "missing": 1, "empty": 1, "truncated": 1}
    assert report["verify_images"] == "header"
    assert {e["row"] for e in report["skipped_examples"]} == {
        "instances_val2014.json: image id 14", "instances_val2014.json: image id 15", "instances_val2014.json: image id 16"}
    assert load_report(ds["train"])["skipped"] == {"total": 0}
    # rows hold the path only; nothing decoded at load time
    raw = ds["validation"].cast_column("image", datasets.Image(decode=False))[0]["image"]
    assert raw["bytes"] is None and os.path.isabs(raw["path"])


def test_ml_decoder_protocol_drops_images_without_annotations(coco):
    root, exp = coco
    with pytest.warns(SkippedImagesWarning):
        ds = load_multilabel_dataset("coco2014", root, keep_empty=False)
    assert _ids(ds["validation"]) == exp["validation"]["nonempty_ids"]
    assert 13 not in _ids(ds["validation"])
    assert load_report(ds["validation"])["dropped_empty"] == 1


def test_strict_raises_naming_the_files(coco):
    root, _ = coco
    with pytest.raises(InvalidImageError, match=r"3 bad image\(s\)[\s\S]*COCO_val2014_000000000014.jpg: missing"):
        load_multilabel_dataset("coco2014", root, strict=True)


def test_verify_levels(coco):
    root, _ = coco
    ds = load_multilabel_dataset("coco2014", root, verify_images=False)
    assert ds["validation"].num_rows == 7
    with pytest.warns(SkippedImagesWarning, match=r"missing: 1"):
        ds = load_multilabel_dataset("coco2014", root, verify_images="exists")
    assert load_report(ds["validation"])["skipped"] == {"total": 2, "missing": 1, "empty": 1}


def test_explicit_splits_and_missing_split(tmp_path):
    root = str(tmp_path)
    make_coco(root, 2017, broken=False)
    os.remove(os.path.join(root, "annotations", "instances_train2017.json"))
    with pytest.raises(MissingDatasetFileError, match=r"instances_train2017\.json does not exist[\s\S]*Expected layout"):
        load_multilabel_dataset("coco2017", root)
    ds = load_multilabel_dataset("coco2017", root, splits=["validation"])
    assert list(ds) == ["validation"]
    ds = load_multilabel_dataset("coco2017", root, splits={"test": "val2017"})
    assert list(ds) == ["test"] and ds["test"].num_rows == 7


def test_missing_folder_and_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_multilabel_dataset("coco2014", str(tmp_path / "nope"))
    (tmp_path / "annotations").mkdir()
    with pytest.raises(MissingDatasetFileError, match=r"annotations/instances_train2014\.json"):
        load_multilabel_dataset("coco2014", str(tmp_path))


def _rewrite(root, year, split, edit):
    path = os.path.join(root, "annotations", f"instances_{split}{year}.json")
    with open(path) as fh:
        data = json.load(fh)
    edit(data)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)
    return path


def test_malformed_json_names_file_and_line(tmp_path):
    root = str(tmp_path)
    make_coco(root, broken=False)
    path = os.path.join(root, "annotations", "instances_val2014.json")
    text = open(path).read().splitlines()
    text[5] = text[5] + ",,"
    open(path, "w").write("\n".join(text))
    with pytest.raises(DatasetLayoutError, match=r"malformed JSON in .*instances_val2014\.json at line 6"):
        load_multilabel_dataset("coco2014", root)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["images"].append(dict(d["images"][0])), r"duplicated image id\(s\) \[10\]"),
        (lambda d: d["annotations"][0].update(category_id=99), r"category id\(s\) \[99\] not in 'categories'"),
        (lambda d: d["annotations"][0].update(image_id=999), r"image ids not in 'images', e.g. image_id 999"),
        (lambda d: d["annotations"][1].pop("category_id"), r"annotations\[1\] \(id \d+\) has no integer 'category_id'"),
        (lambda d: d.pop("annotations"), r"no 'annotations' list"),
        (lambda d: d["categories"].append({"id": 1, "name": "again"}), r"duplicated category id\(s\) \[1\]"),
        (lambda d: d["images"][0].update(file_name="../../etc/passwd"), r"image id 10: image path '../../etc/passwd' escapes"),
        (lambda d: d["images"][0].update(file_name="/etc/passwd"), r"image id 10: image path '/etc/passwd' escapes"),
    ],
)
def test_bad_annotations(tmp_path, edit, message):
    root = str(tmp_path)
    make_coco(root, broken=False)
    _rewrite(root, 2014, "val", edit)
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset("coco2014", root)


def test_categories_must_agree_between_splits(tmp_path):
    root = str(tmp_path)
    make_coco(root, broken=False)
    _rewrite(root, 2014, "val", lambda d: d["categories"][0].update(name="renamed"))
    with pytest.raises(DatasetLayoutError, match="categories differ"):
        load_multilabel_dataset("coco2014", root)


def test_crowd_option(tmp_path):
    root = str(tmp_path)
    make_coco(root, broken=False)
    with_crowd = load_multilabel_dataset("coco2014", root, splits=["train"])
    no_crowd = load_multilabel_dataset("coco2014", root, splits=["train"], include_crowd=False)
    # image 3: its fire-hydrant annotation is the crowd one
    assert with_crowd["train"][2]["labels"] == [0, 3, 4]
    assert no_crowd["train"][2]["labels"] == [0, 3]


def test_image_path_symlinked_folder_is_fine(tmp_path):
    root = tmp_path / "coco"
    other = tmp_path / "disk2"
    make_coco(str(other), broken=False)
    root.mkdir()
    os.symlink(other / "annotations", root / "annotations")
    os.symlink(other / "train2014", root / "train2014")
    os.symlink(other / "val2014", root / "val2014")
    ds = load_multilabel_dataset("coco2014", str(root))
    assert ds["validation"].num_rows == 7
