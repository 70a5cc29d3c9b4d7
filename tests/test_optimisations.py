"""Speed-ups checked against the straightforward code they replace.

Other optimisations have their comparison next to the feature they belong to:

- ML-Decoder's group fully-connected einsum against a per-group loop:
  ``tests/test_models.py::test_group_classifier_equals_per_group_loop``;
- SDPA attention against the explicit softmax (same logits with and without attention maps):
  ``tests/test_models.py::test_attention_maps_do_not_change_logits``;
- NumPy shear / translate / sharpness RandAugment ops against timm's PIL ops:
  ``tests/test_data_transforms.py::test_fast_randaugment_ops_match_pil``,
  ``::test_fast_randaugment_same_draws_same_images`` and ``::test_fast_ops_fall_back_to_pil_where_they_do_not_apply``;
- the torchvision decode + resize backend against PIL's:
  ``tests/test_data_transforms.py::test_torchvision_backend_eval_within_one_level`` and ``::test_torchvision_backend_train``;
- the eval transform's tensor conversion against torchvision's ToTensor + Normalize (bit for bit):
  ``tests/test_data_transforms.py::test_eval_transform_equals_the_official_one``;
- uint8 batches scaled in the collator against the per-image float path:
  ``tests/test_data_transforms.py::test_uint8_output_with_batch_normalisation`` and
  ``::test_collator_scales_uint8_image_by_image_with_the_batch_arithmetic``;
- the metrics against per-class NumPy loops: ``tests/test_metrics.py``.
"""

import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
import torch
from transformers import TrainingArguments

from hf_mlcls import create_model
from hf_mlcls.data import MultiLabelCollator, apply_transforms, build_train_transform, load_multilabel_dataset
from hf_mlcls.data import transforms_from_image_processor
from hf_mlcls.metrics import compute_metrics
from hf_mlcls.models.layers import GroupWiseLinear
from hf_mlcls.training import MultiLabelTrainer, RecipeArguments

LABELS = {i: f"label{i}" for i in range(5)}


def tiny(name: str, **overrides):
    sizes = dict(hidden_dim=96, dim_feedforward=64) if name.startswith("q2l") else dict(decoder_embedding=32, dim_feedforward=48)
    return create_model(name, backbone="test_resnet", id2label=LABELS, image_size=64, **{**sizes, **overrides})


def test_group_wise_linear_einsum_equals_the_elementwise_product_and_sum():
    torch.manual_seed(0)
    layer = GroupWiseLinear(num_labels=37, hidden_dim=24)
    hidden = torch.randn(5, 37, 24, requires_grad=True)
    out = layer(hidden)
    grads = torch.autograd.grad(out.square().sum(), (hidden, layer.W, layer.b))

    ref_layer = GroupWiseLinear(num_labels=37, hidden_dim=24)
    ref_layer.load_state_dict(layer.state_dict())
    ref_hidden = hidden.detach().clone().requires_grad_(True)
    expected = (ref_layer.W * ref_hidden).sum(-1) + ref_layer.b  # the official classifier's arithmetic
    ref_grads = torch.autograd.grad(expected.square().sum(), (ref_hidden, ref_layer.W, ref_layer.b))

    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_group_wise_linear_under_bf16_autocast():
    layer = GroupWiseLinear(num_labels=6, hidden_dim=16)
    hidden = torch.randn(2, 6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(hidden)
    expected = (layer.W * hidden).sum(-1) + layer.b
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def _photo(path: str, size=(640, 480), seed: int = 0) -> str:
    """A smooth colour field with hard-edged shapes: what a downscale filter acts on."""
    rng = np.random.default_rng(seed)
    image = PIL.Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize(size, PIL.Image.BICUBIC)
    draw = PIL.ImageDraw.Draw(image)
    draw.rectangle([100, 80, 300, 200], fill=(250, 20, 40))
    draw.ellipse([350, 220, 520, 400], fill=(10, 200, 90))
    image.save(path, quality=92)
    return path


def test_reduced_scale_decoding_stays_close_to_a_full_decode(tmp_path):
    """The train transform decodes a JPEG at 1/2 (or 1/4, 1/8) scale when the target is at most
    that size: only the downscale filter changes, so the result stays close to a full decode
    followed by the same resize (not bit-exact: a DCT-domain downscale, then a shorter resize)."""
    path = _photo(os.path.join(tmp_path, "a.jpg"))
    for size in (224, 112):
        fast = build_train_transform(size, cutout=False, randaugment=False, uint8_output=True)(path)
        full = build_train_transform(size, cutout=False, randaugment=False, uint8_output=True, draft=False)(path)
        diff = (fast.int() - full.int()).abs().float()
        assert fast.shape == full.shape == (3, size, size)
        assert diff.mean() < 1.0, (size, diff.mean())
        assert torch.quantile(diff.flatten(), 0.99) <= 6, size  # larger differences only on hard edges
    # no reduced decode where the target needs the full size (448 of 480 rows): bit-exact
    fast = build_train_transform(448, cutout=False, randaugment=False, uint8_output=True)(path)
    full = build_train_transform(448, cutout=False, randaugment=False, uint8_output=True, draft=False)(path)
    assert torch.equal(fast, full)


# --------------------------------------------------------------------------- one batch tensor, no stacking copy


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_batch_transform_writes_the_per_image_tensors_into_one_batch_the_collator_takes(tmp_path, backend):
    paths = [_photo(os.path.join(tmp_path, f"{i}.jpg"), size=(96, 72), seed=i) for i in range(3)]
    tf = build_train_transform(48, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), backend=backend)
    import random

    def seed():
        random.seed(0), np.random.seed(0), torch.manual_seed(0)

    seed()
    one_by_one = [tf(p) for p in paths]
    seed()
    rows = tf.batch(paths)  # the same random draws in the same order: the same tensors
    for a, b in zip(one_by_one, rows):
        assert torch.equal(a, b)
    labels = torch.zeros(5)
    batch = MultiLabelCollator()([{"pixel_values": x, "labels": labels} for x in rows])["pixel_values"]
    assert batch.shape == (3, 3, 48, 48) and batch.data_ptr() == rows[0].data_ptr()  # no copy
    assert torch.equal(batch, torch.stack(one_by_one))
    # rows that are not exactly one tensor's rows, in order, are stacked (a copy) as before
    for picked in (rows[::-1], rows[:2], [rows[0], one_by_one[1], rows[2]]):
        out = MultiLabelCollator()([{"pixel_values": x, "labels": labels} for x in picked])["pixel_values"]
        assert torch.equal(out, torch.stack(picked)) and out.data_ptr() != rows[0].data_ptr()


def test_dataset_rows_fetched_as_a_batch_collate_without_a_copy(demo):
    ds = apply_transforms(demo, build_train_transform(32), build_train_transform(32))["train"]
    rows = ds.__getitems__([0, 1, 2, 3])  # what the DataLoader calls for a batch
    batch = MultiLabelCollator()(rows)
    assert batch["pixel_values"].data_ptr() == rows[0]["pixel_values"].data_ptr()
    assert torch.equal(batch["pixel_values"], torch.stack([r["pixel_values"] for r in rows]))
    assert batch["labels"].shape == (4, len(demo["train"].features["labels"].feature.names))


# --------------------------------------------------------------------------- no device-to-host reads per step


@pytest.mark.parametrize("name", ["q2l-r101-448", "mldecoder-tresnetm-224"])
def test_a_training_step_reads_nothing_back_from_the_device(name):
    """On the meta device every read of a value (``.item()``, ``bool()``) raises, exactly where a GPU
    would stall the host: a forward + backward with labels must do none. (The input checks used to.)"""
    model = tiny(name).to("meta").train()
    out = model(torch.empty(2, 3, 64, 64, device="meta"), labels=torch.empty(2, 5, device="meta"))
    out.loss.backward()
    assert out.logits.shape == (2, 5)


def test_zero_shot_label_embeddings_are_checked_once_per_value(monkeypatch):
    model = tiny("mldecoder-tresnetm-224", zero_shot=True, label_embedding_dim=12, num_groups=-1).train()
    model.set_label_embeddings(torch.randn(5, 12))
    checks = []
    isnan = torch.isnan

    def counting(x, *args, **kwargs):
        if x is model.model.label_embeddings:
            checks.append(1)
        return isnan(x, *args, **kwargs)

    monkeypatch.setattr(torch, "isnan", counting)
    x, labels = torch.rand(2, 3, 64, 64), torch.zeros(2, 5)
    for _ in range(3):
        model(x, labels=labels)
    assert len(checks) == 1
    with torch.no_grad():
        model.model.label_embeddings[2, 0] = float("nan")  # an in-place write: checked again, and refused
    with pytest.raises(ValueError, match="no label embeddings"):
        model(x, labels=labels)
    model.set_label_embeddings(torch.randn(5, 12))  # a new tensor: checked again
    model(x, labels=labels)
    assert len(checks) == 3


def test_the_collator_checks_values_on_the_host_and_names_the_row():
    rows = [{"pixel_values": torch.rand(3, 8, 8), "labels": torch.tensor([1.0, 0.0, -1.0])} for _ in range(3)]
    assert MultiLabelCollator()(rows)["pixel_values"].shape == (3, 3, 8, 8)
    rows[2]["pixel_values"] = rows[2]["pixel_values"].clone()
    rows[2]["pixel_values"][1, 4, 4] = float("inf")
    with pytest.raises(ValueError, match="pixel_values of batch row 2 contain NaN or inf"):
        MultiLabelCollator()(rows)
    rows[2]["pixel_values"] = torch.rand(3, 8, 8)
    rows[1]["labels"] = torch.tensor([1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match=r"labels of batch row 1 hold 0.5 at class 1"):
        MultiLabelCollator()(rows)


def test_cpu_inputs_are_still_checked_by_the_model():
    model = tiny("q2l-r101-448").eval()
    huge = torch.full((1, 3, 64, 64), 3e38)  # finite, but the sum overflows: must not be called NaN
    assert model(huge).logits.shape == (1, 5)
    huge[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        model(huge)


# --------------------------------------------------------------------------- evaluating the EMA only


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return load_multilabel_dataset("demo", str(tmp_path_factory.mktemp("demo")), num_train=16, num_validation=8, image_size=32)


def _trainer(demo, output_dir, recipe, **args):
    names = demo["train"].features["labels"].feature.names
    torch.manual_seed(0)
    model = create_model("q2l-r101-448", backbone="test_resnet", hidden_dim=96, dim_feedforward=64, image_size=32,
                         id2label=dict(enumerate(names)), image_mean=None, image_std=None)
    processor = model.build_image_processor()
    train = apply_transforms(demo["train"], transforms_from_image_processor(processor, train=True, randaugment=False, cutout=False))
    evaluation = apply_transforms(demo["validation"], eval_transform=transforms_from_image_processor(processor, train=False))
    settings = dict(output_dir=str(output_dir), num_train_epochs=1, per_device_train_batch_size=8, per_device_eval_batch_size=8,
                    eval_strategy="epoch", save_strategy="no", report_to="none", remove_unused_columns=False,
                    label_names=["labels"], use_cpu=True, disable_tqdm=True)
    return MultiLabelTrainer(model=model, args=TrainingArguments(**{**settings, **args}), train_dataset=train,
                             eval_dataset=evaluation, data_collator=MultiLabelCollator(), compute_metrics=compute_metrics,
                             recipe=recipe)


def test_eval_ema_only_evaluates_the_ema_alone(demo, tmp_path):
    both = _trainer(demo, tmp_path / "both", RecipeArguments(ema_decay=0.9)).evaluate()
    trainer = _trainer(demo, tmp_path / "ema", RecipeArguments(ema_decay=0.9, eval_ema_only=True))
    calls = []
    predict = trainer.prediction_step
    trainer.prediction_step = lambda *a, **k: calls.append(1) or predict(*a, **k)
    only = trainer.evaluate()
    assert "eval_ema_mAP" in only and "eval_mAP" not in only
    assert "eval_mAP" in both and "eval_ema_mAP" in both
    assert len(calls) == 1  # one pass over the 8 validation images (one batch), not two
    assert only["eval_ema_mAP"] == pytest.approx(both["eval_ema_mAP"])


def test_eval_ema_only_refuses_what_it_cannot_serve(demo, tmp_path):
    with pytest.raises(ValueError, match="eval_ema_only needs the EMA"):
        _trainer(demo, tmp_path, RecipeArguments(ema_decay=0.0, eval_ema_only=True))
    with pytest.raises(ValueError, match="metric_for_best_model='mAP' is never reported"):
        _trainer(demo, tmp_path, RecipeArguments(ema_decay=0.9, eval_ema_only=True), metric_for_best_model="mAP")
    _trainer(demo, tmp_path, RecipeArguments(ema_decay=0.9, eval_ema_only=True), metric_for_best_model="ema_mAP")


# --------------------------------------------------------------------------- prediction


def _select_labels_per_label_loop(scores, id2label, threshold=0.5, top_k=None):
    """The per-label loop select_labels replaced (ties made deterministic: lower label first)."""
    rows = []
    for row in scores:
        order = torch.argsort(row, descending=True, stable=True).tolist()
        chosen = order[:top_k] if top_k else [i for i in order if row[i] >= threshold]
        rows.append([{"label": id2label[i], "score": round(float(row[i]), 6)} for i in chosen])
    return rows


def test_select_labels_equals_the_per_label_loop():
    from hf_mlcls.inference import select_labels

    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(7, 40, generator=gen)
    scores[2, [3, 9, 17]] = 0.75  # ties: lower label first
    scores[3] = 0.1  # no label passes
    scores[4, 5] = 0.5  # exactly at the threshold: chosen
    scores[5] = 0.3  # all tied: top_k takes the lowest labels
    id2label = {i: f"name{i}" for i in range(40)}
    for kwargs in ({}, {"threshold": 0.9}, {"threshold": 0.0}, {"top_k": 3}, {"top_k": 1}, {"top_k": 100}):
        assert select_labels(scores, id2label, **kwargs) == _select_labels_per_label_loop(scores, id2label, **kwargs), kwargs
    assert select_labels(torch.zeros(0, 40), id2label) == []


def test_predict_files_decodes_each_image_once(tmp_path, monkeypatch):
    from hf_mlcls import inference

    paths = [_photo(os.path.join(tmp_path, f"{i}.jpg"), seed=i) for i in range(5)]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    paths.insert(2, str(tmp_path / "broken.jpg"))
    opened = []
    pil_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda fp, *a, **k: opened.append(fp) or pil_open(fp, *a, **k))
    model = tiny("mldecoder-tresnetm-224").eval()
    results = inference.predict_files(model, paths, threshold=0.0, batch_size=2, progress=False)
    assert sorted(map(str, opened)) == sorted(paths)  # once each, the broken one included
    assert [r["image"] for r in results] == paths
    assert "error" in results[2] and results[2]["labels"] == []
    monkeypatch.setattr(PIL.Image, "open", pil_open)
    good = [p for p in paths if "broken" not in p]
    expected = inference.select_labels(inference.predict_probabilities(model, good, progress=False), LABELS, 0.0)
    assert [r["labels"] for r in results if "error" not in r] == expected


# --------------------------------------------------------------------------- benchmark results into the docs


def test_write_docs_replaces_each_results_block_by_its_file_and_refuses_a_missing_one(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "write_docs", os.path.join(os.path.dirname(__file__), os.pardir, "bench", "write_docs.py")
    )
    write_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(write_docs)
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "a.md").write_text("| new | table |\n")
    docs = "intro\n<!-- results: bench/results/a.md -->\n| old | figures |\n<!-- end results -->\noutro\n"
    text, used = write_docs.splice(docs, root=str(tmp_path))
    assert text == "intro\n<!-- results: bench/results/a.md -->\n| new | table |\n<!-- end results -->\noutro\n"
    assert used == ["bench/results/a.md"] and write_docs.splice(text, root=str(tmp_path))[0] == text
    with pytest.raises(FileNotFoundError, match="bench/results/b.md"):
        write_docs.splice(docs.replace("a.md", "b.md"), root=str(tmp_path))


def test_bench_inference_appends_each_run_to_its_history_under_one_header(tmp_path, monkeypatch):
    import importlib.util

    bench = os.path.join(os.path.dirname(__file__), os.pardir, "bench")
    monkeypatch.syspath_prepend(bench)
    spec = importlib.util.spec_from_file_location("bench_inference", os.path.join(bench, "bench_inference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HISTORY", str(tmp_path / "inference-runs.md"))
    module.record_runs(["| run 1 | a |", "| run 1 | b |"])
    module.record_runs(["| run 2 | a |"])
    text = (tmp_path / "inference-runs.md").read_text()
    assert text == module.HISTORY_HEAD + "| run 1 | a |\n| run 1 | b |\n| run 2 | a |\n"
    assert text.count("| date (UTC) |") == 1 and not (tmp_path / "inference-runs.md.tmp").exists()
    assert module._commit() != ""  # a commit (with + for uncommitted source changes) or "unknown"
