"""Training through the Trainer: learning, EMA, resume, the example script, two processes."""

import json
from collections import Counter
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainerCallback, TrainingArguments

import hf_mlcls
from hf_mlcls.data import MultiLabelCollator, apply_transforms, load_multilabel_dataset, transforms_from_image_processor
from hf_mlcls.metrics import compute_metrics
from hf_mlcls.training import EMA_WEIGHTS_NAME, MultiLabelTrainer, RecipeArguments, decay_parameter_names, summary_line

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(backbone="test_resnet", hidden_dim=96, dim_feedforward=64, image_size=32, image_mean=None, image_std=None, freeze_batch_norm=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return load_multilabel_dataset("demo", str(folder), num_train=64, num_validation=24, image_size=32)


def make_trainer(demo, output_dir, epochs=2, ema_decay=0.9, **args):
    torch.manual_seed(0)
    names = demo["train"].features["labels"].feature.names
    model = hf_mlcls.create_model("q2l-r101-448", id2label=dict(enumerate(names)), dropout=0.0, **TINY)
    processor = model.build_image_processor()
    train = apply_transforms(demo["train"], transforms_from_image_processor(processor, train=True, randaugment=False, cutout=False))
    evaluation = apply_transforms(demo["validation"], eval_transform=transforms_from_image_processor(processor, train=False))
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=24,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=1,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        use_cpu=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    training_args = TrainingArguments(**{**settings, **args})
    return MultiLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=MultiLabelCollator(),
        compute_metrics=compute_metrics,
        recipe=RecipeArguments(ema_decay=ema_decay, schedule="onecycle"),
    )


class StopAfterFirstEpoch(TrainerCallback):
    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_training_stop = True


def losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_training_lowers_the_loss_and_evaluates_raw_and_ema(demo, tmp_path):
    trainer = make_trainer(demo, tmp_path, epochs=3)
    trainer.train()
    history = losses(trainer)
    assert sum(history[-4:]) / 4 < sum(history[:4]) / 4
    evals = [e for e in trainer.state.log_history if "eval_mAP" in e]
    ema_evals = [e for e in trainer.state.log_history if "eval_ema_mAP" in e]
    assert len(evals) == 3 and len(ema_evals) == 3
    assert all(0 <= e["eval_mAP"] <= 100 for e in evals)
    checkpoint = sorted(tmp_path.glob("checkpoint-*"))[-1]
    assert (checkpoint / EMA_WEIGHTS_NAME).exists() and (checkpoint / "preprocessor_config.json").exists()


def test_saved_final_model_holds_the_ema_weights(demo, tmp_path):
    trainer = make_trainer(demo, tmp_path, epochs=1)
    trainer.train()
    ema_state = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    raw_weight = trainer.model.classifier.W.detach().clone()
    assert not torch.equal(ema_state["classifier.W"], raw_weight)
    trainer.use_ema_weights()
    trainer.save_model(str(tmp_path / "final"))
    saved = load_file(tmp_path / "final" / "model.safetensors")
    torch.testing.assert_close(saved["classifier.W"], ema_state["classifier.W"])
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "final")
    torch.testing.assert_close(reloaded.classifier.W, ema_state["classifier.W"])


def test_resuming_gives_the_same_losses_as_an_uninterrupted_run(demo, tmp_path):
    full = make_trainer(demo, tmp_path / "full", epochs=2)
    full.train()
    # the same run, stopped after the first epoch's checkpoint, then resumed
    first = make_trainer(demo, tmp_path / "cut", epochs=2)
    first.add_callback(StopAfterFirstEpoch())  # as if killed right after the first checkpoint
    first.train()
    assert first.state.global_step == 4  # one epoch: 64 samples / 16
    resumed = make_trainer(demo, tmp_path / "cut", epochs=2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-4"))
    full_losses, resumed_losses = losses(full), losses(resumed)
    assert len(resumed_losses) == len(full_losses) == 8  # the history of steps 1-4 comes from the checkpoint
    torch.testing.assert_close(torch.tensor(resumed_losses), torch.tensor(full_losses), rtol=1e-4, atol=1e-4)
    for name, value in full.ema.module.state_dict().items():
        torch.testing.assert_close(resumed.ema.module.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_no_weight_decay_on_biases_norms_and_embeddings():
    model = hf_mlcls.create_model("q2l-r101-448", num_labels=3, **TINY)
    decay = set(decay_parameter_names(model))
    assert "model.query_embed.weight" not in decay
    assert "classifier.b" not in decay and "classifier.W" in decay
    assert not any(n.endswith(".bias") or "norm" in n for n in decay)
    assert "model.transformer.decoder_layers.0.linear1.weight" in decay


def test_summary_line():
    line = summary_line({"eval_mAP": 81.234, "eval_CF1": 70.0, "eval_OF1": 75.5, "eval_ema_mAP": 82.0}, "eval", 3.0)
    assert line == "epoch 3.00 | mAP 81.23 | CF1 70.00 | OF1 75.50 | EMA mAP 82.00"


def test_the_skipped_class_count_is_compute_s_and_passes_through(caplog):
    """compute_metrics hands on compute()'s num_classes_skipped; the trainer's wrapper only warns about it
    and never makes up a count of its own for a compute_metrics that has none."""
    import logging

    import numpy as np
    from transformers import EvalPrediction

    from hf_mlcls.metrics import compute, compute_zsl_metrics
    from hf_mlcls.training import WarnSkippedClasses

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(12, 4))
    labels = (rng.random((12, 4)) < 0.5).astype(np.float32)
    labels[:, 1] = 0  # no positive
    labels[:3, 3] = -1  # unknown only where there is no positive: still evaluated
    labels[5, 3] = 1
    pred = EvalPrediction(predictions=logits, label_ids=labels)
    expected = compute(1 / (1 + np.exp(-logits)), labels)["num_classes_skipped"]
    assert compute_metrics(pred)["num_classes_skipped"] == expected == 1
    assert compute_zsl_metrics(pred)["num_classes_skipped"] == 1
    with caplog.at_level(logging.WARNING, logger="hf_mlcls.training"):
        metrics = WarnSkippedClasses(compute_metrics, {1: "cat"})(pred)
        assert WarnSkippedClasses(lambda p: {"accuracy": 1.0})(pred) == {"accuracy": 1.0}
    assert metrics == compute_metrics(pred)
    assert [r.getMessage()[:28] for r in caplog.records] == ["1 of 4 classes have no posit"] and "(cat)" in caplog.text


def test_example_script_trains_saves_and_predicts(tmp_path):
    out = tmp_path / "run"
    overrides = json.dumps({k: v for k, v in TINY.items()})
    env = dict(os.environ, HF_MLCLS_CACHE=str(tmp_path / "cache"))
    cmd = [
        sys.executable, str(ROOT / "examples" / "train.py"), str(ROOT / "examples" / "configs" / "demo.yaml"),
        "--model_overrides", overrides, "--dataset_options", json.dumps({"num_train": 48, "num_validation": 16, "image_size": 32}),
        "--num_train_epochs", "1", "--output_dir", str(out), "--use_cpu", "true",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out mAP of the saved model" in result.stdout
    assert "| EMA mAP" in result.stdout
    assert (out / "model.safetensors").exists() and (out / "preprocessor_config.json").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "zero"
    images = tmp_path / "cache" / "demo" / "val2017"
    predicted = subprocess.run(
        [sys.executable, "-m", "hf_mlcls", "predict", str(out), str(images), "--top-k", "2", "--format", "csv"],
        capture_output=True, text=True, env=env,
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = predicted.stdout.strip().splitlines()
    assert rows[0] == "image,label,score,error" and len(rows) == 1 + 2 * 16


DDP_SCRIPT = r'''
import json, os, sys, torch
import torch.distributed as dist
sys.path.insert(0, os.environ["TESTS_DIR"])
from transformers import TrainerCallback
from hf_mlcls.data import load_multilabel_dataset
from test_training import make_trainer

demo = load_multilabel_dataset("demo", os.environ["DEMO_DIR"], num_train=64, num_validation=24, image_size=32)
trainer = make_trainer(demo, os.environ["OUT_DIR"], epochs=1, ema_decay=0.0)
seen = []
inner = trainer.data_collator
def collate(rows):
    batch = inner(rows)
    if not trainer.model.training:  # evaluation batches are checked below
        return batch
    flat = batch["pixel_values"].flatten(1).double()
    seen.append((flat * torch.linspace(1, 2, flat.shape[1], dtype=torch.float64)).sum(1).tolist())
    return batch
trainer.data_collator = collate
trainer.train()
predictions = trainer.predict(trainer.eval_dataset)
rank = dist.get_rank()
out = {
    "rank": rank,
    "world": dist.get_world_size(),
    "train_fingerprints": [x for b in seen for x in b],
    "eval_rows": int(predictions.predictions.shape[0]),
    "eval_labels": predictions.label_ids.tolist(),
    "weights": float(sum(p.double().sum() for p in trainer.model.parameters())),
}
json.dump(out, open(os.path.join(os.environ["OUT_DIR"], f"rank{rank}.json"), "w"))
'''


def test_two_processes_split_the_data_and_agree(demo, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = dict(
        os.environ,
        TESTS_DIR=str(Path(__file__).parent),
        DEMO_DIR=str(tmp_path / "demo"),
        OUT_DIR=str(tmp_path / "out"),
        OMP_NUM_THREADS="1",
    )
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", str(script)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 for r in ranks)
    # the ranks saw different samples and, together, every training sample exactly once
    a, b = ([round(x, 4) for x in r["train_fingerprints"]] for r in ranks)
    assert len(a) == len(b) == 32 and sorted(a) != sorted(b)
    trainer = make_trainer(demo, tmp_path / "single", epochs=1)
    rows = [trainer.train_dataset[i]["pixel_values"].flatten().double() for i in range(64)]
    everything = [round(float((r * torch.linspace(1, 2, r.shape[0], dtype=torch.float64)).sum()), 4) for r in rows]
    assert Counter(a) + Counter(b) == Counter(everything)
    # identical weights after training
    assert ranks[0]["weights"] == pytest.approx(ranks[1]["weights"], rel=0, abs=1e-9)
    # evaluation gathered every sample exactly once (24 rows, no padding duplicates)
    assert ranks[0]["eval_rows"] == 24 == ranks[1]["eval_rows"]
    load = load_multilabel_dataset("demo", str(tmp_path / "demo"), num_train=64, num_validation=24, image_size=32)
    expected = [sorted(r) for r in load["validation"]["labels"]]
    got = [sorted(i for i, v in enumerate(row) if v > 0) for row in ranks[0]["eval_labels"]]
    assert got == expected


@pytest.mark.parametrize("config", sorted((ROOT / "examples" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_config_parses(config):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train
    finally:
        sys.path.pop(0)
    model_args, data_args, recipe, training_args = train.parse_args([str(config), "--output_dir", "/tmp/unused", "--bf16", "false"])  # no bf16 on this CPU
    assert model_args.model in hf_mlcls.list_presets()
    assert data_args.dataset in __import__("hf_mlcls.data", fromlist=["list_datasets"]).list_datasets()
    assert recipe.schedule in ("onecycle", "cosine", "trainer") and recipe.optimizer in ("adam", "adamw")
    if model_args.model_overrides:
        # in training the label count comes from the data (9,605 for OpenImages)
        hf_mlcls.preset_config(model_args.model, **{"num_labels": 10000, **json.loads(model_args.model_overrides)})
