"""Single-label data (class folders, CIFAR-100 binary, Stanford Cars devkit), top-k
metrics, and single-label training through examples/train.py."""

import os

import numpy as np
import pytest
from data_fixtures import write_image

from hf_mlcls.data import DatasetLayoutError, MissingDatasetFileError, SkippedImagesWarning, load_multilabel_dataset, load_report
from hf_mlcls.data.cifar100 import RECORD_BYTES
from hf_mlcls.data.matfile import MatFileError, read_mat
from hf_mlcls.metrics_single import topk_accuracy

# ------------------------------------------------------------------ fixtures in each real format


def make_imagefolder(root, classes=("cat", "dog", "fox"), per_class=2, val_classes=None):
    for split, names in (("train", classes), ("val", val_classes or classes)):
        for c, name in enumerate(names):
            for i in range(per_class):
                write_image(os.path.join(root, split, name, f"{name}_{i}.JPEG"), seed=c * 10 + i)
    return root


def make_cifar100(root, n_train=6, n_test=4, fine_names=None):
    """cifar-100-binary/: records of coarse byte, fine byte, 1024 R, 1024 G, 1024 B."""
    folder = os.path.join(root, "cifar-100-binary")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    truth = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = (np.arange(n) * 37) % 100
        coarse = fine % 20
        records = np.concatenate([coarse[:, None], fine[:, None], images.transpose(0, 3, 1, 2).reshape(n, -1)], axis=1)
        records.astype(np.uint8).tofile(os.path.join(folder, f"{split}.bin"))
        truth[split] = (images, fine, coarse)
    with open(os.path.join(folder, "fine_label_names.txt"), "w") as fh:
        fh.write("\n".join(fine_names or [f"fine{i}" for i in range(100)]) + "\n\n")
    with open(os.path.join(folder, "coarse_label_names.txt"), "w") as fh:
        fh.write("\n".join(f"coarse{i}" for i in range(20)) + "\n")
    return folder, truth


def make_cars(root, compress=True, train_classes=(1, 2, 3, 3), test_classes=(3, 1), names=("Audi A4", "BMW M3", "Ford F-150")):
    """torchvision's stanford_cars/: devkit .mat files written by scipy in MATLAB's level-5 format."""
    sio = pytest.importorskip("scipy.io")
    folder = os.path.join(root, "stanford_cars")
    os.makedirs(os.path.join(folder, "devkit"), exist_ok=True)
    class_names = np.empty((1, len(names)), dtype=object)
    class_names[0, :] = list(names)
    sio.savemat(os.path.join(folder, "devkit", "cars_meta.mat"), {"class_names": class_names}, do_compression=compress)

    def annos(classes, image_dir, seed):
        records = np.zeros((1, len(classes)), dtype=[("bbox_x1", "O"), ("bbox_y1", "O"), ("class", "O"), ("fname", "O")])
        for i, c in enumerate(classes):
            name = f"{i + 1:05d}.jpg"
            write_image(os.path.join(folder, image_dir, name), seed=seed + i)
            records[0, i] = (np.array([[5]], dtype=np.uint8), np.array([[7]], dtype=np.uint8), np.array([[c]], dtype=np.uint8), name)
        return records

    sio.savemat(os.path.join(folder, "devkit", "cars_train_annos.mat"),
                {"annotations": annos(train_classes, "cars_train", 0)}, do_compression=compress)
    sio.savemat(os.path.join(folder, "cars_test_annos_withlabels.mat"),
                {"annotations": annos(test_classes, "cars_test", 100)}, do_compression=compress)
    return folder


# ------------------------------------------------------------------ class folders


def test_imagefolder_classes_are_sorted_folder_names(tmp_path):
    make_imagefolder(str(tmp_path), classes=("dog", "cat", "fox"))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = load_multilabel_dataset("imagefolder", str(tmp_path))
    assert list(ds) == ["train", "validation"]
    assert ds["train"].features["label"].names == ["cat", "dog", "fox"]
    assert [r["label"] for r in ds["train"]] == [0, 0, 1, 1, 2, 2]
    assert ds["validation"][0]["image"].size == (24, 24)
    assert load_report(ds["train"])["ignored_files"] == 1


def test_imagefolder_errors(tmp_path):
    make_imagefolder(str(tmp_path), val_classes=("cat", "wolf"))
    with pytest.raises(DatasetLayoutError, match=r"val has 1 class folder\(s\) that the train split does not: 'wolf'"):
        load_multilabel_dataset("imagefolder", str(tmp_path))
    with pytest.raises(MissingDatasetFileError, match="val_sorted"):
        load_multilabel_dataset("imagefolder", str(tmp_path), splits={"train": "train", "validation": "val_sorted"})
    write_image(str(tmp_path / "train" / "cat" / "broken.jpg"), kind="truncated")
    with pytest.warns(SkippedImagesWarning, match="skipped 1 of 7 images"):
        ds = load_multilabel_dataset("imagefolder", str(tmp_path), splits=["train"])
    assert len(ds["train"]) == 6


# ------------------------------------------------------------------ CIFAR-100 binary


def test_cifar100_binary_records(tmp_path):
    _, truth = make_cifar100(str(tmp_path))
    ds = load_multilabel_dataset("cifar-100", str(tmp_path))
    assert ds["train"].features["label"].names[:2] == ["fine0", "fine1"] and len(ds["train"]) == 6
    images, fine, _ = truth["test"]
    for i in range(4):
        row = ds["validation"][i]
        assert row["label"] == fine[i]
        assert np.array_equal(np.asarray(row["image"]), images[i])  # R, G, B planes, row by row, lossless
    coarse = load_multilabel_dataset("cifar100", str(tmp_path), label="coarse")
    assert coarse["train"].features["label"].names[0] == "coarse0"
    assert [r["label"] for r in coarse["train"]] == truth["train"][2].tolist()


def test_cifar100_bad_files_are_named(tmp_path):
    folder, _ = make_cifar100(str(tmp_path))
    train = os.path.join(folder, "train.bin")
    with open(train, "ab") as fh:
        fh.write(b"\0" * 10)
    with pytest.raises(DatasetLayoutError, match=rf"train.bin: {6 * RECORD_BYTES + 10} bytes is not a whole number .* \(6 records and 10 bytes left over\)"):
        load_multilabel_dataset("cifar100", folder)
    raw = bytearray(open(os.path.join(folder, "test.bin"), "rb").read())
    raw[2 * RECORD_BYTES + 1] = 100
    open(train, "wb").write(bytes(raw))
    with pytest.raises(DatasetLayoutError, match=rf"train.bin: record 2 \(byte {2 * RECORD_BYTES}\) has fine label 100, outside 0..99"):
        load_multilabel_dataset("cifar100", folder)
    make_cifar100(str(tmp_path), fine_names=[f"f{i}" for i in range(99)])
    with pytest.raises(DatasetLayoutError, match="fine_label_names.txt: 99 class names, expected 100"):
        load_multilabel_dataset("cifar100", folder)
    os.remove(os.path.join(folder, "test.bin"))
    make_cifar100(str(tmp_path))
    os.remove(os.path.join(folder, "test.bin"))
    with pytest.raises(MissingDatasetFileError, match="test.bin"):
        load_multilabel_dataset("cifar100", folder)


# ------------------------------------------------------------------ Stanford Cars devkit


@pytest.mark.parametrize("compress", [True, False])
def test_stanford_cars_devkit(tmp_path, compress):
    folder = make_cars(str(tmp_path), compress=compress)
    ds = load_multilabel_dataset("stanford-cars", str(tmp_path))
    assert ds["train"].features["label"].names == ["Audi A4", "BMW M3", "Ford F-150"]
    assert [r["label"] for r in ds["train"]] == [0, 1, 2, 2]  # the devkit's classes are 1-based
    assert [r["label"] for r in ds["validation"]] == [2, 0]
    assert ds["validation"][0]["image"].size == (24, 24)
    assert load_report(ds["validation"])["source"] == os.path.join(folder, "cars_test_annos_withlabels.mat")


def test_stanford_cars_errors_name_the_record(tmp_path):
    make_cars(str(tmp_path), train_classes=(1, 4))
    with pytest.raises(DatasetLayoutError, match=r"cars_train_annos.mat: annotations\(2\).class: 4 is outside 1..3"):
        load_multilabel_dataset("stanford-cars", str(tmp_path))
    folder = make_cars(str(tmp_path))
    os.remove(os.path.join(folder, "cars_test_annos_withlabels.mat"))
    with pytest.raises(MissingDatasetFileError, match="cars_test_annos_withlabels.mat"):
        load_multilabel_dataset("stanford-cars", str(tmp_path))
    with open(os.path.join(folder, "devkit", "cars_meta.mat"), "wb") as fh:
        fh.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 600)
    with pytest.raises(MatFileError, match=r"cars_meta.mat: a MATLAB -v7.3 \(HDF5\) file"):
        load_multilabel_dataset("stanford-cars", str(tmp_path), splits=["train"])


def test_mat_reader_matches_scipy(tmp_path):
    sio = pytest.importorskip("scipy.io")
    cells = np.empty((2, 1), dtype=object)
    cells[0, 0], cells[1, 0] = "é name", np.arange(6, dtype=np.int16).reshape(2, 3)
    values = {"m": np.arange(12.0).reshape(3, 4), "u": np.array([[250, 3]], dtype=np.uint8), "cells": cells,
              "s": {"a": np.array([[1.5]]), "b": "text"}}
    for compress in (False, True):
        path = str(tmp_path / f"v{compress}.mat")
        sio.savemat(path, values, do_compression=compress)
        got = read_mat(path)
        assert np.array_equal(got["m"], values["m"]) and got["m"].dtype == np.float64
        assert np.array_equal(got["u"], values["u"]) and got["u"].dtype == np.uint8
        assert got["cells"].shape == (2, 1) and got["cells"][0, 0] == "é name"
        assert np.array_equal(got["cells"][1, 0], cells[1, 0])
        assert got["s"].shape == (1, 1) and got["s"][0, 0]["b"] == "text" and got["s"][0, 0]["a"][0, 0] == 1.5
    data = bytearray(open(path, "rb").read())
    open(path, "wb").write(bytes(data[:-20]))
    with pytest.raises(MatFileError, match="damaged compressed data|past the end|truncated"):
        read_mat(path)


# ------------------------------------------------------------------ top-k accuracy


def test_topk_accuracy():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.3, 0.3, 0.4], [0.5, 0.5, 0.5]])
    got = topk_accuracy(scores, np.array([1, 2, 0, 2]), ks=(1, 2, 5))
    # row 0 right; row 1: truth ranks 2nd/3rd (tie with 1, lower index first) -> 3rd; row 2: 2nd; row 3: all tied -> 3rd
    assert got == {"top1": 25.0, "top2": 50.0, "top5": 100.0}
    assert topk_accuracy(scores, np.eye(3)[[1, 2, 0, 2]])["top1"] == 25.0  # one-hot rows
    with pytest.raises(ValueError, match="outside 0..2"):
        topk_accuracy(scores, np.array([1, 2, 0, 3]))


# ------------------------------------------------------------------ training through examples/train.py

TINY_MLD = {"backbone": "test_resnet", "decoder_embedding": 32, "dim_feedforward": 48, "image_size": 32,
            "backbone_kwargs": {"drop_path_rate": 0.05}}
# the ImageNet A2 recipe's switches (ML_Decoder README.md lines 84-104), at toy sizes
A2_ARGS = ["--opt", "lamb", "--weight_decay", "0.02", "--learning_rate", "4e-3", "--schedule", "trainer",
           "--lr_scheduler_type", "cosine", "--warmup_steps", "0.2", "--aa", "rand-m7-mstd0.5-inc1", "--mixup", "0.1",
           "--cutmix", "1.0", "--aug_repeats", "3", "--bce_loss", "true", "--bce_target_thresh", "0.2", "--smoothing", "0",
           "--train_interpolation", "bicubic"]


@pytest.fixture(scope="module")
def train_script():
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import train
    finally:
        sys.path.pop(0)
    return train


def test_train_script_single_label_end_to_end(train_script, tmp_path):
    import json

    from transformers import AutoConfig

    make_imagefolder(str(tmp_path / "data"), per_class=4)
    out = tmp_path / "out"
    metrics = train_script.main([
        "--model", "mldecoder-r50-224", "--model_overrides", json.dumps(TINY_MLD), "--dataset", "imagefolder",
        "--data_dir", str(tmp_path / "data"), *A2_ARGS, "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "6", "--ema_decay", "0.9", "--do_train", "true", "--do_eval", "true",
        "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--eval_strategy", "no",
        "--output_dir", str(out), "--dataloader_num_workers", "0",
    ])
    assert set(metrics) >= {"eval_top1", "eval_top5", "eval_loss"}
    assert 0 <= metrics["eval_top1"] <= 100 and metrics["eval_top5"] == 100.0  # 3 classes: top-5 holds every class
    config = AutoConfig.from_pretrained(out)
    assert config.problem_type == "single_label_classification" and list(config.id2label.values()) == ["cat", "dog", "fox"]
    assert json.loads((out / "eval" / "single_label_metrics.json").read_text())["metrics"]["top1"] == metrics["eval_top1"]
    assert not (out / "eval" / "metrics.json").exists()  # the model card's mAP-based file is not faked


def test_single_label_trainer_wires_the_timm_pieces(train_script, tmp_path):
    import timm.optim
    from timm.data.distributed_sampler import RepeatAugSampler
    from timm.loss import BinaryCrossEntropy
    from transformers import TrainingArguments

    from hf_mlcls import create_model
    from hf_mlcls.training_single import SingleLabelCollator, SingleLabelTrainer, single_label_transforms

    parsed = train_script.parse_all_args(["--output_dir", str(tmp_path), *A2_ARGS])
    sl_args = parsed[5]
    sl_args.check()
    ds = load_multilabel_dataset("imagefolder", make_imagefolder(str(tmp_path / "data"), per_class=2))
    model = create_model("mldecoder-r50-224", id2label={0: "cat", 1: "dog", 2: "fox"}, problem_type="single_label_classification",
                         **TINY_MLD)
    train_tf, _ = single_label_transforms(model.config, sl_args)
    train_set = ds["train"].with_transform(train_tf)
    trainer = SingleLabelTrainer(model=model, args=TrainingArguments(str(tmp_path / "o"), use_cpu=True, report_to="none",
                                                                     learning_rate=4e-3, weight_decay=0.02),
                                 train_dataset=train_set, data_collator=SingleLabelCollator(), single_label=sl_args)
    assert isinstance(trainer.create_optimizer(), timm.optim.Lamb)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, RepeatAugSampler)
    order = list(sampler)
    assert len(order) == 6 and order[0] == order[1] == order[2]  # each image three times in a row
    assert isinstance(trainer.train_loss, BinaryCrossEntropy) and trainer.train_loss.target_threshold == 0.2
    seen = []
    trainer.train_loss = lambda logits, target: seen.append(target) or logits.sum() * 0
    batch = SingleLabelCollator()([train_set[i] for i in range(5)])  # odd: one image is left out of the mixed batch
    assert batch["pixel_values"].shape == (5, 3, 32, 32) and batch["labels"].dtype.is_floating_point is False
    model.train()
    trainer.compute_loss(model, dict(batch))
    assert seen[0].shape == (4, 3) and seen[0].dtype.is_floating_point  # mixed soft targets, not indices
    model.eval()
    loss = trainer.compute_loss(model, dict(batch))  # evaluation: plain cross-entropy on the indices
    assert len(seen) == 1 and loss.item() > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bce_target_thresh", "0.2"], r"--bce_target_thresh needs --bce_loss true"),
        (["--aa", "rand-mX"], r"--aa 'rand-mX' is not a RandAugment string"),
        (["--opt", "lamda"], r"--opt 'lamda' is not a timm optimizer"),
        (["--aug_repeats", "1"], r"--aug_repeats must be 0 \(off\) or >= 2"),
        (["--mixup_prob", "2"], r"--mixup_prob must be in \[0, 1\]"),
    ],
)
def test_single_label_arguments_are_checked(train_script, tmp_path, args, message):
    parsed = train_script.parse_all_args(["--output_dir", str(tmp_path / "out"), *args])
    with pytest.raises(SystemExit, match=rf"^train\.py: {message}"):
        parsed[5].check()


NEW_CONFIGS = ["mldecoder-r50-imagenet-a2.yaml", "mldecoder-swinl-cifar100.yaml", "mldecoder-tresnetl-384-stanford-cars.yaml",
               "q2l-tresnetl22k-640-coco.yaml", "mldecoder-tresnetl-640-coco.yaml", "q2l-tresnetl-448-voc2012.yaml",
               "q2l-cvt-w24-384-nuswide.yaml", "q2l-cvt-w24-384-voc2007.yaml", "q2l-r101-448-vg500.yaml"]


@pytest.mark.parametrize("name", NEW_CONFIGS)
def test_recipes_parse_and_pass_the_checks(train_script, tmp_path, name):
    import hf_mlcls

    path = os.path.join(os.path.dirname(train_script.__file__), "configs", name)
    first = open(path).readline()
    assert first.startswith("# ") and ("%" in first or "mAP" in first)  # each recipe names its result and source
    parsed = train_script.parse_all_args([path, "--output_dir", str(tmp_path), "--bf16", "false", "--data_dir", str(tmp_path)])
    train_script.check_args(parsed[0], parsed[1], parsed[2], parsed[4])
    parsed[5].check()
    assert parsed[0].model in hf_mlcls.list_presets()
    overrides = train_script._json_object(parsed[0].model_overrides, "model_overrides")
    hf_mlcls.preset_config(parsed[0].model, **overrides)  # the preset takes the recipe's overrides


def test_to_single_label_needs_exactly_one_label(tmp_path):
    from hf_mlcls.data.single_label import to_single_label

    ds = load_multilabel_dataset("demo", str(tmp_path / "one"), max_digits=1, num_train=8, num_validation=4, image_size=32)
    single = to_single_label(ds)
    assert single["train"].features["label"].names[:2] == ["zero", "one"]
    assert [r["label"] for r in single["train"]] == [r["labels"][0] for r in ds["train"]]
    many = load_multilabel_dataset("demo", str(tmp_path / "many"), max_digits=4, num_train=8, num_validation=4, image_size=32)
    with pytest.raises(DatasetLayoutError, match=r"split train: row \d+ has [2-4] labels, a single-label row needs exactly one"):
        to_single_label(many)


def test_single_label_demo_runs_shortened(tmp_path):
    import json
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import single_label_demo
    finally:
        sys.path.pop(0)
    report = single_label_demo.main(["--epochs", "1", "--num_train", "64", "--num_validation", "32", "--batch_size", "32",
                                     "--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out" / "single_label_demo.json").read_text())
    assert saved["results"] == report["results"] and set(report["results"]) == {"gap", "mld"}
    for r in report["results"].values():
        assert 0 <= r["top1"] <= 100 and 0 < r["step_ms_min"] <= r["step_ms_median"] <= r["step_ms_max"]
    assert report["results"]["mld"]["parameters"] > report["results"]["gap"]["parameters"]  # the decoder replaces one linear layer
    assert len(report["history"]) == 1 and report["train_images"] == 64
