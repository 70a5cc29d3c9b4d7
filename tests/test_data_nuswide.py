import os

import numpy as np
import pytest
from data_fixtures import NUS_CONCEPTS, NUS_MISSING, NUS_TEST, NUS_TRAIN, make_nus_csv, make_nus_official, multi_hot

from hf_mlcls.data import DatasetLayoutError, MissingDatasetFileError, SkippedImagesWarning, load_multilabel_dataset, load_report


def _expected(rows, names=NUS_CONCEPTS):
    kept = [labs for p, labs in rows if p not in NUS_MISSING]
    remap = [names.index(NUS_CONCEPTS[j]) for j in range(len(NUS_CONCEPTS))]
    return multi_hot([[remap[j] for j in labs] for labs in kept], len(names))


@pytest.mark.parametrize("subdir", [False, True])
def test_official_layout(tmp_path, subdir):
    make_nus_official(str(tmp_path), concepts_in_subdir=subdir)
    with pytest.warns(SkippedImagesWarning, match=r"nus-wide split 'train': skipped 1 of 4 images \(missing: 1\)"):
        ds = load_multilabel_dataset("nus-wide", str(tmp_path))
    assert ds["train"].features["labels"].feature.names == NUS_CONCEPTS
    np.testing.assert_array_equal(multi_hot(ds["train"]["labels"], 4), _expected(NUS_TRAIN))
    np.testing.assert_array_equal(multi_hot(ds["validation"]["labels"], 4), _expected(NUS_TEST))
    report = load_report(ds["train"])
    assert report["skipped"] == {"total": 1, "missing": 1}
    assert report["skipped_examples"][0]["row"] == "TrainImagelist.txt:4"
    # the Windows absolute prefix of line 1 was reduced to the Flickr-relative path
    assert ds["train"].to_dict()["image"][0]["path"].endswith(os.path.join("Flickr", "actor", "0001_1.jpg"))


def test_official_layout_errors(tmp_path):
    root = str(tmp_path)
    make_nus_official(root)
    bad = os.path.join(root, "TrainTestLabels", "Labels_beach_Train.txt")
    with open(bad, "w") as fh:
        fh.write("0\n0\n2\n0\n")
    with pytest.raises(DatasetLayoutError, match=r"Labels_beach_Train\.txt:3: expected 0 or 1, got '2'"):
        load_multilabel_dataset("nus-wide", root)
    with open(os.path.join(root, "ImageList", "TestImagelist.txt"), "a") as fh:
        fh.write("sky\\0005_5.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"TestImagelist\.txt:3: image 'sky/0005_5.jpg' is listed again \(first on line 1\)"):
        load_multilabel_dataset("nus-wide", root, splits=["validation"])
    with open(bad, "w") as fh:
        fh.write("0\n0\n1\n")
    with pytest.raises(DatasetLayoutError, match=r"Labels_beach_Train\.txt: 3 labels for the 4 images"):
        load_multilabel_dataset("nus-wide", root)
    os.remove(bad)
    with pytest.raises(MissingDatasetFileError, match=r"Labels_beach_Train\.txt does not exist[\s\S]*Expected layout"):
        load_multilabel_dataset("nus-wide", root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDatasetFileError, match=r"Concepts81\.txt does not exist"):
        load_multilabel_dataset("nus-wide", str(tmp_path / "empty"))


def test_official_escaping_path_refused(tmp_path):
    root = str(tmp_path)
    make_nus_official(root)
    with open(os.path.join(root, "ImageList", "TestImagelist.txt"), "w") as fh:
        fh.write("sky\\0005_5.jpg\n..\\..\\..\\etc\\passwd\n")
    with pytest.raises(DatasetLayoutError, match=r"TestImagelist\.txt:2: image path '../../../etc/passwd' escapes"):
        load_multilabel_dataset("nus-wide", root, splits=["validation"])


def test_csv_layout(tmp_path):
    make_nus_csv(str(tmp_path))
    with pytest.warns(SkippedImagesWarning, match="missing: 1"):
        ds = load_multilabel_dataset("nus-wide", str(tmp_path))
    names = sorted(NUS_CONCEPTS)  # the ML-Decoder code sorts the label names
    assert ds["train"].features["labels"].feature.names == names
    np.testing.assert_array_equal(multi_hot(ds["train"]["labels"], 4), _expected(NUS_TRAIN, names))
    np.testing.assert_array_equal(multi_hot(ds["validation"]["labels"], 4), _expected(NUS_TEST, names))
    assert load_report(ds)["train"]["skipped"] == {"total": 1, "missing": 1}


def test_csv_layout_class_list_and_unlisted(tmp_path):
    make_nus_csv(str(tmp_path))
    (tmp_path / "Concepts81.txt").write_text("sky\nbeach\n")
    with pytest.raises(DatasetLayoutError, match=r"2 label name\(s\) not in the class list: 'airport', 'animal'"):
        load_multilabel_dataset("nus-wide", str(tmp_path), classes="Concepts81.txt", verify_images=False)
    ds = load_multilabel_dataset("nus-wide", str(tmp_path), classes="Concepts81.txt", drop_unlisted_labels=True,
                                 verify_images=False)
    assert ds["train"].features["labels"].feature.names == ["sky", "beach"]
    assert ds["train"]["labels"] == [[0], [], [0, 1], []]
    assert load_report(ds["train"])["dropped_labels"] == {"airport": 1, "animal": 1}
    ds = load_multilabel_dataset("nus-wide", str(tmp_path), classes=["sky", "beach"], drop_unlisted_labels=True,
                                 keep_empty=False, verify_images=False)
    assert ds["train"]["labels"] == [[0], [0, 1]]


def test_csv_layout_malformed(tmp_path):
    make_nus_csv(str(tmp_path))
    with open(tmp_path / "data.csv", "a") as fh:
        fh.write('images/x.jpg,"[\'sky\']",train,extra\n')
    with pytest.raises(DatasetLayoutError, match=r"data\.csv:8: malformed CSV row: 4 fields, the header has 3"):
        load_multilabel_dataset("nus-wide", str(tmp_path))
