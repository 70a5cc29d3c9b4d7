import json
import os

import numpy as np
import pytest
from data_fixtures import GENERIC_CLASSES, generic_expected, make_csv, make_jsonl, multi_hot, write_image

import datasets
from hf_mlcls.data import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    load_multilabel_dataset,
    load_report,
)


def _m(ds):
    return multi_hot(ds["labels"], ds.features["labels"].feature.num_classes)


@pytest.mark.parametrize("sep", ["|", ";"])
def test_csv_names(tmp_path, sep):
    make_csv(str(tmp_path), sep=sep, val_name="val.csv")
    ds = load_multilabel_dataset("csv", str(tmp_path), label_separator=sep)
    names = sorted(GENERIC_CLASSES)  # no classes given: the sorted union
    assert ds["train"].features["labels"].feature.names == names
    for split in ("train", "validation"):
        np.testing.assert_array_equal(_m(ds[split]), generic_expected(split, names))


def test_csv_class_file_fixes_order_and_unknown_names(tmp_path):
    make_csv(str(tmp_path))
    (tmp_path / "classes.txt").write_text("\n".join(GENERIC_CLASSES) + "\n")
    ds = load_multilabel_dataset("csv", str(tmp_path))
    assert ds["train"].features["labels"].feature.names == GENERIC_CLASSES
    np.testing.assert_array_equal(_m(ds["train"]), generic_expected("train", GENERIC_CLASSES))
    with pytest.raises(DatasetLayoutError, match=r"1 label name\(s\) not in the class list: 'traffic light'.*at train\.csv:3"):
        load_multilabel_dataset("csv", str(tmp_path), classes=["cat", "dog"])


def test_csv_indices_literals_and_unknown_column(tmp_path):
    root = tmp_path
    for p in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(str(root / "im" / p))
    (root / "train.csv").write_text('image,labels,unknown_labels\nim/a.jpg,"[0, 2]",1\nim/b.jpg,[],\nim/c.jpg,1|2,"[0]"\n')
    (root / "validation.csv").write_text('image,labels,unknown_labels\nim/a.jpg,2,\n')
    ds = load_multilabel_dataset("csv", str(root), classes=["x", "y", "z"])
    assert ds["train"]["labels"] == [[0, 2], [], [1, 2]]
    assert ds["train"]["unknown_labels"] == [[1], [], [0]]
    assert load_report(ds["train"])["label_type"] == "index"
    ds = load_multilabel_dataset("csv", str(root))  # indices without names: "0".."2"
    assert ds["train"].features["labels"].feature.names == ["0", "1", "2"]
    with pytest.raises(DatasetLayoutError, match=r"train\.csv:2: label 2 is not a class index in \[0, 2\)"):
        load_multilabel_dataset("csv", str(root), classes=["x", "y"], label_type="index")


def test_csv_errors(tmp_path):
    make_csv(str(tmp_path))
    with pytest.raises(MissingDatasetFileError, match=r"test\.csv does not exist[\s\S]*Expected layout"):
        load_multilabel_dataset("csv", str(tmp_path), splits={"test": "test.csv"})
    with open(tmp_path / "train.csv", "a") as fh:
        fh.write("img/x.jpg,cat,extra\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.csv:6: malformed CSV row"):
        load_multilabel_dataset("csv", str(tmp_path))
    (tmp_path / "train.csv").write_text("path,tags\nimg/a.jpg,cat\n")
    with pytest.raises(DatasetLayoutError, match=r"needs columns 'image', 'labels'; the header has \['path', 'tags'\]"):
        load_multilabel_dataset("csv", str(tmp_path))
    ds = load_multilabel_dataset("csv", str(tmp_path), image_column="path", label_column="tags", splits=["train"])
    assert ds["train"].num_rows == 1
    (tmp_path / "train.csv").write_text("image,labels\n../outside.jpg,cat\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.csv:2: image path '../outside.jpg' escapes"):
        load_multilabel_dataset("csv", str(tmp_path))
    (tmp_path / "train.csv").write_text("image,labels\nimg/a.jpg,cat\nimg/b.png,dog\n./img/a.jpg,dog\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.csv:4: image .*img/a\.jpg is listed again \(first at train\.csv:2\)"):
        load_multilabel_dataset("csv", str(tmp_path))
    (tmp_path / "train.csv").write_text("image,labels\n")
    with pytest.raises(DatasetLayoutError, match=r"split 'train' is empty"):
        load_multilabel_dataset("csv", str(tmp_path))
    (tmp_path / "train.csv").write_text('image,labels\nimg/a.jpg,"[cat"\n')
    with pytest.raises(DatasetLayoutError, match=r"train\.csv:2: label list '\[cat' is neither JSON"):
        load_multilabel_dataset("csv", str(tmp_path))


def test_csv_skips_bad_images(tmp_path):
    make_csv(str(tmp_path))
    write_image(str(tmp_path / "img" / "c.jpg"), "empty")
    os.remove(tmp_path / "img" / "d.jpg")
    with pytest.warns(SkippedImagesWarning):
        ds = load_multilabel_dataset("csv", str(tmp_path))
    assert ds["train"].num_rows == 2
    report = load_report(ds["train"])
    assert report["skipped"] == {"total": 2, "empty": 1, "missing": 1}
    assert {e["row"] for e in report["skipped_examples"]} == {"train.csv:4", "train.csv:5"}


@pytest.mark.parametrize("as_indices", [False, True])
def test_jsonl(tmp_path, as_indices):
    make_jsonl(str(tmp_path), as_indices=as_indices)
    kwargs = {"classes": GENERIC_CLASSES} if as_indices else {}
    ds = load_multilabel_dataset("jsonl", str(tmp_path), **kwargs)
    names = GENERIC_CLASSES if as_indices else sorted(GENERIC_CLASSES)
    assert ds["train"].features["labels"].feature.names == names
    for split in ("train", "validation"):
        np.testing.assert_array_equal(_m(ds[split]), generic_expected(split, names))


def test_jsonl_errors(tmp_path):
    make_jsonl(str(tmp_path))
    with open(tmp_path / "train.jsonl", "a") as fh:
        fh.write('{"image": "img/a.jpg", "labels": ["cat"\n')
    with pytest.raises(DatasetLayoutError, match=r"train\.jsonl:5: malformed JSON"):
        load_multilabel_dataset("jsonl", str(tmp_path))
    (tmp_path / "train.jsonl").write_text('{"image": "img/a.jpg"}\n')
    with pytest.raises(DatasetLayoutError, match=r"train\.jsonl:1: expected an object with keys 'image' and 'labels'"):
        load_multilabel_dataset("jsonl", str(tmp_path))
    (tmp_path / "train.jsonl").write_text('{"image": "/etc/passwd", "labels": []}\n')
    with pytest.raises(DatasetLayoutError, match=r"train\.jsonl:1: image path '/etc/passwd' escapes"):
        load_multilabel_dataset("jsonl", str(tmp_path))


def _hub_folder(tmp_path, label_feature, labels):
    img = write_image(str(tmp_path / "src" / "a.png"), "png")
    ds = datasets.Dataset.from_dict(
        {"picture": [img] * len(labels), "tags": labels},
        features=datasets.Features({"picture": datasets.Image(), "tags": label_feature}),
    )
    out = str(tmp_path / "saved")
    datasets.DatasetDict({"train": ds, "val": ds.select([0])}).save_to_disk(out)
    return out


def test_hub_classlabel_list(tmp_path):
    feature = datasets.List(datasets.ClassLabel(names=["a", "b", "c"]))
    folder = _hub_folder(tmp_path, feature, [[0, 2], [], [1]])
    ds = load_multilabel_dataset("hub", folder, image_column="picture", label_column="tags")
    assert set(ds) == {"train", "validation"}  # "val" renamed
    assert ds["train"].column_names == ["image", "labels"]
    assert ds["train"].features["labels"].feature.names == ["a", "b", "c"]
    assert ds["train"]["labels"] == [[0, 2], [], [1]]
    assert ds["train"][0]["image"].size == (24, 24)  # embedded bytes decode
    assert load_report(ds["train"])["dataset"] == "hub"


def test_hub_string_lists_and_errors(tmp_path):
    folder = _hub_folder(tmp_path, datasets.List(datasets.Value("string")), [["dog", "cat"], ["cat"], []])
    ds = load_multilabel_dataset("hub", folder, image_column="picture", label_column="tags")
    assert ds["train"].features["labels"].feature.names == ["cat", "dog"]
    assert ds["train"]["labels"] == [[0, 1], [0], []]
    ds = load_multilabel_dataset("hub", folder, image_column="picture", label_column="tags", classes=["dog", "cat"])
    assert ds["train"]["labels"] == [[0, 1], [1], []]
    with pytest.raises(DatasetLayoutError, match=r"not in the class list: 'cat'"):
        load_multilabel_dataset("hub", folder, image_column="picture", label_column="tags", classes=["dog"])
    with pytest.raises(DatasetLayoutError, match=r"no column 'labels'; columns are \['picture', 'tags'\]"):
        load_multilabel_dataset("hub", folder, image_column="picture")
    with pytest.raises(DatasetLayoutError, match=r"split 'test' \(for 'test'\) not in"):
        load_multilabel_dataset("hub", folder, image_column="picture", label_column="tags", splits=["test"])


def test_hub_offline_load_dataset_from_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "repo"
    folder.mkdir()
    write_image(str(folder / "a.jpg"))
    (folder / "train.jsonl").write_text(json.dumps({"file": "a.jpg", "tags": ["x", "y"]}) + "\n")
    ds = load_multilabel_dataset("hub", str(folder), image_column="file", label_column="tags",
                                 data_files={"train": str(folder / "train.jsonl")}, cache_dir=str(tmp_path / "cache"))
    assert ds["train"]["labels"] == [[0, 1]]
    assert isinstance(ds["train"].features["image"], datasets.Image)


def test_hub_verify_images(tmp_path):
    folder = _hub_folder(tmp_path, datasets.List(datasets.Value("string")), [["x"], ["y"]])
    loaded = datasets.load_from_disk(folder)
    bad = loaded["train"].cast_column("picture", datasets.Image(decode=False))
    bad = bad.map(lambda r, i: {"picture": {"bytes": b"garbage" if i == 1 else r["picture"]["bytes"], "path": None}},
                  with_indices=True, features=bad.features)
    out = str(tmp_path / "bad")
    datasets.DatasetDict({"train": bad}).save_to_disk(out)
    with pytest.warns(SkippedImagesWarning, match="skipped 1 of 2"):
        ds = load_multilabel_dataset("hub", out, image_column="picture", label_column="tags", verify_images=True)
    assert ds["train"]["labels"] == [[0]]
    assert load_report(ds["train"])["skipped"] == {"total": 1, "corrupt": 1}
