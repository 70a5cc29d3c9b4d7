"""Bad input that no other test file covers, one test per row of docs/errors.md.

Over 500 lines for one concern: the catalogue rows of docs/errors.md that no other file tests.

Rows already covered elsewhere are referenced by name in docs/errors.md instead of being tested
twice. Sections: dataset layouts, images, models, configs, the CLI. Known gaps in the model code
were closed in the source (clear errors naming the argument), each with a test here.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from data_fixtures import (
    make_coco,
    make_csv,
    make_jsonl,
    make_nus_csv,
    make_nus_official,
    make_openimages,
    make_voc,
    write_image,
)
from helpers_space import bomb_png
from safetensors import SafetensorError
from test_models import LABELS, tiny_mld, tiny_q2l
from transformers import AutoModelForImageClassification

from hf_mlcls import MLDecoderConfig, Query2LabelConfig, create_model
from hf_mlcls.cli import main as cli_main
from hf_mlcls.errors import UserError
from hf_mlcls.data import (
    DatasetLayoutError,
    ImageOpenError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    build_eval_transform,
    build_train_transform,
    check_image_file,
    load_multilabel_dataset,
    load_report,
    open_rgb,
)
from hf_mlcls.inference import ModelLoadError, load_model, predict_files

# ======================================================================================= datasets

LAYOUTS = ["coco2014", "coco2017", "voc2007", "voc2012", "nus-wide", "nus-wide-zsl", "openimages-v6", "csv", "jsonl", "hub"]


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_missing_dataset_folder_names_the_path(name, tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match=str(missing)) as caught:
        load_multilabel_dataset(name, str(missing))
    assert isinstance(caught.value, DatasetLayoutError)  # MissingDatasetFileError: both


def test_a_missing_split_file_or_image_folder_names_it(tmp_path):
    make_jsonl(str(tmp_path / "j"))
    os.remove(tmp_path / "j" / "validation.jsonl")
    with pytest.raises(MissingDatasetFileError, match=r"validation\.jsonl does not exist[\s\S]*Expected layout"):
        load_multilabel_dataset("jsonl", str(tmp_path / "j"))
    make_coco(str(tmp_path / "c"), broken=False)
    shutil.rmtree(tmp_path / "c" / "val2014")
    with pytest.raises(MissingDatasetFileError, match=r"images: expected folder .*val2014 does not exist"):
        load_multilabel_dataset("coco2014", str(tmp_path / "c"))


def _truncate(path, keep: float = 0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def _truncate_after(path, marker: str):
    """Cut a text file right after the first ``marker`` (e.g. inside a quoted field)."""
    text = open(path, encoding="utf-8").read()
    open(path, "w", encoding="utf-8").write(text[: text.index(marker) + len(marker)])


def _trunc_coco(root):
    make_coco(root, broken=False)
    _truncate(os.path.join(root, "annotations", "instances_val2014.json"))
    return "coco2014", {}, r"instances_val2014\.json at line \d+, column \d+"


def _trunc_voc(root):
    voc = make_voc(root, 2007)
    _truncate(os.path.join(voc, "Annotations", "000016.xml"))
    return "voc2007", {}, r"000016\.xml: malformed XML at line 1"


def _trunc_csv(root):
    make_csv(root)
    with open(os.path.join(root, "train.csv"), "a") as fh:
        fh.write('img/c.jpg,"cat|do')  # the last row cut inside its quoted label cell
    return "csv", {}, r"train\.csv:\d+: malformed CSV"


def _trunc_jsonl(root):
    make_jsonl(root)
    with open(os.path.join(root, "train.jsonl"), "a") as fh:
        fh.write('{"image": "img/c.jpg", "lab')
    return "jsonl", {}, r"train\.jsonl:5: malformed JSON"


def _trunc_nus_official(root):
    make_nus_official(root)
    _truncate(os.path.join(root, "TrainTestLabels", "Labels_sky_Train.txt"))
    return "nus-wide", {"verify_images": False}, r"Labels_sky_Train\.txt: 2 labels for the 4 images"


def _trunc_nus_csv(root):
    make_nus_csv(root)
    _truncate_after(os.path.join(root, "data.csv"), "beach/0003_3.jpg,\"['bea")
    return "nus-wide", {"verify_images": False}, r"data\.csv:\d+: malformed CSV"


def _trunc_openimages(root):
    make_openimages(root)
    _truncate_after(os.path.join(root, "oidv6-train-annotations-human-imagelabels.csv"), "000b2,verifica")
    return "openimages-v6", {"verify_images": False}, r"human-imagelabels\.csv:5: malformed CSV row: 2 fields"


@pytest.mark.parametrize("make", [_trunc_coco, _trunc_voc, _trunc_csv, _trunc_jsonl, _trunc_nus_official, _trunc_nus_csv,
                                  _trunc_openimages], ids=lambda f: f.__name__[7:])
def test_a_truncated_annotation_file_names_the_file_and_place(make, tmp_path):
    name, options, message = make(str(tmp_path))
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset(name, str(tmp_path), **options)


def _latin1(path, line_text: str):
    with open(path, "ab") as fh:
        fh.write(line_text.encode("latin-1"))


@pytest.mark.parametrize(
    "layout, make, file, line, expected",
    [
        ("csv", make_csv, "train.csv", "img/x.jpg,caf\xe9\n", r"train\.csv:6: not UTF-8 text"),
        ("jsonl", make_jsonl, "train.jsonl", '{"image": "img/x.jpg", "labels": ["caf\xe9"]}\n', r"train\.jsonl:5: not UTF-8"),
        ("csv", make_csv, "classes.txt", "cat\ndog\ntraffic light\ncaf\xe9\n", r"classes\.txt:4: not UTF-8"),
        ("nus-wide", make_nus_official, "ImageList/TrainImagelist.txt", "caf\xe9\\x.jpg\r\n",
         r"TrainImagelist\.txt:5: not UTF-8"),
        ("nus-wide", make_nus_csv, "data.csv", "images/caf\xe9.jpg,\"['sky']\",train\n", r"data\.csv:8: not UTF-8"),
        ("openimages-v6", make_openimages, "oidv6-class-descriptions.csv", "/m/07,Caf\xe9\n",
         r"class-descriptions\.csv:8: not UTF-8"),
        ("openimages-v6", make_openimages, "validation-annotations-human-imagelabels.csv", "caf\xe9,x,/m/02,1\n",
         r"validation-annotations-human-imagelabels\.csv:5: not UTF-8"),
        ("voc2007", lambda root: make_voc(root, nested=False), "ImageSets/Main/train.txt", "caf\xe9\n",
         r"train\.txt:4: not UTF-8"),
    ],
    ids=["csv", "jsonl", "classes.txt", "nus-list", "nus-csv", "oi-classes", "oi-labels", "voc-imageset"],
)
def test_a_file_that_is_not_utf8_names_the_file_and_line(layout, make, file, line, expected, tmp_path):
    make(str(tmp_path))
    _latin1(tmp_path / file, line)
    with pytest.raises(DatasetLayoutError, match=expected):
        load_multilabel_dataset(layout, str(tmp_path), verify_images=False)


def test_duplicates_not_covered_by_the_loader_tests(tmp_path):
    make_jsonl(str(tmp_path / "j"))
    with open(tmp_path / "j" / "train.jsonl", "a") as fh:
        fh.write(json.dumps({"image": "img/a.jpg", "labels": ["dog"]}) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"train\.jsonl:5: image .*a\.jpg is listed again \(first at train\.jsonl:1\)"):
        load_multilabel_dataset("jsonl", str(tmp_path / "j"))
    make_csv(str(tmp_path / "c"))
    (tmp_path / "c" / "classes.txt").write_text("cat\ndog\ncat\ntraffic light\n")
    with pytest.raises(DatasetLayoutError, match=r"classes\.txt: duplicated class name\(s\) \['cat'\]"):
        load_multilabel_dataset("csv", str(tmp_path / "c"))
    make_openimages(str(tmp_path / "o"))
    with open(tmp_path / "o" / "oidv6-class-descriptions.csv", "a") as fh:
        fh.write("/m/02,Dog again\n")
    with pytest.raises(DatasetLayoutError, match=r"class-descriptions\.csv:8: duplicated LabelName '/m/02' \(first on line 3\)"):
        load_multilabel_dataset("openimages-v6", str(tmp_path / "o"), verify_images=False)


def _empty_coco(root):
    make_coco(root, broken=False)
    path = os.path.join(root, "annotations", "instances_val2014.json")
    data = json.load(open(path))
    data.update(images=[], annotations=[])
    json.dump(data, open(path, "w"))
    return "coco2014", r"coco2014 split 'validation' is empty"


def _empty_voc(root):
    voc = make_voc(root, 2007)
    open(os.path.join(voc, "ImageSets", "Main", "val.txt"), "w").close()
    return "voc2007", r"voc2007 split 'validation' is empty"


def _empty_jsonl(root):
    make_jsonl(root)
    open(os.path.join(root, "validation.jsonl"), "w").write("\n\n")
    return "jsonl", r"jsonl split 'validation' is empty"


def _empty_nus(root):
    make_nus_official(root)
    open(os.path.join(root, "ImageList", "TestImagelist.txt"), "w").close()
    for concept in ("airport", "animal", "beach", "sky"):
        open(os.path.join(root, "TrainTestLabels", f"Labels_{concept}_Test.txt"), "w").close()
    return "nus-wide", r"nus-wide split 'validation' is empty"


def _empty_openimages(root):
    make_openimages(root)
    open(os.path.join(root, "validation-annotations-human-imagelabels.csv"), "w").write(
        "ImageID,Source,LabelName,Confidence\n")
    return "openimages-v6", r"validation-annotations-human-imagelabels\.csv has no rows"


@pytest.mark.parametrize("make", [_empty_coco, _empty_voc, _empty_jsonl, _empty_nus, _empty_openimages],
                         ids=lambda f: f.__name__[7:])
def test_an_empty_split_is_an_error_naming_it(make, tmp_path):
    name, message = make(str(tmp_path))
    with pytest.raises(DatasetLayoutError, match=message):
        load_multilabel_dataset(name, str(tmp_path), verify_images=False)


def test_a_split_whose_every_image_is_unusable_is_an_error(tmp_path):
    make_csv(str(tmp_path))
    for name in ("e.jpg", "f.jpg"):
        write_image(str(tmp_path / "img" / name), "corrupt")
    with pytest.raises(DatasetLayoutError, match=r"csv split 'validation': every one of its 2 images is unusable \(\{'corrupt': 2\}\)"):
        load_multilabel_dataset("csv", str(tmp_path))


def test_jsonl_unknown_names_and_nus_csv_escaping_paths(tmp_path):
    make_jsonl(str(tmp_path / "j"))
    with pytest.raises(DatasetLayoutError, match=r"1 label name\(s\) not in the class list: 'traffic light'.*train\.jsonl:2"):
        load_multilabel_dataset("jsonl", str(tmp_path / "j"), classes=["cat", "dog"])
    make_nus_csv(str(tmp_path / "n"))
    with open(tmp_path / "n" / "data.csv", "a") as fh:
        fh.write("../../etc/passwd,\"['sky']\",train\n")
    with pytest.raises(DatasetLayoutError, match=r"data\.csv:8: image path '../../etc/passwd' escapes"):
        load_multilabel_dataset("nus-wide", str(tmp_path / "n"))


@pytest.mark.parametrize("layout, make, file", [("csv", make_csv, "train.csv:2"), ("jsonl", make_jsonl, "train.jsonl:1")],
                         ids=["csv", "jsonl"])
def test_names_where_label_type_index_promises_indices(layout, make, file, tmp_path):
    """Without a class list, label_type='index' with a name among the labels used to end in int()'s ValueError."""
    make(str(tmp_path))
    with pytest.raises(DatasetLayoutError, match=rf"{file}: label 'cat' is not a class index \(label_type='index'\)"):
        load_multilabel_dataset(layout, str(tmp_path), label_type="index", verify_images=False)


def test_hub_label_columns_it_cannot_read(tmp_path):
    import datasets

    img = write_image(str(tmp_path / "a.png"), "png")
    multi_hot = datasets.Dataset.from_dict({"image": [img], "labels": [[0.0, 1.0]]})
    datasets.DatasetDict({"train": multi_hot}).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(DatasetLayoutError, match=r"label column 'labels' has feature .*expected a list of ClassLabel"):
        load_multilabel_dataset("hub", str(tmp_path / "saved"))


# ========================================================================================= images


def test_a_one_pixel_image_goes_through_the_checks_transforms_and_models(tmp_path):
    path = str(tmp_path / "dot.png")
    PIL.Image.new("RGB", (1, 1), (200, 30, 40)).save(path)
    assert check_image_file(path, "decode") is None
    assert open_rgb(path).size == (1, 1)
    torch.manual_seed(0)
    for transform in (build_eval_transform(64), build_train_transform(64)):  # train: Cutout + RandAugment too
        x = transform(path)
        assert x.shape == (3, 64, 64) and torch.isfinite(x).all()
    for make in (tiny_q2l, tiny_mld):
        model = make().eval()
        with torch.no_grad():
            assert torch.isfinite(model(build_eval_transform(64)(path)[None]).logits).all()
            assert torch.isfinite(model(torch.rand(1, 3, 1, 1)).logits).all()  # a 1x1 tensor straight in
    result = predict_files(tiny_q2l().eval(), [path], threshold=0.0, progress=False)
    assert not result[0].get("error") and len(result[0]["labels"]) == len(LABELS)


def test_an_image_too_large_to_open_safely_is_refused_naming_the_file(tmp_path):
    """A PNG header claiming 30000 x 30000 pixels (900 MP, a few bytes of data): above PIL's
    hard limit (2 x 89.5 MP) it is refused before any pixel memory is taken."""
    bomb = tmp_path / "img" / "bomb.png"
    bomb.parent.mkdir()
    bomb_png(bomb)
    assert check_image_file(str(bomb)).startswith("corrupt: DecompressionBombError")
    with pytest.raises(ImageOpenError, match=r"cannot read image .*bomb\.png: DecompressionBombError"):
        open_rgb(str(bomb))
    with pytest.raises(ImageOpenError, match="bomb.png"):
        build_eval_transform(64)(str(bomb))
    write_image(str(tmp_path / "img" / "ok.jpg"))
    (tmp_path / "train.csv").write_text("image,labels\nimg/ok.jpg,cat\nimg/bomb.png,dog\n")
    with pytest.warns(SkippedImagesWarning, match=r"skipped 1 of 2 images \(corrupt: 1\)"):
        ds = load_multilabel_dataset("csv", str(tmp_path), splits=["train"])
    assert ds["train"].num_rows == 1 and load_report(ds["train"])["skipped_examples"][0]["row"] == "train.csv:3"
    result = predict_files(tiny_q2l().eval(), [str(bomb)], progress=False)
    assert "DecompressionBombError" in result[0]["error"] and result[0]["labels"] == []


def test_an_image_between_the_warning_and_the_hard_limit_is_decoded_with_a_warning(tmp_path, monkeypatch):
    """PIL warns above MAX_IMAGE_PIXELS (89.5 MP) and refuses above twice that; in between (a real
    100-MP photo) the data pipeline decodes it. Shown with the limit lowered to 1,000 pixels."""
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    PIL.Image.new("RGB", (40, 40)).save(tmp_path / "big.png")  # 1,600 pixels
    with pytest.warns(PIL.Image.DecompressionBombWarning):
        assert open_rgb(str(tmp_path / "big.png")).size == (40, 40)
    PIL.Image.new("RGB", (50, 50)).save(tmp_path / "bigger.png")  # 2,500 pixels: over twice the limit
    with pytest.raises(ImageOpenError, match="DecompressionBombError"):
        open_rgb(str(tmp_path / "bigger.png"))


def test_a_large_jpeg_is_decoded_at_reduced_size_for_training(tmp_path):
    path = str(tmp_path / "large.jpg")
    PIL.Image.fromarray(np.full((3000, 4000, 3), 90, np.uint8)).save(path, quality=50)
    assert open_rgb(path, draft_size=(64, 64)).size == (500, 375)  # libjpeg's 1/8 scale, never below the target
    assert build_train_transform(64)(path).shape == (3, 64, 64)


# ========================================================================================= models


@pytest.mark.parametrize("make", [tiny_q2l, tiny_mld])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_inf_input_is_refused(make, value):
    x = torch.rand(1, 3, 64, 64)
    x[0, 1, 5, 7] = value  # one bad pixel is enough
    with pytest.raises(ValueError, match="pixel_values contains NaN or inf values"):
        make().eval()(x)


def test_an_empty_batch_gives_empty_logits():
    assert tiny_q2l().eval()(torch.rand(0, 3, 64, 64)).logits.shape == (0, 5)


@pytest.fixture(scope="module")
def saved80(tmp_path_factory):
    folder = tmp_path_factory.mktemp("q2l80")
    tiny_q2l(id2label={i: f"class{i}" for i in range(80)}).save_pretrained(folder)
    return folder


def test_a_label_count_mismatch_on_load_is_refused(saved80):
    """80 labels in the checkpoint, 20 asked for, no ignore_mismatched_sizes: one error naming the folder and
    each mismatched weight with both shapes (transformers' own is a RuntimeError pointing at a logged table)."""
    from hf_mlcls.models import CheckpointWeightsError

    with pytest.raises(CheckpointWeightsError, match="ignore_mismatched_sizes=True") as caught:
        AutoModelForImageClassification.from_pretrained(saved80, num_labels=20)
    message = str(caught.value)
    assert "\n" not in message and f"model '{saved80}'" in message
    assert "classifier.W is (1, 80, 96) in the weights but (1, 20, 96) for config.json" in message
    assert "model.query_embed.weight is (80, 96) in the weights but (20, 96)" in message
    # what the message asks for works: a new head for 20 labels
    again = AutoModelForImageClassification.from_pretrained(saved80, num_labels=20, ignore_mismatched_sizes=True)
    assert again.config.num_labels == 20


def _damage(kind: str, folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "header":
        path.write_bytes(data[:8] + b"{not json" + data[17:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "missing":
        path.unlink()
    elif kind == "config":
        (folder / "config.json").write_text("{ this is not json")


@pytest.mark.parametrize(
    "kind, raw, message",
    [
        ("truncated", SafetensorError, "damaged or truncated"),
        ("header", SafetensorError, "damaged or truncated"),
        ("empty", SafetensorError, "damaged or truncated"),
        ("random", SafetensorError, "damaged or truncated"),
        ("missing", OSError, "no file named model.safetensors"),
        ("config", OSError, "config.json' is not a valid JSON file"),
    ],
)
def test_a_damaged_model_folder_is_a_clear_error_naming_it(kind, raw, message, saved80, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(saved80, folder)
    _damage(kind, folder)
    with pytest.raises(raw):
        AutoModelForImageClassification.from_pretrained(folder)
    with pytest.raises(ModelLoadError, match=rf"cannot load model '{folder}': .*{message}") as caught:
        load_model(str(folder), device="cpu")
    assert isinstance(caught.value, OSError)


def test_flipped_bytes_inside_tensor_data_are_not_detected(saved80, tmp_path):
    """safetensors has no checksum: a bit flip in the tensor bytes loads silently (the Hub's sha256 of
    each LFS file is what protects a download). Documented in docs/errors.md as a limit."""
    folder = tmp_path / "model"
    shutil.copytree(saved80, folder)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    AutoModelForImageClassification.from_pretrained(folder)


def test_integer_pixel_values_are_refused_with_a_clear_message():
    model = tiny_q2l().eval()
    for x in (torch.randint(0, 255, (1, 3, 64, 64)), torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)):
        with pytest.raises(ValueError, match="pixel_values must be a floating-point tensor, got torch.(int64|uint8)"):
            model(x)


def test_pixel_values_of_another_precision_than_the_weights_name_both():
    model = tiny_q2l().eval()
    with pytest.raises(ValueError, match="pixel_values are torch.float16 but the model's weights are torch.float32"):
        model(torch.rand(1, 3, 64, 64).half())
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast a mixed input is expected
        assert model(torch.rand(1, 3, 64, 64).bfloat16()).logits.shape == (1, 5)


@pytest.mark.parametrize("make", [tiny_q2l, tiny_mld])
def test_label_values_other_than_0_1_and_minus_1_are_refused(make):
    model = make().eval()
    x = torch.rand(2, 3, 64, 64)
    for bad in (2.0, float("nan"), 0.5, -2.0):
        labels = torch.zeros(2, 5)
        labels[1, 3] = bad
        with pytest.raises(ValueError, match=r"labels may only hold 1 \(present\), 0 \(absent\) and -1 \(unknown\)"):
            model(x, labels=labels)
    labels = torch.tensor([[1.0, 0.0, -1.0, 0.0, 1.0]] * 2)
    assert torch.isfinite(model(x, labels=labels).loss)


def test_a_vit_input_not_a_multiple_of_the_patch_is_named():
    model = create_model("mldecoder-tresnetm-224", backbone="test_vit", backbone_kwargs={"dynamic_img_size": True},
                         decoder_embedding=32, dim_feedforward=48, num_labels=5, image_size=64).eval()
    with pytest.raises(AssertionError, match=r"Input height \(20\) should be divisible by patch size \(16\)"):
        model(torch.rand(1, 3, 20, 20))


# ======================================================================================== configs

# Every validated field, beyond the ten cases of tests/test_models.py::test_invalid_config_values_name_the_argument.
INVALID = [
    (Query2LabelConfig, dict(image_size=0), "image_size must be a positive integer"),
    (Query2LabelConfig, dict(image_size=224.0), "image_size must be a positive integer"),
    (Query2LabelConfig, dict(image_mean=[0.5] * 3, image_std=None), "image_mean and image_std must be given together"),
    (MLDecoderConfig, dict(image_mean=[0.5] * 3), "image_mean and image_std must be given together"),
    (Query2LabelConfig, dict(image_std=[0.2, 0.2]), r"image_std must have 3 values"),
    (Query2LabelConfig, dict(image_std=[0.2, 0.0, 0.2]), "image_std must be positive"),
    (Query2LabelConfig, dict(asl_gamma_neg=-1), "asl_gamma_neg and asl_gamma_pos must be >= 0"),
    (MLDecoderConfig, dict(asl_gamma_pos=-0.5), "asl_gamma_neg and asl_gamma_pos must be >= 0"),
    (MLDecoderConfig, dict(asl_clip=1.0), r"asl_clip must be in \[0, 1\)"),
    (MLDecoderConfig, dict(asl_clip=float("nan")), r"asl_clip must be in \[0, 1\)"),
    (Query2LabelConfig, dict(num_labels=0), "num_labels must be >= 1"),
    (Query2LabelConfig, dict(id2label={}), "num_labels must be >= 1"),
    (Query2LabelConfig, dict(hidden_dim=0), "hidden_dim must be a positive multiple of 4"),
    (Query2LabelConfig, dict(hidden_dim=98, num_heads=2), "hidden_dim must be a positive multiple of 4"),
    (Query2LabelConfig, dict(num_heads=0), r"divisible by num_heads \(0\)"),
    (Query2LabelConfig, dict(num_encoder_layers=-1), "num_encoder_layers must be >= 0"),
    (Query2LabelConfig, dict(dim_feedforward=0), "dim_feedforward must be >= 1"),
    (Query2LabelConfig, dict(dropout=float("nan")), r"dropout must be in \[0, 1\)"),
    (Query2LabelConfig, dict(activation="tanh"), "activation must be 'relu' or 'gelu'"),
    (MLDecoderConfig, dict(num_groups=-2), "num_groups must be -1"),
    (MLDecoderConfig, dict(decoder_embedding=0), r"decoder_embedding \(0\) must be divisible"),
    (MLDecoderConfig, dict(dropout=-0.1), r"dropout must be in \[0, 1\)"),
    (MLDecoderConfig, dict(label_embedding_dim=0), "label_embedding_dim must be >= 1"),
    (MLDecoderConfig, dict(query_noise_std=-1.0), "query_noise_std and query_extra must be >= 0"),
    (MLDecoderConfig, dict(query_extra=-1), "query_noise_std and query_extra must be >= 0"),
    (MLDecoderConfig, dict(backbone_source="keras"), "backbone_source must be 'timm' or 'transformers'"),
]


@pytest.mark.parametrize("config_class, kwargs, match", INVALID,
                         ids=[f"{c.__name__[:3]}-{next(iter(k))}" for c, k, _ in INVALID])
def test_every_validated_config_field_names_itself(config_class, kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_class(**kwargs)


TINY = dict(backbone="test_resnet", hidden_dim=96, dim_feedforward=64, num_labels=3)


def test_backbone_fields_checked_when_the_model_is_built(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"backbone_weights_file '.*nope\.safetensors' does not exist"):
        create_model("q2l-r101-448", backbone_weights_file=str(tmp_path / "nope.safetensors"), **TINY)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        create_model("q2l-r101-448", backbone_kwargs={"no_such_option": 1}, **TINY)
    with pytest.raises(ValueError, match="'bert' is not a backbone"):
        create_model("mldecoder-r50-224", backbone="bert", backbone_source="transformers", num_labels=3,
                     backbone_kwargs=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE as huggingface_hub reads it at run time (conftest's variable comes after its import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_an_unknown_transformers_backbone_offline_is_an_oserror(offline):
    with pytest.raises(OSError, match="(?i)offline|cannot find|couldn't"):
        create_model("mldecoder-r50-224", backbone="no-such-org/no-such-model", backbone_source="transformers", num_labels=3)


# Values the type and range checks of hf_mlcls/models/configuration_*.py refuse beyond the list above.
MORE_INVALID = [
    (MLDecoderConfig, dict(num_heads=0), "num_heads must be >= 1"),
    (MLDecoderConfig, dict(num_heads=-8, decoder_embedding=32), "num_heads must be >= 1"),
    (MLDecoderConfig, dict(dim_feedforward=0), "dim_feedforward must be >= 1"),
    (Query2LabelConfig, dict(position_temperature=-1.0), "position_temperature must be > 0"),
    (Query2LabelConfig, dict(position_temperature=float("inf")), "position_temperature must be a finite number"),
    (Query2LabelConfig, dict(asl_eps=-1.0), r"asl_eps must be in \(0, 1\)"),
    (MLDecoderConfig, dict(asl_eps=0.0), r"asl_eps must be in \(0, 1\)"),
    (Query2LabelConfig, dict(image_size=True), "image_size must be a positive integer"),
    (Query2LabelConfig, dict(image_mean=[float("nan"), 0.5, 0.5]), "image_mean must hold 3 finite numbers"),
    (Query2LabelConfig, dict(image_std=["0.2", 0.2, 0.2]), "image_std must hold 3 finite numbers"),
    (Query2LabelConfig, dict(asl_gamma_neg=float("nan")), "asl_gamma_neg must be a finite number"),
    (MLDecoderConfig, dict(asl_gamma_pos="1"), "asl_gamma_pos must be a finite number"),
    (Query2LabelConfig, dict(num_decoder_layers=1.5), "num_decoder_layers must be an integer"),
    (Query2LabelConfig, dict(hidden_dim=96.0, num_heads=2), "hidden_dim must be an integer"),
    (MLDecoderConfig, dict(num_groups=2.5, num_labels=5), "num_groups must be an integer"),
    (MLDecoderConfig, dict(query_extra=True), "query_extra must be an integer"),
    (MLDecoderConfig, dict(query_noise_std=float("nan")), "query_noise_std must be a finite number"),
    (MLDecoderConfig, dict(out_index="last"), "out_index must be an integer"),
    (Query2LabelConfig, dict(problem_type="regression"), "problem_type must be 'multi_label_classification' or"),
    (Query2LabelConfig, dict(id2label={0: "a", 5: "b"}), r"id2label keys must be 0 \.\. num_labels - 1"),
    (Query2LabelConfig, dict(backbone_kwargs=[1, 2]), "backbone_kwargs must be a dict"),
    (Query2LabelConfig, dict(keep_input_proj="false"), "keep_input_proj must be true or false, got 'false'"),
    (Query2LabelConfig, dict(pre_norm=1), "pre_norm must be true or false"),
    (MLDecoderConfig, dict(zero_shot="yes"), "zero_shot must be true or false"),
    (MLDecoderConfig, dict(freeze_batch_norm=None), "freeze_batch_norm must be true or false"),
    (Query2LabelConfig, dict(asl_focal_grad="true"), "asl_focal_grad must be true or false"),
    (MLDecoderConfig, dict(use_pretrained_backbone="no"), "use_pretrained_backbone must be true or false"),
    (MLDecoderConfig, dict(backbone=""), "backbone must be a model name"),
    (Query2LabelConfig, dict(backbone=None), "backbone must be a model name"),
    (MLDecoderConfig, dict(backbone_weights_file=3), "backbone_weights_file must be a path or None"),
    (MLDecoderConfig, dict(backbone_config="resnet"), "backbone_config must be a dict"),
    (MLDecoderConfig, dict(text_encoder=["glove"]), "text_encoder must be a name or path"),
]


@pytest.mark.parametrize("config_class, kwargs, match", MORE_INVALID,
                         ids=[f"{c.__name__[:3]}-{next(iter(k))}" for c, k, _ in MORE_INVALID])
def test_config_types_and_ranges_are_checked(config_class, kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_class(**kwargs)


def test_valid_configs_still_round_trip(tmp_path):
    for config in (Query2LabelConfig(id2label={0: "a", 1: "b"}, problem_type="single_label_classification"),
                   MLDecoderConfig(num_labels=3, num_groups=3, out_index=-2, asl_eps=1e-8)):
        config.save_pretrained(tmp_path / config.model_type)
        again = type(config).from_pretrained(tmp_path / config.model_type)
        assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize("source", ["timm", "transformers"])
def test_out_index_beyond_the_backbone_stages_is_named(source):
    if source == "timm":
        with pytest.raises(ValueError, match=r"out_index 9 is not a feature stage of timm backbone 'test_resnet', which has 5"):
            create_model("q2l-r101-448", out_index=9, **TINY)
    else:
        with pytest.raises(ValueError, match=r"out_index 7 is not a stage of transformers backbone 'resnet'"):
            create_model("mldecoder-r50-224", backbone="resnet", backbone_source="transformers", num_labels=3, out_index=7,
                         backbone_kwargs=dict(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1]))


# ============================================================================================ CLI


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    tiny_q2l().save_pretrained(root / "model")
    write_image(str(root / "images" / "a.jpg"))
    write_image(str(root / "images" / "broken.jpg"), "corrupt")
    (root / "empty").mkdir()
    return root


def run_cli(args, capsys):
    rc = cli_main(args)
    out, err = capsys.readouterr()
    return rc, out, err


PROGRESS = re.compile(r"^(Loading weights|predicting):? .*\|")  # tqdm bars on stderr are not messages


def one_line_error(err: str, command: str = "predict") -> str:
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith(f"hf-mlcls {command}: error: "), err[-2000:]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["{m}", "{r}/images/nope.jpg"], "no such image or folder: '.*nope.jpg'"),
        (["{r}/no_model", "{r}/images/a.jpg"], "model folder '.*no_model' does not exist"),
        (["no-such-user/no-such-model", "{r}/images/a.jpg"], "cannot load model 'no-such-user/no-such-model'"),
        (["{r}/images/a.jpg", "{r}/images/a.jpg"], "is a file; give the folder save_pretrained wrote"),
        (["{m}", "{r}/empty"], "no image files in"),
        (["{m}", "{r}/images", "--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["{m}", "{r}/images", "--top-k", "0"], "--top-k must be >= 1"),
        (["{m}", "{r}/images", "--batch-size", "0"], "batch size must be >= 1, got 0"),
        (["{m}", "{r}/images", "--device", "npu:7"], "device 'npu:7' is not a device torch knows"),
        (["{m}", "{r}/images", "-o", "/proc/no_such_dir/out.json"], "No such file or directory"),
    ],
    ids=["image", "model-folder", "hub-id-offline", "model-is-a-file", "no-images", "threshold", "top-k", "batch-size",
         "device", "output"],
)
def test_cli_predict_user_errors_are_one_line_and_exit_2(args, message, cli_model, capsys, offline):
    args = [a.format(m=cli_model / "model", r=cli_model) for a in args]
    rc, _, err = run_cli(["predict", *args], capsys)
    assert rc == 2
    assert re.search(message, one_line_error(err)), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a CUDA device here")
def test_cli_predict_on_cuda_without_a_gpu(cli_model, capsys):
    rc, _, err = run_cli(["predict", str(cli_model / "model"), str(cli_model / "images"), "--device", "cuda"], capsys)
    assert rc == 2 and "no CUDA device is available here; use --device cpu" in one_line_error(err)


@pytest.mark.parametrize("kind", ["truncated", "missing", "config"])
def test_cli_predict_with_a_damaged_model_folder(kind, cli_model, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(cli_model / "model", folder)
    _damage(kind, folder)
    rc, _, err = run_cli(["predict", str(folder), str(cli_model / "images" / "a.jpg")], capsys)
    assert rc == 2 and f"cannot load model '{folder}'" in one_line_error(err)


def test_cli_predict_reports_unreadable_images_per_row(cli_model, capsys):
    rc, out, err = run_cli(["predict", str(cli_model / "model"), str(cli_model / "images"), "--format", "json"], capsys)
    assert rc == 0  # the readable image is classified, the broken one gets an error row
    rows = {os.path.basename(r["image"]): r for r in json.loads(out)}
    assert rows["broken.jpg"]["labels"] == [] and "cannot read image" in rows["broken.jpg"]["error"]
    assert "error" not in rows["a.jpg"]
    rc, out, _ = run_cli(["predict", str(cli_model / "model"), str(cli_model / "images" / "broken.jpg")], capsys)
    assert rc == 1 and "cannot read image" in out  # a single unreadable image: exit status 1


def test_cli_usage_errors_exit_2(capsys):
    for argv in (["no-such-command"], ["predict"], ["predict", "m", "x", "--format", "xml"]):
        with pytest.raises(SystemExit) as caught:
            cli_main(argv)
        assert caught.value.code == 2
        assert "error:" in capsys.readouterr().err
    assert cli_main([]) == 2  # no command: the help, and status 2


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("push", ["{r}/nope", "me/x", "--dry-run", "{t}/o"], "model folder .*nope does not exist"),
        ("push", ["{t}/bad.json", "me/x", "--dry-run", "{t}/o"], "bad.json is a file; give the model's folder"),
        ("push", ["{m}", "not a repo", "--dry-run", "{t}/o"], "repository id 'not a repo' is not of the form owner/name"),
        ("push", ["{m}", "me/x", "--dry-run", "{t}/full"], "output folder .*full already exists and is not empty"),
        ("push", ["{m}", "me/x", "--dry-run", "{t}/o", "--eval-json", "{t}/nope.json"], "evaluation file .*nope.json does not exist"),
        ("push", ["{m}", "me/x", "--dry-run", "{t}/o", "--eval-json", "{t}/bad.json"], "bad.json is not valid JSON"),
        ("push", ["{m}", "me/x", "--dry-run", "{t}/o", "--eval-artifact", "{t}/nope.csv"], "evaluation artefact .*nope.csv does not exist"),
        ("convert", ["{t}/nope.pth", "{t}/o", "--preset", "q2l-r101-448"], "checkpoint '.*nope.pth' does not exist"),
        ("convert", ["{t}/bad.pth", "{t}/o", "--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
        ("convert", ["{t}/bad.pth", "{t}/o", "--preset", "q2l-r101-448"], "refusing to load '.*bad.pth'"),
        ("convert", ["{t}/bad.pth", "{t}/full", "--preset", "q2l-r101-448"], "output folder '.*full' already exists and is not empty"),
        ("deploy-space", ["not a repo", "--dry-run", "{t}/o"], "repository id 'not a repo' is not of the form owner/name"),
        ("deploy-space", ["me/s", "--dry-run", "{t}/full"], "output folder .*full already exists and is not empty"),
        ("deploy-space", ["me/s", "--dry-run", "{t}/o", "--models", ",,"], "--models ',,' names no model"),
    ],
    ids=["push-no-folder", "push-a-file", "push-repo-id", "push-dry-run-not-empty", "push-no-eval-json", "push-bad-eval-json",
         "push-no-artifact", "convert-no-checkpoint", "convert-unknown-preset", "convert-not-a-checkpoint",
         "convert-output-not-empty", "space-repo-id", "space-dry-run-not-empty", "space-no-models"],
)
def test_cli_push_convert_and_deploy_space_user_errors(command, args, message, cli_model, tmp_path, capsys, offline):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    (tmp_path / "bad.json").write_text("{nope")
    args = [a.format(m=cli_model / "model", r=cli_model, t=tmp_path) for a in args]
    rc, _, err = run_cli([command, *args], capsys)
    assert rc == 2 and re.search(message, one_line_error(err, command)), err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and not (tmp_path / "o").exists()


def test_cli_bad_option_values_are_usage_errors(capsys):
    for argv, message in ((["space"], "invalid choice: 'space'"),
                          (["convert", "a.pth", "out", "--preset", "q2l-r101-448", "--set", "novalue"],
                           "argument --set: expected KEY=VALUE, got 'novalue'"),
                          (["predict", "m", "x.jpg", "--threshold", "high"], "argument --threshold: invalid float value"),
                          (["predict", "m", "x.jpg", "--batch-size", "2.5"], "argument --batch-size: invalid int value")):
        with pytest.raises(SystemExit) as caught:
            cli_main(argv)
        assert caught.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:'hf_mlcls.cli' found in sys.modules:RuntimeWarning")  # in-process only
@pytest.mark.parametrize("module", ["hf_mlcls.cli", "hf_mlcls"])
def test_python_dash_m_reports_user_errors_in_one_line(module, tmp_path, monkeypatch, capsys):
    """`python -m hf_mlcls.cli` runs cli.py as __main__, a second copy of the module: a converter error (a
    UserError of the package's cli) must still be one line, not a traceback. Run in-process with runpy."""
    import runpy
    import sys

    (tmp_path / "bad.pth").write_bytes(b"x")
    monkeypatch.setattr(sys, "argv", [module, "convert", str(tmp_path / "bad.pth"), str(tmp_path / "o"), "--preset", "nope"])
    with pytest.raises(SystemExit) as caught:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert caught.value.code == 2
    assert "unknown preset 'nope'" in one_line_error(capsys.readouterr().err, "convert")
    monkeypatch.setattr(sys, "argv", [module])
    with pytest.raises(SystemExit) as caught:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert caught.value.code == 2 and "usage: hf-mlcls" in capsys.readouterr().out


# ==================================================================================== train.py


@pytest.fixture(scope="module")
def train_script():
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import train
    finally:
        sys.path.pop(0)
    return train


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model_overrides", "{backbone: resnet50}"], r"--model_overrides: not valid JSON"),
        (["--model_overrides", "[1, 2]"], r"--model_overrides must be a JSON object"),
        (["--dataset_options", "nope"], r"--dataset_options: not valid JSON"),
        (["--dataset", "imagenet"], r"--dataset 'imagenet' is not a dataset; available: coco2014"),
        (["--dataset", "coco2014"], r"--data_dir is required for --dataset 'coco2014'"),
        (["--max_train_samples", "0"], r"--max_train_samples must be >= 1"),
        (["--max_eval_samples", "-5"], r"--max_eval_samples must be >= 1"),
        (["--schedule", "linear"], r"--schedule must be 'onecycle', 'cosine' or 'trainer', got 'linear'"),
        (["--pct_start", "1.0"], r"--pct_start must be in \(0, 1\)"),
        (["--optimizer", "sgd"], r"--optimizer must be 'adamw' or 'adam', got 'sgd'"),
        (["--ema_decay", "1.5"], r"--ema_decay must be in \[0, 1\)"),
        (["--early_stopping_patience", "0"], r"--early_stopping_patience must be >= 1"),
        (["--freeze_backbone", "true", "--backbone_trainable_layers", "layer4"], r"--freeze_backbone freezes every backbone layer; it cannot be combined with --backbone_trainable_layers"),
        (["--unseen_labels", " "], r"--unseen_labels must list class names"),
    ],
    ids=["overrides-json", "overrides-not-object", "options-json", "dataset", "data-dir", "max-train", "max-eval",
         "schedule", "pct-start", "optimizer", "ema-decay", "patience", "freeze-and-trainable", "unseen-labels"],
)
def test_train_script_refuses_bad_argument_values_before_any_work(args, message, train_script, tmp_path):
    with pytest.raises(UserError, match=rf"^{message}"):  # recipe values: refused while parsing
        parsed = train_script.parse_all_args(["--output_dir", str(tmp_path / "out"), *args])
        train_script.check_args(*parsed[:3], parsed[4], parsed[3])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ema_decay", "0", "--metric_for_best_model", "ema_mAP"], r"--metric_for_best_model ema_mAP is the EMA's, and --ema_decay 0"),
        (["--early_stopping_patience", "3", "--eval_strategy", "no", "--load_best_model_at_end", "false"],
         r"--early_stopping_patience needs an evaluation \(--eval_strategy epoch or steps\)"),
    ],
    ids=["ema-metric-without-ema", "patience-without-evaluation"],
)
def test_train_script_refuses_recipe_and_training_arguments_that_contradict_each_other(args, message, train_script, tmp_path):
    """Checked once, in hf_mlcls.training.check_recipe: by train.py before any work, and by the trainer."""
    from hf_mlcls.training import check_recipe

    argv = [os.path.join(os.path.dirname(train_script.__file__), "configs", "demo.yaml"), "--output_dir", str(tmp_path / "out"), *args]
    with pytest.raises(UserError, match=rf"^{message}"):
        train_script.main(argv)
    assert not (tmp_path / "out").exists()
    parsed = train_script.parse_all_args(argv)
    with pytest.raises(ValueError, match=rf"^{message}"):
        check_recipe(parsed[2], parsed[3])


def test_train_script_argument_file_errors(train_script, tmp_path):
    (tmp_path / "typo.yaml").write_text("datset: coco2014\n")
    with pytest.raises(UserError, match=r"typo\.yaml: unknown argument\(s\) \['datset'\]"):
        train_script.parse_all_args([str(tmp_path / "typo.yaml")])
    with pytest.raises(SystemExit) as caught:  # argparse: a value that is not of the field's type
        train_script.parse_all_args(["--max_train_samples", "many"])
    assert caught.value.code == 2
    for config in ("demo.yaml",):  # the shipped recipe passes the checks
        parsed = train_script.parse_all_args([os.path.join(os.path.dirname(train_script.__file__), "configs", config),
                                              "--output_dir", str(tmp_path)])
        train_script.check_args(parsed[0], parsed[1], parsed[2], parsed[4])


def test_train_script_names_a_split_the_dataset_lacks(train_script, tmp_path):
    options = json.dumps({"num_train": 8, "num_validation": 4, "image_size": 32})
    with pytest.raises(UserError, match=r"split 'test' not in dataset 'demo' \(it has \['train', 'validation'\]\)"):
        train_script.main(["--dataset", "demo", "--data_dir", str(tmp_path / "demo"), "--dataset_options", options,
                           "--eval_split", "test", "--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--do_eval", "true"])
    assert not (tmp_path / "out").exists()


def test_train_script_with_nothing_to_do_says_so(train_script, tmp_path):
    """Arguments without a recipe file and without --do_train / --do_eval used to exit 0 having done nothing."""
    with pytest.raises(UserError, match=r"^nothing to do: pass --do_train true and/or --do_eval true"):
        train_script.main(["--dataset", "demo", "--output_dir", str(tmp_path / "out"), "--use_cpu", "true"])
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the errors module


def test_exception_types_live_in_hf_mlcls_errors_and_the_library_never_imports_the_cli():
    import subprocess
    import sys

    from hf_mlcls import cli, convert, data, errors, inference

    assert cli.UserError is errors.UserError  # the old import still works and names the same class
    assert inference.ModelLoadError is errors.ModelLoadError and issubclass(errors.ModelLoadError, errors.UserError)
    assert convert.ConversionError is errors.ConversionError and data.ImageOpenError is errors.ImageOpenError
    assert data.DatasetLayoutError is errors.DatasetLayoutError
    src = os.path.join(os.path.dirname(errors.__file__))
    entry_points = {"cli.py", "__main__.py"}  # the command line itself
    importers = []
    for root, _, files in os.walk(src):
        for name in files:
            if name.endswith(".py") and name not in entry_points:
                text = open(os.path.join(root, name), encoding="utf-8").read()
                if re.search(r"^\s*(from\s+\.+cli\s+import|from\s+hf_mlcls\.cli\s+import|import\s+hf_mlcls\.cli)", text, re.M):
                    importers.append(os.path.relpath(os.path.join(root, name), src))
    assert not importers, f"library modules import the CLI: {importers}"
    script = (
        "import sys, hf_mlcls.inference, hf_mlcls.convert, hf_mlcls.data, hf_mlcls.training\n"
        "loaded = sorted(m for m in sys.modules if m == 'hf_mlcls.cli' or m.startswith('hf_mlcls.commands'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
