import os

import pytest
from data_fixtures import make_openimages

from hf_mlcls.data import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    label_vector,
    load_multilabel_dataset,
    load_report,
)

NAMES = ["Dog", "Cat", "Tree", "Bank (/m/05)", "Bank (/m/06)"]  # trainable-list order


@pytest.fixture
def oi(tmp_path):
    make_openimages(str(tmp_path))
    return str(tmp_path)


def test_verified_labels_and_unknowns(oi):
    with pytest.warns(SkippedImagesWarning, match=r"'train': skipped 1 of 4 images \(missing: 1\)"):
        ds = load_multilabel_dataset("openimages-v6", oi)
    train = ds["train"]
    assert train.features["labels"].feature.names == NAMES
    assert train.features["negative_labels"].feature.names == NAMES
    # 000a1, 000b2, 000d4 (000c3's image is missing)
    assert train["labels"] == [[1], [2], [4]]
    assert train["negative_labels"] == [[0, 2], [3], []]
    assert ds["validation"]["labels"] == [[0], [0]]
    assert ds["validation"]["negative_labels"] == [[], [1]]
    report = load_report(train)
    assert report["dropped_untrainable_labels"] == 1  # /m/03 Car
    assert report["unverified"] == "unknown"
    assert report["label_names"] == ["/m/02", "/m/01", "/m/04", "/m/05", "/m/06"]
    assert report["skipped"] == {"total": 1, "missing": 1}
    row = train[0]
    vec = label_vector(row["labels"], 5, negative_labels=row["negative_labels"])
    assert vec.tolist() == [0.0, 1.0, 0.0, -1.0, -1.0]


def test_ml_decoder_protocol(oi):
    ds = load_multilabel_dataset("openimages-v6", oi, unverified_as_negative=True, verify_images=False)
    assert ds["train"].column_names == ["image", "labels"]
    assert ds["train"]["labels"] == [[1], [2], [], [4]]


def test_class_options(oi):
    ds = load_multilabel_dataset("openimages-v6", oi, trainable_classes=False, class_names="label_name", verify_images=False)
    assert ds["train"].features["labels"].feature.names == ["/m/01", "/m/02", "/m/03", "/m/04", "/m/05", "/m/06"]
    assert ds["train"]["labels"][0] == [0, 2]
    assert load_report(ds["train"])["dropped_untrainable_labels"] == 0


def test_conflicting_labels_positive_wins(oi):
    with open(os.path.join(oi, "oidv6-train-annotations-human-imagelabels.csv"), "a") as fh:
        fh.write("000d4,verification,/m/06,0\n")
    ds = load_multilabel_dataset("openimages-v6", oi, verify_images=False, splits=["train"])
    assert ds["train"]["labels"][3] == [4] and ds["train"]["negative_labels"][3] == []
    assert load_report(ds["train"])["conflicting_labels"] == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("000e5,verification,/m/02,0.5", r"human-imagelabels\.csv:11: Confidence 0\.5 is neither 1"),
        ("000e5,verification,/m/02", r"human-imagelabels\.csv:11: malformed CSV row: 3 fields"),
        ("000e5,verification,/m/02,yes", r"human-imagelabels\.csv:11: Confidence 'yes' is not a number"),
        ("000e5,verification,/m/99,1", r"1 label name\(s\) not in the class list: '/m/99'"),
        ("../../x,verification,/m/02,1", r"human-imagelabels\.csv:11: ImageID '../../x' is not a plain id"),
    ],
)
def test_malformed_label_file(oi, line, message):
    with open(os.path.join(oi, "oidv6-train-annotations-human-imagelabels.csv"), "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset("openimages-v6", oi, verify_images=False)


def test_missing_files(tmp_path, oi):
    (tmp_path / "nothing_here").mkdir()
    with pytest.raises(MissingDatasetFileError, match=r"oidv6-class-descriptions\.csv does not exist[\s\S]*Expected layout"):
        load_multilabel_dataset("openimages-v6", str(tmp_path / "nothing_here"))
    os.remove(os.path.join(oi, "validation-annotations-human-imagelabels.csv"))
    with pytest.raises(MissingDatasetFileError, match=r"validation-annotations-human-imagelabels\.csv does not exist"):
        load_multilabel_dataset("openimages-v6", oi, verify_images=False)


def test_annotations_subfolder_and_header_check(tmp_path):
    root = tmp_path / "oi"
    make_openimages(str(root))
    (root / "annotations").mkdir()
    for name in os.listdir(root):
        if name.endswith((".csv", ".txt")):
            os.rename(root / name, root / "annotations" / name)
    ds = load_multilabel_dataset("openimages-v6", str(root), verify_images=False)
    assert ds["train"].num_rows == 4
    with open(root / "annotations" / "validation-annotations-human-imagelabels.csv", "w") as fh:
        fh.write("ImageID,Source,Label,Confidence\n100a1,x,/m/02,1\n")
    with pytest.raises(DatasetLayoutError, match=r"lacks column\(s\) \['LabelName'\]"):
        load_multilabel_dataset("openimages-v6", str(root), verify_images=False)
