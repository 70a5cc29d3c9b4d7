import json
import os

import numpy as np
import pytest
from data_fixtures import write_image

from hf_mlcls.data import DatasetLayoutError, MissingDatasetFileError, SkippedImagesWarning, load_multilabel_dataset, load_report

TRAIN = {"1.jpg": [0, 499, 7], "2.jpg": [3], "3.jpg": []}
TEST = {"10.jpg": [7, 7, 1], "11.jpg": [250]}


def make_vg(root, train=TRAIN, test=TEST, missing=()):
    """C-Tran's VG/ folder: VG_100K/, the two lists and the label index."""
    vg = os.path.join(root, "VG")
    for i, name in enumerate([*train, *test]):
        if name not in missing:
            write_image(os.path.join(vg, "VG_100K", name), seed=i)
    for split, rows in (("train", train), ("test", test)):
        with open(os.path.join(vg, f"{split}_list_500.txt"), "w") as fh:
            fh.write("".join(f"{n}\n" for n in rows))
    with open(os.path.join(vg, "vg_category_500_labels_index.json"), "w") as fh:
        json.dump({**train, **test}, fh)
    return vg


def test_rows_follow_the_lists_with_500_classes(tmp_path):
    vg = make_vg(str(tmp_path))
    for data_dir in (str(tmp_path), vg):  # the VG folder or its parent
        ds = load_multilabel_dataset("vg500", data_dir)
        assert list(ds) == ["train", "validation"]
        names = ds["train"].features["labels"].feature.names
        assert len(names) == 500 and names[0] == "vg500_000"
        assert [r["labels"] for r in ds["train"]] == [[0, 7, 499], [3], []]
        assert [r["labels"] for r in ds["validation"]] == [[1, 7], [250]]
        assert ds["validation"][0]["image"].size == (24, 24)
        assert load_report(ds["train"])["num_without_labels"] == 1


def test_class_names_from_a_file(tmp_path):
    vg = make_vg(str(tmp_path))
    path = tmp_path / "names.txt"
    path.write_text("".join(f"object {i}\n" for i in range(500)))
    ds = load_multilabel_dataset("visual-genome", vg, class_names=str(path))
    assert ds["train"].features["labels"].feature.names[499] == "object 499"
    path.write_text("a\nb\n")
    with pytest.raises(DatasetLayoutError, match="2 class names, VG-500 has 500"):
        load_multilabel_dataset("visual-genome", vg, class_names=str(path))


@pytest.mark.parametrize(
    "train, message",
    [
        ({"1.jpg": [0, 500]}, r"entry '1.jpg' has label index 500, outside 0..499"),
        ({"1.jpg": ["cat"]}, r"entry '1.jpg' must be a list of integer label indices"),
        ({"1.jpg": [-1]}, r"label index -1"),
    ],
)
def test_bad_label_index_names_the_entry(tmp_path, train, message):
    vg = make_vg(str(tmp_path), train=train)
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset("visual-genome", vg)


def test_list_errors_name_file_and_line(tmp_path):
    vg = make_vg(str(tmp_path))
    with open(os.path.join(vg, "test_list_500.txt"), "a") as fh:
        fh.write("99.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"test_list_500.txt:3: image '99.jpg' has no entry in .*labels_index.json"):
        load_multilabel_dataset("visual-genome", vg)
    with open(os.path.join(vg, "test_list_500.txt"), "w") as fh:
        fh.write("10.jpg\n11.jpg\n10.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"test_list_500.txt:3: image '10.jpg' listed twice \(first on line 1\)"):
        load_multilabel_dataset("visual-genome", vg)
    with open(os.path.join(vg, "test_list_500.txt"), "w") as fh:
        fh.write("../../outside.jpg\n")
    with open(os.path.join(vg, "vg_category_500_labels_index.json"), "w") as fh:
        json.dump({**TRAIN, "../../outside.jpg": [1]}, fh)
    with pytest.raises(DatasetLayoutError, match="escapes the dataset folder"):
        load_multilabel_dataset("visual-genome", vg)


def test_missing_files_and_images(tmp_path):
    vg = make_vg(str(tmp_path), missing=("2.jpg",))
    with pytest.warns(SkippedImagesWarning, match="skipped 1 of 3 images"):
        ds = load_multilabel_dataset("visual-genome", vg)
    assert len(ds["train"]) == 2 and load_report(ds["train"])["skipped"]["total"] == 1
    os.remove(os.path.join(vg, "test_list_500.txt"))
    with pytest.raises(MissingDatasetFileError, match="test_list_500.txt"):
        load_multilabel_dataset("visual-genome", vg)
    with open(os.path.join(vg, "vg_category_500_labels_index.json"), "w") as fh:
        fh.write("{\"1.jpg\": [1,\n")
    with pytest.raises(DatasetLayoutError, match="malformed JSON"):
        load_multilabel_dataset("visual-genome", vg, splits=["train"])


def test_batches_are_500_wide(tmp_path):
    from hf_mlcls.data import MultiLabelCollator, apply_transforms, build_eval_transform

    ds = load_multilabel_dataset("visual-genome", make_vg(str(tmp_path)))
    ds = apply_transforms(ds, eval_transform=build_eval_transform(32))
    batch = MultiLabelCollator()([ds["validation"][i] for i in range(2)])
    assert batch["labels"].shape == (2, 500)
    assert np.flatnonzero(batch["labels"][0].numpy()).tolist() == [1, 7]
