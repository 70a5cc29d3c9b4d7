import os

import numpy as np
import pytest
from data_fixtures import make_voc, multi_hot, voc_expected, write_image

from hf_mlcls.data import (
    VOC_CLASSES,
    DatasetLayoutError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    load_multilabel_dataset,
    load_report,
)


def test_labels_and_difficult_as_unknown(tmp_path):
    make_voc(str(tmp_path), 2007)
    ds = load_multilabel_dataset("voc2007", str(tmp_path))
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].features["labels"].feature.names == list(VOC_CLASSES)
    assert ds["train"].features["unknown_labels"].feature.names == list(VOC_CLASSES)
    for split, native in (("train", "train"), ("validation", "val"), ("test", "test")):
        labels, unknown = voc_expected(native)
        np.testing.assert_array_equal(multi_hot(ds[split]["labels"], 20), multi_hot(labels, 20))
        np.testing.assert_array_equal(multi_hot(ds[split]["unknown_labels"], 20), multi_hot(unknown, 20))
    # 000009: person only difficult -> unknown; 000005: a difficult chair beside a normal one stays positive
    assert ds["train"][2]["unknown_labels"] == [VOC_CLASSES.index("person")]
    assert ds["train"][0]["unknown_labels"] == []


def test_difficult_as_positive(tmp_path):
    make_voc(str(tmp_path), 2007)
    ds = load_multilabel_dataset("voc2007", str(tmp_path), difficult_as_positive=True)
    assert "unknown_labels" not in ds["train"].column_names
    labels, _ = voc_expected("train", difficult_as_positive=True)
    np.testing.assert_array_equal(multi_hot(ds["train"]["labels"], 20), multi_hot(labels, 20))


def test_paper_protocol_split_mapping_and_folder_forms(tmp_path):
    voc = make_voc(str(tmp_path), 2007)
    with open(os.path.join(voc, "ImageSets", "Main", "trainval.txt"), "w") as fh:
        fh.write("000005\n000007\n000009\n000012\n000016\n")
    for data_dir in (str(tmp_path), os.path.join(str(tmp_path), "VOCdevkit"), voc):
        ds = load_multilabel_dataset("voc2007", data_dir, splits={"train": "trainval", "validation": "test"})
        assert ds["train"].num_rows == 5 and ds["validation"].num_rows == 2


def test_voc2012_has_no_test_by_default(tmp_path):
    make_voc(str(tmp_path), 2012)
    ds = load_multilabel_dataset("voc2012", str(tmp_path))
    assert set(ds) == {"train", "validation"}


def test_missing_layout(tmp_path):
    with pytest.raises(MissingDatasetFileError, match=r"VOCdevkit/VOC2007/Annotations[\s\S]*Expected layout"):
        load_multilabel_dataset("voc2007", str(tmp_path))
    voc = make_voc(str(tmp_path), 2007)
    os.remove(os.path.join(voc, "ImageSets", "Main", "val.txt"))
    with pytest.raises(MissingDatasetFileError, match=r"ImageSets/Main/val\.txt does not exist"):
        load_multilabel_dataset("voc2007", str(tmp_path))
    os.remove(os.path.join(voc, "Annotations", "000007.xml"))
    with pytest.raises(MissingDatasetFileError, match=r"Annotations/000007\.xml \(listed at .*train\.txt:2\)"):
        load_multilabel_dataset("voc2007", str(tmp_path), splits=["train"])


def test_malformed_xml_names_file_and_line(tmp_path):
    voc = make_voc(str(tmp_path), 2007)
    with open(os.path.join(voc, "Annotations", "000016.xml"), "w") as fh:
        fh.write("<annotation>\n<object><name>bicycle</name>\n</annotation>")
    with pytest.raises(DatasetLayoutError, match=r"000016\.xml: malformed XML at line 3"):
        load_multilabel_dataset("voc2007", str(tmp_path))


def test_unknown_class_names_listed(tmp_path):
    voc = make_voc(str(tmp_path), 2007)
    from data_fixtures import _voc_xml

    with open(os.path.join(voc, "Annotations", "000007.xml"), "w") as fh:
        fh.write(_voc_xml("000007.jpg", [("car", 0), ("unicorn", 0), ("dragon", 1)]))
    with pytest.raises(DatasetLayoutError, match=r"2 label name\(s\) not in the class list: 'dragon', 'unicorn'"):
        load_multilabel_dataset("voc2007", str(tmp_path))


def test_duplicated_and_escaping_ids(tmp_path):
    voc = make_voc(str(tmp_path), 2007)
    path = os.path.join(voc, "ImageSets", "Main", "train.txt")
    with open(path, "a") as fh:
        fh.write("000005\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.txt:4: duplicated image id '000005' \(first on line 1\)"):
        load_multilabel_dataset("voc2007", str(tmp_path))
    with open(path, "w") as fh:
        fh.write("../../../../secret\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.txt:1: image path .* escapes"):
        load_multilabel_dataset("voc2007", str(tmp_path))


def test_corrupt_image_skipped(tmp_path):
    voc = make_voc(str(tmp_path), 2007)
    write_image(os.path.join(voc, "JPEGImages", "000007.jpg"), "corrupt")
    with pytest.warns(SkippedImagesWarning, match="corrupt: 1"):
        ds = load_multilabel_dataset("voc2007", str(tmp_path))
    assert ds["train"].num_rows == 2
    assert load_report(ds)["train"]["skipped"] == {"total": 1, "corrupt": 1}
