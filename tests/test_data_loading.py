import pytest

from hf_mlcls.data import list_datasets, load_multilabel_dataset

NAMES = ["coco2014", "coco2017", "voc2007", "voc2012", "nus-wide", "nus-wide-zsl", "openimages-v6", "csv", "jsonl", "hub", "demo",
         "visual-genome", "imagefolder", "cifar100", "stanford-cars"]


def test_list_datasets():
    assert list_datasets() == NAMES
    described = list_datasets(with_descriptions=True)
    assert list(described) == NAMES and all(described.values())


def test_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; available: coco2014, coco2017"):
        load_multilabel_dataset("imagenet", "/tmp")


def test_unknown_option_lists_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match=r"coco2014: unknown option\(s\) \['keep_emtpy'\]; valid options: splits, keep_empty"):
        load_multilabel_dataset("coco2014", str(tmp_path), keep_emtpy=True)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['year'\]"):
        load_multilabel_dataset("coco2014", str(tmp_path), year=2017)


def test_data_dir_required_except_for_demo():
    with pytest.raises(TypeError, match="voc2007: data_dir is required"):
        load_multilabel_dataset("voc2007")


def test_aliases_and_case(tmp_path):
    with pytest.raises(FileNotFoundError, match="Concepts81"):
        (tmp_path / "n").mkdir()
        load_multilabel_dataset("NUS_WIDE", str(tmp_path / "n"))
