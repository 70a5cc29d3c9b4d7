import hashlib
import json
import os

import numpy as np

import pytest

import hf_mlcls.data.demo as demo
from hf_mlcls.data import DEMO_CLASSES, DatasetLayoutError, generate_demo_dataset, load_multilabel_dataset, load_report

SMALL = {"num_train": 24, "num_validation": 8}


def _digest(folder):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(dirpath, name), "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def test_demo_goes_through_the_coco_loader(tmp_path):
    ds = load_multilabel_dataset("demo", str(tmp_path / "d"), **SMALL)
    assert ds["train"].num_rows == 24 and ds["validation"].num_rows == 8
    assert ds["train"].features["labels"].feature.names == list(DEMO_CLASSES)
    assert all(1 <= len(labels) <= 4 for labels in ds["train"]["labels"])
    image = ds["train"][0]["image"]
    assert image.size == (64, 64) and image.mode == "RGB"
    report = load_report(ds["train"])
    assert report["dataset"] == "demo" and report["skipped"] == {"total": 0}
    # the labels are the categories of the annotations written for each image
    with open(tmp_path / "d" / "annotations" / "instances_val2017.json") as fh:
        data = json.load(fh)
    per_image = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], set()).add(a["category_id"] - 1)
    assert ds["validation"]["labels"] == [sorted(per_image[i["id"]]) for i in data["images"]]
    assert {len(v) for v in per_image.values()} <= {1, 2, 3, 4}


def test_deterministic_and_seeded(tmp_path):
    a = generate_demo_dataset(str(tmp_path / "a"), **SMALL)
    b = generate_demo_dataset(str(tmp_path / "b"), **SMALL)
    c = generate_demo_dataset(str(tmp_path / "c"), seed=1, **SMALL)
    assert _digest(a) == _digest(b) != _digest(c)


def test_existing_set_is_not_regenerated_but_changed_params_are(tmp_path, monkeypatch):
    folder = generate_demo_dataset(str(tmp_path / "d"), **SMALL)
    before = _digest(folder)

    def boom(*args, **kwargs):
        raise AssertionError("regenerated")

    with monkeypatch.context() as m:
        m.setattr(demo, "_render_split", boom)
        assert generate_demo_dataset(folder, **SMALL) == folder
    generate_demo_dataset(folder, num_train=10, num_validation=8)
    assert _digest(folder) != before
    with open(os.path.join(folder, "manifest.json")) as fh:
        assert json.load(fh)["params"]["num_train"] == 10
    assert len(os.listdir(os.path.join(folder, "train2017"))) == 10
    assert sorted(os.listdir(tmp_path)) == ["d"]  # no temporary folders left


def test_crash_leaves_nothing_half_written(tmp_path, monkeypatch):
    real = demo._render_split
    calls = []

    def crash_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(demo, "_render_split", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(str(tmp_path / "d"), **SMALL)
    assert os.listdir(tmp_path) == []
    # and an existing good set survives a crashed regeneration
    monkeypatch.setattr(demo, "_render_split", real)
    folder = generate_demo_dataset(str(tmp_path / "d"), **SMALL)
    before = _digest(folder)
    calls.clear()
    monkeypatch.setattr(demo, "_render_split", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(folder, num_train=12, num_validation=8)
    assert _digest(folder) == before and sorted(os.listdir(tmp_path)) == ["d"]


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(DatasetLayoutError, match="not a demo dataset"):
        generate_demo_dataset(str(tmp_path / "mine"), **SMALL)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_default_folder_from_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MLCLS_CACHE", str(tmp_path / "cache"))
    ds = load_multilabel_dataset("demo", **SMALL)
    assert ds["train"].num_rows == 24
    assert os.path.isfile(tmp_path / "cache" / "demo" / "manifest.json")


def test_packaged_digits_equal_scikit_learns():
    """The demo needs no scikit-learn at run time: its digits ship with the package, equal to sklearn's."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="the comparison needs scikit-learn (dev extra)")
    from hf_mlcls.data.demo import load_digit_images

    images, target = load_digit_images()
    reference = sklearn_datasets.load_digits()
    assert images.dtype == reference.images.dtype and np.array_equal(images, reference.images)
    assert np.array_equal(target, reference.target)
