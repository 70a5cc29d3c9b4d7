import pytest

from hf_mlcls.data import list_datasets, load_multilabel_dataset

NAMES = ["coco2014", "coco2017", "voc2007", "voc2012", "nus-wide", "nus-wide-zsl", "openimages-v6", "stanford-cars",
         "visual-genome", "imagefolder", "cifar100", "csv", "jsonl", "hub", "demo", "shapes"]


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


def test_one_registry_answers_every_reader():
    """Loader, card title and convert's label set of a name all come from hf_mlcls.data.registry."""
    from hf_mlcls.convert.labels import canonical_label_set, resolve_labels
    from hf_mlcls.data.registry import find_dataset, find_label_set, label_set_names
    from hf_mlcls.hub.cards import _dataset_title

    for spelling in ("COCO14", "mscoco", " Coco2014 ", "coco2014"):
        assert find_dataset(spelling).name == "coco2014"
    assert find_dataset("open_images") is find_dataset("openimages-v6")
    assert find_dataset("imagenet") is None
    # one entry serves the loader and convert's label set
    assert "stanford-cars" in list_datasets() and canonical_label_set("cars") == "stanford-cars"
    assert find_dataset("cars").load_function().__name__ == "load_stanford_cars"
    assert label_set_names() == ["coco", "nus-wide", "openimages", "stanford-cars", "voc"]
    assert find_label_set("coco2017")[0] == find_label_set("coco")[0] == "coco"
    assert len(find_label_set("voc2012")[1]) == 20 and len(find_label_set("nus")[1]) == 81
    assert find_label_set("openimages") == ("openimages", None) and find_label_set("csv") is None
    assert resolve_labels("coco2017", 80)[:2] == ["person", "bicycle"]
    assert _dataset_title("NUS_WIDE") == "NUS-WIDE" and _dataset_title("my-data") == "my-data"
