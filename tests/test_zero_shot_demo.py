"""The coloured-shapes zero-shot set and examples/zero_shot_demo.py.

The set must be what its names say (each annotated shape has the named colour where it is
drawn), deterministic, readable through the registry and the COCO loader, and its held-out
names must be made of words the seen names teach. The demo script runs end to end on a
few images and refuses a model that was trained with an unseen name.
"""

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hf_mlcls.data.shapes as shapes
from hf_mlcls.data import DatasetLayoutError, list_datasets, load_multilabel_dataset, load_report
from hf_mlcls.data.nuswide_zsl import zero_shot_splits
from hf_mlcls.data.shapes import (
    SHAPES_CLASSES,
    SHAPES_COLOURS,
    SHAPES_SHAPES,
    SHAPES_UNSEEN,
    SHAPES_WORDS,
    generate_shapes_dataset,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = {"num_train": 40, "num_validation": 12}


def _digest(folder):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(dirpath, name), "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def test_unseen_names_are_made_of_seen_words():
    assert len(SHAPES_CLASSES) == len(SHAPES_COLOURS) * len(SHAPES_SHAPES) == 30
    assert set(SHAPES_UNSEEN) <= set(SHAPES_CLASSES) and len(set(SHAPES_UNSEEN)) == 8
    seen = [c for c in SHAPES_CLASSES if c not in SHAPES_UNSEEN]
    seen_words = {w for name in seen for w in name.split()}
    for name in SHAPES_UNSEEN:
        assert set(name.split()) <= seen_words, name
    for colour in SHAPES_COLOURS:  # every word is taught in at least three seen combinations
        assert sum(n.split()[0] == colour for n in seen) >= 3, colour
    for shape in SHAPES_SHAPES:
        assert sum(n.split()[1] == shape for n in seen) >= 3, shape


def test_shapes_go_through_the_registry_and_coco_loader(tmp_path):
    assert "shapes" in list_datasets()
    ds = load_multilabel_dataset("shapes", str(tmp_path / "s"), **SMALL)
    assert ds["train"].num_rows == 40 and ds["validation"].num_rows == 12
    assert ds["train"].features["labels"].feature.names == list(SHAPES_CLASSES)
    assert all(1 <= len(labels) <= 3 for labels in ds["train"]["labels"])
    assert load_report(ds["train"])["dataset"] == "shapes"
    image = ds["validation"][0]["image"]
    assert image.size == (64, 64) and image.mode == "RGB"


def test_default_folder_is_under_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MLCLS_CACHE", str(tmp_path / "cache"))
    ds = load_multilabel_dataset("shapes", **SMALL)  # no data_dir: a generated set
    assert (tmp_path / "cache" / "shapes" / "manifest.json").is_file()
    assert ds["train"].num_rows == 40


def test_each_annotation_has_its_named_colour_where_it_is_drawn(tmp_path):
    """The label is what the picture shows: the centre pixel of each annotated shape is nearest the named colour."""
    folder = generate_shapes_dataset(str(tmp_path / "s"), **SMALL)
    with open(os.path.join(folder, "annotations", "instances_train2017.json")) as fh:
        data = json.load(fh)
    files = {i["id"]: i["file_name"] for i in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}
    palette = np.array(list(SHAPES_COLOURS.values()), dtype=float)
    checked = 0
    for ann in data["annotations"]:
        pixels = np.asarray(Image.open(os.path.join(folder, "train2017", files[ann["image_id"]])), dtype=float)
        x, y, w, h = ann["bbox"]
        cx, cy = int(x + w / 2), int(y + h / 2)
        centre = pixels[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(0)
        nearest = list(SHAPES_COLOURS)[int(np.argmin(((palette - centre) ** 2).sum(1)))]
        assert nearest == names[ann["category_id"]].split()[0], (ann, centre)
        checked += 1
    assert checked >= 40


def test_deterministic_seeded_and_never_replaces_a_foreign_folder(tmp_path, monkeypatch):
    a = generate_shapes_dataset(str(tmp_path / "a"), **SMALL)
    b = generate_shapes_dataset(str(tmp_path / "b"), **SMALL)
    c = generate_shapes_dataset(str(tmp_path / "c"), seed=1, **SMALL)
    assert _digest(a) == _digest(b) != _digest(c)

    def boom(*args, **kwargs):
        raise AssertionError("regenerated")

    with monkeypatch.context() as m:
        m.setattr(shapes, "_render_split", boom)
        assert generate_shapes_dataset(a, **SMALL) == a  # same parameters: nothing written
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(DatasetLayoutError, match="not a shapes dataset"):
        generate_shapes_dataset(str(tmp_path / "mine"), **SMALL)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="max_shapes"):
        generate_shapes_dataset(str(tmp_path / "x"), max_shapes=5)


def test_word_labels_add_the_words_of_each_shape_and_change_no_pixel(tmp_path):
    """word_labels=True: the same images, each also labelled with the colour and shape words of its shapes."""
    plain = generate_shapes_dataset(str(tmp_path / "plain"), **SMALL)
    words = generate_shapes_dataset(str(tmp_path / "words"), word_labels=True, **SMALL)
    for split in ("train2017", "val2017"):
        assert _digest(os.path.join(plain, split)) == _digest(os.path.join(words, split))
    ds = load_multilabel_dataset("shapes", str(tmp_path / "words"), word_labels=True, **SMALL)
    names = ds["train"].features["labels"].feature.names
    assert names == list(SHAPES_CLASSES) + list(SHAPES_WORDS) and len(names) == 41
    plain_ds = load_multilabel_dataset("shapes", str(tmp_path / "plain"), **SMALL)
    for row, plain_row in zip(ds["train"]["labels"], plain_ds["train"]["labels"]):
        combos = {names[i] for i in plain_row}
        expected = combos | {w for c in combos for w in c.split()}
        assert {names[i] for i in row} == expected
    splits = zero_shot_splits(ds, list(SHAPES_UNSEEN))
    train_names = splits["train"].features["labels"].feature.names
    assert len(train_names) == 33 and not set(train_names) & set(SHAPES_UNSEEN)  # 22 combinations + 11 words


def test_zero_shot_splits_hold_the_unseen_combinations_out(tmp_path):
    ds = load_multilabel_dataset("shapes", str(tmp_path / "s"), **SMALL)
    splits = zero_shot_splits(ds, list(SHAPES_UNSEEN))
    train_names = splits["train"].features["labels"].feature.names
    assert not set(train_names) & set(SHAPES_UNSEEN) and len(train_names) == 22
    assert splits["zsl"].features["labels"].feature.names == [c for c in SHAPES_CLASSES if c in SHAPES_UNSEEN]
    assert all(labels for labels in splits["zsl"]["labels"])  # every ZSL image has an unseen shape


# ----------------------------------------------------------------------------- the demo script


def _demo_module():
    spec = importlib.util.spec_from_file_location("zero_shot_demo", REPO / "examples" / "zero_shot_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(600)
def test_demo_script_trains_scores_and_reports(tmp_path, monkeypatch):
    """One epoch on 64 images: the report has ZSL on the 8 unseen names, GZSL on all 30, chance from the same
    images, CPU time and load; the saved model knows only the 22 seen names and the 11 single words (the
    default word labels). --eval_only scores it again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts examples/ on the path
    demo = _demo_module()
    common = ["--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"), "--num_train", "64",
              "--num_validation", "24", "--chance_draws", "20"]
    report = demo.main(common + ["--epochs", "1"])
    saved = json.loads((tmp_path / "out" / "zero_shot_demo.json").read_text())
    assert saved["unseen"] == list(SHAPES_UNSEEN) and saved["word_labels"] is True
    assert sorted(saved["seen"]) == sorted([c for c in SHAPES_CLASSES if c not in SHAPES_UNSEEN] + list(SHAPES_WORDS))
    assert not set(saved["seen"]) & set(SHAPES_UNSEEN)
    zsl, gzsl = saved["results"]["zsl"], saved["results"]["gzsl"]
    assert sorted(zsl["labels"]) == sorted(SHAPES_UNSEEN) and len(gzsl["labels"]) == 30
    assert sorted(gzsl["labels"]) == sorted(SHAPES_CLASSES)  # the words are not scored
    assert zsl["num_images"] == gzsl["num_images"] > 0
    assert 0 <= zsl["mAP"] <= 100 and zsl["chance"]["mAP"]["std"] > 0
    assert saved["train_cpu_seconds"] > 0 and saved["load_average_1min"]["start"] >= 0
    assert report["results"]["zsl"]["mAP"] == zsl["mAP"]
    again = demo.main(common + ["--eval_only"])
    assert again["train_cpu_seconds"] is None
    assert again["results"]["zsl"]["mAP"] == pytest.approx(zsl["mAP"], abs=1e-6)  # same model, same images


def test_demo_script_refuses_a_model_trained_with_an_unseen_name(tmp_path, monkeypatch):
    import torch

    from hf_mlcls import create_model

    model = create_model("mldecoder-tresnetm-zsl-224", backbone="test_resnet", image_size=64, decoder_embedding=32,
                         dim_feedforward=48, label_embedding_dim=384, num_labels=2)
    model.set_label_embeddings(torch.randn(2, 384), ["red circle", "red star"])  # red star is unseen
    model.save_pretrained(tmp_path / "out")
    demo = _demo_module()
    with pytest.raises(SystemExit, match="red star"):
        demo.main(["--eval_only", "--output_dir", str(tmp_path / "out"), "--data_dir", str(tmp_path / "data")])


def test_demo_script_names_a_bad_argument(capsys):
    demo = _demo_module()
    with pytest.raises(SystemExit) as exit_info:
        demo.parse(["--epochs", "0"])
    assert exit_info.value.code == 2 and "--epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        demo.parse(["--dataset", "demo", "--word_labels"])
    assert exit_info.value.code == 2 and "--word_labels" in capsys.readouterr().err
