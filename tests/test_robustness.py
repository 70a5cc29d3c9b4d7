"""Bad input in the dataset layouts and images that neither the per-loader tests nor
tests/test_errors.py reach: the second year of COCO and VOC, the NUS-WIDE CSV layout, the Hub
and demo loaders, the NUS-WIDE zero-shot benchmark, and every image kind end to end (dataset
check, transform, model, prediction). One test per row of docs/errors.md; small generated data.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import nullcontext

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from data_fixtures import make_coco, make_nus_csv, make_openimages, make_voc, write_image
from test_models import tiny_q2l
from test_zero_shot import write_nus_zsl

from hf_mlcls.data import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    build_eval_transform,
    load_multilabel_dataset,
    load_report,
)
from hf_mlcls.data.nuswide_zsl import load_nus_wide_zsl_protocol
from hf_mlcls.inference import predict_files

# ---------------------------------------------------------------------------------------- COCO 2017


def _coco17(root, edit):
    make_coco(root, year=2017, broken=False)
    path = os.path.join(root, "annotations", "instances_val2017.json")
    data = json.load(open(path))
    edit(data)
    json.dump(data, open(path, "w"))


def _coco_cut(root):
    make_coco(root, year=2017, broken=False)
    path = os.path.join(root, "annotations", "instances_val2017.json")
    text = open(path).read()
    open(path, "w").write(text[: len(text) // 2])


@pytest.mark.parametrize(
    "damage, error, message",
    [
        (lambda r: (make_coco(r, year=2017, broken=False), shutil.rmtree(os.path.join(r, "val2017"))),
         MissingDatasetFileError, r"coco2017 split 'validation' images: expected folder .*val2017 does not exist"),
        (lambda r: (make_coco(r, year=2017, broken=False), os.remove(os.path.join(r, "annotations", "instances_val2017.json"))),
         MissingDatasetFileError, r"instances_val2017\.json does not exist[\s\S]*Expected layout"),
        (_coco_cut, DatasetLayoutError, r"malformed JSON in .*instances_val2017\.json at line \d+, column \d+"),
        (lambda r: _coco17(r, lambda d: d["annotations"][0].update(category_id=77)),
         DatasetLayoutError, r"category id\(s\) \[77\] not in 'categories'"),
        (lambda r: _coco17(r, lambda d: d["images"].append(dict(d["images"][1]))),
         DatasetLayoutError, r"duplicated image id\(s\) \[11\]"),
        (lambda r: _coco17(r, lambda d: d.update(images=[], annotations=[])),
         DatasetLayoutError, r"coco2017 split 'validation' is empty"),
        (lambda r: _coco17(r, lambda d: d["images"][0].update(file_name="../../../etc/hosts")),
         DatasetLayoutError, r"image path '../../../etc/hosts' escapes"),
    ],
    ids=["no-image-folder", "no-annotation-file", "truncated", "unknown-category", "duplicated-id", "empty-split",
         "escaping-path"],
)
def test_coco2017_bad_layouts(damage, error, message, tmp_path):
    damage(str(tmp_path))
    with pytest.raises(error, match=message):
        load_multilabel_dataset("coco2017", str(tmp_path), verify_images=False)


# ---------------------------------------------------------------------------------------- VOC 2012


def _voc12(root, edit):
    voc = make_voc(root, 2012, with_test=False)
    edit(voc)


def _append(path, text):
    with open(path, "a") as fh:
        fh.write(text)


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda v: shutil.rmtree(os.path.join(v, "Annotations")), MissingDatasetFileError,
         r"VOC2012/Annotations[\s\S]*Expected layout"),
        (lambda v: os.remove(os.path.join(v, "ImageSets", "Main", "val.txt")), MissingDatasetFileError,
         r"ImageSets/Main/val\.txt does not exist"),
        (lambda v: shutil.rmtree(os.path.join(v, "JPEGImages")), DatasetLayoutError,
         r"voc2012 split 'train': every one of its 3 images is unusable \(\{'missing': 3\}\)"),
        (lambda v: open(os.path.join(v, "Annotations", "000005.xml"), "w").write("<annotation><object>"), DatasetLayoutError,
         r"000005\.xml: malformed XML at line 1"),
        (lambda v: open(os.path.join(v, "Annotations", "000005.xml"), "w").write(
            "<annotation><object><name>griffin</name><difficult>0</difficult></object></annotation>"),
         DatasetLayoutError, r"1 label name\(s\) not in the class list: 'griffin'"),
        (lambda v: _append(os.path.join(v, "ImageSets", "Main", "train.txt"), "000005\n"), DatasetLayoutError,
         r"train\.txt:4: duplicated image id '000005' \(first on line 1\)"),
        (lambda v: open(os.path.join(v, "ImageSets", "Main", "val.txt"), "w").close(), DatasetLayoutError,
         r"voc2012 split 'validation' is empty"),
        (lambda v: _append(os.path.join(v, "ImageSets", "Main", "val.txt"), "../../../../etc/passwd\n"), DatasetLayoutError,
         r"val\.txt:\d+: image path .* escapes"),
    ],
    ids=["no-annotations", "no-split-file", "no-image-folder", "truncated-xml", "unknown-class", "duplicated-id",
         "empty-split", "escaping-path"],
)
def test_voc2012_bad_layouts(edit, error, message, tmp_path):
    _voc12(str(tmp_path), edit)
    with pytest.raises(error, match=message):
        load_multilabel_dataset("voc2012", str(tmp_path))


# ------------------------------------------------------------------------- NUS-WIDE csv, Open Images


def test_nus_wide_csv_layout_bad_files(tmp_path):
    make_nus_csv(str(tmp_path / "a"))
    os.remove(tmp_path / "a" / "data.csv")  # neither layout's file: both are named
    with pytest.raises(MissingDatasetFileError, match=r"Concepts81\.txt does not exist \(official layout\), nor does "
                                                      r".*data\.csv \(csv layout\)[\s\S]*or \(csv\)"):
        load_multilabel_dataset("nus-wide", str(tmp_path / "a"))
    make_nus_csv(str(tmp_path / "b"))
    _append(tmp_path / "b" / "data.csv", "images/sky/0005_5.jpg,\"['sky']\",val\n")
    with pytest.raises(DatasetLayoutError, match=r"data\.csv:8: image .*0005_5\.jpg is listed again \(first at data\.csv:6\)"):
        load_multilabel_dataset("nus-wide", str(tmp_path / "b"), verify_images=False)
    make_nus_csv(str(tmp_path / "c"))
    lines = (tmp_path / "c" / "data.csv").read_text().splitlines()
    (tmp_path / "c" / "data.csv").write_text("\n".join(x for x in lines if not x.endswith(",val")) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"nus-wide split 'validation': no row of .*data\.csv has split value 'val'"):
        load_multilabel_dataset("nus-wide", str(tmp_path / "c"), verify_images=False)


def test_open_images_repeated_rows_are_merged_not_counted_twice(tmp_path):
    make_openimages(str(tmp_path))
    before = load_multilabel_dataset("openimages-v6", str(tmp_path), verify_images=False, splits=["validation"])
    _append(tmp_path / "validation-annotations-human-imagelabels.csv", "100a1,verification,/m/02,1\n100b2,crowdsource,/m/01,0\n")
    after = load_multilabel_dataset("openimages-v6", str(tmp_path), verify_images=False, splits=["validation"])
    for column in ("labels", "negative_labels"):
        assert after["validation"][column] == before["validation"][column]


# ---------------------------------------------------------------------------------------- Hub


@pytest.fixture
def saved_hub(tmp_path):
    image = write_image(str(tmp_path / "a.png"), "png")
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.List(datasets.ClassLabel(names=["a", "b"]))})
    rows = datasets.Dataset.from_dict({"image": [image, image], "labels": [[0], [0, 1]]}, features=features)
    datasets.DatasetDict({"train": rows, "validation": rows}).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved", features


def test_hub_saved_folder_damaged_or_with_an_empty_split(saved_hub, tmp_path):
    folder, features = saved_hub
    shard = next((folder / "train").glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(DatasetLayoutError, match=r"hub: cannot read the saved dataset folder .*saved' \(damaged or truncated\?\)"):
        load_multilabel_dataset("hub", str(folder))
    (folder / "dataset_dict.json").write_text('{"splits": ["tr')
    with pytest.raises(DatasetLayoutError, match=r"cannot read the saved dataset folder .*JSONDecodeError"):
        load_multilabel_dataset("hub", str(folder))
    empty = datasets.Dataset.from_dict({"image": [], "labels": []}, features=features)
    datasets.DatasetDict({"train": empty}).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(DatasetLayoutError, match=r"hub: split 'train' of .*empty' is empty"):
        load_multilabel_dataset("hub", str(tmp_path / "empty"))


def test_hub_split_emptied_after_loading_is_named(tmp_path, monkeypatch):
    """A split with no rows that load_from_disk does return (datasets of other versions, load_dataset)."""
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.List(datasets.ClassLabel(names=["a"]))})
    empty = datasets.Dataset.from_dict({"image": [], "labels": []}, features=features)
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "dataset_dict.json").write_text('{"splits": ["validation"]}')
    monkeypatch.setattr(datasets, "load_from_disk", lambda path: datasets.DatasetDict({"validation": empty}))
    with pytest.raises(DatasetLayoutError, match=r"hub split 'validation' is empty"):
        load_multilabel_dataset("hub", str(tmp_path / "saved"))


# ---------------------------------------------------------------------------------------- demo


def test_demo_bad_parameters_and_a_damaged_cached_copy(tmp_path):
    for options, message in ((dict(image_size=33), "image_size must be an even number >= 32, got 33"),
                             (dict(num_train=0), "num_train and num_validation must be positive"),
                             (dict(max_digits=5), r"max_digits must be in 1\.\.4, got 5")):
        with pytest.raises(ValueError, match=message):
            load_multilabel_dataset("demo", str(tmp_path / "bad"), **options)
    assert not (tmp_path / "bad").exists()  # nothing written for a refused request
    options = dict(num_train=8, num_validation=4, image_size=32)
    load_multilabel_dataset("demo", str(tmp_path / "demo"), **options)
    path = tmp_path / "demo" / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text()[:300])  # damaged after it was written (the writer itself is atomic)
    with pytest.raises(DatasetLayoutError, match=r"malformed JSON in .*demo/annotations/instances_val2017\.json"):
        load_multilabel_dataset("demo", str(tmp_path / "demo"), **options)


# ---------------------------------------------------------------------------------------- NUS-WIDE ZSL


def _zsl_without(name):
    def damage(root):
        os.remove(root / name)
    return damage


def _zsl_truncated_benchmark(root):
    text = (root / "benchmark_81_v0.json").read_text()
    (root / "benchmark_81_v0.json").write_text(text[: len(text) // 2])


def _zsl_escaping(root):
    _append(root / "data.csv", "../../../etc/passwd,\"['sky']\",train\n")


@pytest.mark.parametrize(
    "damage, bench, error, message",
    [
        (_zsl_without("benchmark_81_v0.json"), None, MissingDatasetFileError,
         r"nus-wide-zsl: expected file .*benchmark_81_v0\.json does not exist[\s\S]*Expected layout"),
        (_zsl_without("wordvec_array.pth"), None, MissingDatasetFileError,
         r"nus-wide-zsl: expected file .*wordvec_array\.pth does not exist"),
        (_zsl_without("data.csv"), None, MissingDatasetFileError, r"data\.csv does not exist"),
        (_zsl_truncated_benchmark, None, DatasetLayoutError, r"benchmark_81_v0\.json at line 1, column \d+"),
        (None, {"train class": ["sky"], "test class": ["zebra", "zebra"]}, DatasetLayoutError,
         r"'test class' lists label\(s\) twice: \['zebra'\]"),
        (None, {"test class": ["volcano"]}, DatasetLayoutError,
         r"need at least one seen and one unseen class \(got 7 seen, 0 unseen\)"),
        (None, {"train class": ["sky"], "test class": ["bear"]}, DatasetLayoutError,
         r"nus-wide-zsl split 'zsl': no image has a label of this split's label set"),
        (_zsl_escaping, None, DatasetLayoutError, r"data\.csv:10: image path '../../../etc/passwd' escapes"),
    ],
    ids=["no-benchmark", "no-word-vectors", "no-data-csv", "truncated-benchmark", "duplicated-label",
         "unknown-labels-only", "empty-split", "escaping-path"],
)
def test_nus_wide_zsl_bad_benchmark_folders(damage, bench, error, message, tmp_path):
    root = write_nus_zsl(tmp_path / "nus", benchmark=bench)
    if damage is not None:
        damage(root)
    warned = pytest.warns(UserWarning, match="volcano") if bench and "volcano" in bench["test class"] else nullcontext()
    with warned, pytest.raises(error, match=message):
        load_nus_wide_zsl_protocol(str(root), verify_images=False)


# ---------------------------------------------------------------------------------------- images


ODD = ["gray", "palette", "cmyk", "gray16", "rgba", "la", "png", "one-pixel", "float32-tiff", "int32-png"]


def _odd_image(path, kind):
    if kind == "one-pixel":
        PIL.Image.new("RGB", (1, 1), (10, 200, 30)).save(path, format="PNG")
    elif kind == "float32-tiff":
        PIL.Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F").save(path, format="TIFF")
    elif kind == "int32-png":
        PIL.Image.fromarray(np.full((8, 8), 40000, dtype=np.int32), mode="I").save(path, format="PNG")
    else:
        write_image(path, kind, seed=4)
    return path


def test_every_odd_but_valid_image_kind_is_classified(tmp_path):
    """Each kind is decoded to RGB, resized, normalised and scored: finite logits for every label."""
    paths = [_odd_image(str(tmp_path / f"{k}.img"), k) for k in ODD]
    transform = build_eval_transform(32)
    batch = torch.stack([transform(p) for p in paths])
    assert batch.shape == (len(ODD), 3, 32, 32) and torch.isfinite(batch).all()
    model = tiny_q2l().eval()
    with torch.no_grad():
        assert torch.isfinite(model(batch).logits).all()
    for row in predict_files(model, paths, threshold=0.0, progress=False, batch_size=4):
        assert "error" not in row and len(row["labels"]) == 5, row


BROKEN = ["missing", "empty", "truncated", "corrupt", "directory"]


def test_every_broken_image_kind_is_skipped_counted_and_reported_by_predict(tmp_path):
    img = tmp_path / "img"
    write_image(str(img / "good.jpg"))
    for kind in BROKEN:
        if kind == "directory":
            (img / "directory.jpg").mkdir()
        elif kind != "missing":
            write_image(str(img / f"{kind}.jpg"), kind)
    rows = "".join(f"img/{k}.jpg,cat\n" for k in BROKEN)
    (tmp_path / "train.csv").write_text("image,labels\nimg/good.jpg,cat\n" + rows)
    with pytest.warns(SkippedImagesWarning, match=r"skipped 5 of 6 images"):
        ds = load_multilabel_dataset("csv", str(tmp_path), splits=["train"], verify_images="decode")
    report = load_report(ds["train"])
    assert ds["train"].num_rows == 1
    assert report["skipped"] == {"total": 5, "corrupt": 1, "empty": 1, "missing": 1, "not a file": 1, "truncated": 1}
    assert sorted(e["row"] for e in report["skipped_examples"]) == [f"train.csv:{i}" for i in range(3, 8)]
    paths = [str(img / f"{k}.jpg") for k in BROKEN if k != "missing"]
    for row in predict_files(tiny_q2l().eval(), paths, progress=False):
        assert row["labels"] == [] and "cannot read image" in row["error"], row
