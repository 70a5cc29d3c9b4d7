"""The published recipes train as the official scripts do: loss scaling whatever the process / accumulation
layout, fp32 classifiers under autocast, every recipe runnable in bf16 and fp16 (docs/recipes.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

import hf_mlcls
from hf_mlcls.training import MultiLabelTrainer, RecipeArguments

ROOT = Path(__file__).resolve().parents[1]
TINY_BACKBONE = dict(backbone="resnet18", backbone_kwargs=dict(layers=[1, 1, 1, 1], channels=(8, 16, 32, 64), stem_width=8),
                     image_size=32, image_mean=None, image_std=None, freeze_batch_norm=True)
FAMILIES = {
    # Query2Label: mean loss ("scaled_mean"), AdamW on every parameter, as main_mlc.py
    "q2l": ("q2l-r101-448", dict(hidden_dim=16, keep_input_proj=True, num_heads=2, dim_feedforward=32, dropout=0.0),
            dict(optimizer="adamw", weight_decay_all=True), 1e-2, 5),
    # ML-Decoder: summed loss, Adam with L2 decay off biases and norms, as train.py
    "mld": ("mldecoder-tresnetm-224", dict(decoder_embedding=16, num_heads=2, dim_feedforward=32, dropout=0.0, num_groups=3),
            dict(optimizer="adam"), 1e-4, 7),
}
GLOBAL_BATCH, STEPS = 8, 3


def tiny_model(family: str):
    preset, head, _, _, num_labels = FAMILIES[family]
    torch.manual_seed(0)
    return hf_mlcls.create_model(preset, id2label={i: f"l{i}" for i in range(num_labels)}, **TINY_BACKBONE, **head)


class Rows(torch.utils.data.Dataset):
    """GLOBAL_BATCH * STEPS fixed images and multi-hot labels, the same in every process."""

    def __init__(self, num_labels: int) -> None:
        g = torch.Generator().manual_seed(1)
        n = GLOBAL_BATCH * STEPS
        self.pixels = torch.rand(n, 3, 32, 32, generator=g)
        self.labels = (torch.rand(n, num_labels, generator=g) < 0.4).float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixels[i], "labels": self.labels[i]}


class InOrder(MultiLabelTrainer):
    """Rows in their stored order, so that every layout sees the same global batches."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


class RecordGradients(TrainerCallback):
    """The gradient the optimizer is about to apply (after accumulation and DDP's all-reduce), per step."""

    def __init__(self) -> None:
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append(torch.cat([p.grad.detach().flatten().clone() for p in model.parameters() if p.grad is not None]))


def train_layout(family: str, per_device: int, accumulation: int, output_dir: str, **extra) -> dict:
    """Train the tiny `family` model for STEPS optimizer steps; return its gradients, weights and EMA."""
    _, _, recipe, weight_decay, num_labels = FAMILIES[family]
    model = tiny_model(family)
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
        max_steps=STEPS, learning_rate=1e-3, weight_decay=weight_decay, max_grad_norm=0.0, logging_steps=1,
        # Adam's eps well above the gradients' float noise: at 1e-8 a gradient of ~0 whose rounding differs
        # between layouts flips the sign of a whole lr-sized step; at 1e-3 such steps stay proportional
        adam_epsilon=1e-3,
        save_strategy="no", report_to="none", remove_unused_columns=False, label_names=["labels"], use_cpu=True,
        seed=0, dataloader_num_workers=0, disable_tqdm=True, **extra,
    )
    recorder = RecordGradients()
    trainer = InOrder(model=model, args=args, train_dataset=Rows(num_labels), callbacks=[recorder],
                      recipe=RecipeArguments(ema_decay=0.5, **recipe))
    trainer.train()
    return {
        "grads": torch.stack(recorder.grads),
        "weights": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "ema": {k: v.detach().clone() for k, v in trainer.ema.module.state_dict().items()},
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
    }


DDP_SCRIPT = r'''
import os, sys, torch
import torch.distributed as dist
sys.path.insert(0, os.environ["TESTS_DIR"])
from test_recipes import train_layout
for family in ("q2l", "mld"):
    result = train_layout(family, per_device=4, accumulation=1, output_dir=os.path.join(os.environ["OUT_DIR"], family))
    if dist.get_rank() == 0:
        torch.save(result, os.path.join(os.environ["OUT_DIR"], family + ".pt"))
'''


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Both families trained by 2 gloo DDP processes x batch 4."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, TESTS_DIR=str(Path(__file__).parent), OUT_DIR=str(out), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29541", str(script)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return {family: torch.load(out / f"{family}.pt", weights_only=True) for family in FAMILIES}


def assert_same_training(a: dict, b: dict) -> None:
    # The gradients first: Adam hides a constant factor on the gradient in its update, not in the gradient.
    # Summation order moves them by float rounding only (~1e-6 of their scale); a factor 2 is far outside.
    torch.testing.assert_close(a["grads"], b["grads"], rtol=1e-4, atol=1e-5 * float(a["grads"].abs().max()))
    torch.testing.assert_close(a["losses"], b["losses"], rtol=1e-5, atol=1e-6)
    for name in ("weights", "ema"):
        for key, value in a[name].items():
            torch.testing.assert_close(b[name][key], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name} {key}: {m}")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_global_batch_trains_the_same_whatever_the_layout(family, two_processes, tmp_path):
    one_by_eight = train_layout(family, per_device=GLOBAL_BATCH, accumulation=1, output_dir=str(tmp_path / "a"))
    accumulated = train_layout(family, per_device=GLOBAL_BATCH // 2, accumulation=2, output_dir=str(tmp_path / "b"))
    assert len(one_by_eight["grads"]) == STEPS
    start = tiny_model(family).state_dict()
    assert any(not torch.equal(start[k], v) for k, v in one_by_eight["weights"].items())  # it did train
    assert_same_training(one_by_eight, accumulated)
    assert_same_training(one_by_eight, two_processes[family])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_final_classifier_computes_in_fp32_under_autocast(family):
    model = tiny_model(family).eval()
    pixels = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model.model(pixels).last_hidden_state  # both decoders end in a LayerNorm: fp32 under autocast
        logits = model(pixels).logits
        in_bf16 = torch.einsum("bkd,kd->bk", hidden, torch.ones(hidden.shape[1:]))
    assert in_bf16.dtype == torch.bfloat16  # what a matrix product gives under autocast: bf16
    assert logits.dtype == torch.float32
    with torch.no_grad():
        expected = model.classifier(hidden.float())  # the same states, classified in fp32 without autocast
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


RECIPES = sorted(p for p in (ROOT / "examples" / "configs").glob("*.yaml") if p.stem != "demo")


def test_recipes_do_not_clip_and_name_their_sources():
    for path in RECIPES:
        text = path.read_text()
        assert "max_grad_norm: 0.0" in text, path.name
        assert "docs/recipes.md" in text, path.name
    documented = (ROOT / "docs" / "recipes.md").read_text()
    for path in RECIPES:
        assert path.name in documented, path.name


MULTI_LABEL_RECIPES = [p for p in RECIPES if not any(n in p.stem for n in ("imagenet", "cifar100", "stanford-cars"))]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("config", MULTI_LABEL_RECIPES, ids=lambda p: p.stem)
def test_every_recipe_takes_a_step_in_mixed_precision(config, precision, tmp_path):
    """Each recipe's arguments (optimizer, groups, schedule, EMA, clipping, best-model choice), its own model
    family at tiny widths, one optimizer step under `precision` on the CPU."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train
    finally:
        sys.path.remove(str(ROOT / "examples"))
    model_args, _, recipe, args, *_ = train.parse_all_args(
        [str(config), f"--{precision}", "true", "--bf16" if precision == "fp16" else "--fp16", "false",
         "--output_dir", str(tmp_path), "--use_cpu", "true", "--report_to", "none", "--max_steps", "1",
         "--per_device_train_batch_size", "4", "--dataloader_num_workers", "0", "--save_strategy", "no",
         "--eval_strategy", "no", "--load_best_model_at_end", "false", "--early_stopping_patience", "1",
         "--logging_steps", "1"]
    )
    family = "q2l" if model_args.model.startswith("q2l") else "mld"
    args.remove_unused_columns, args.label_names = False, ["labels"]
    model = tiny_model(family)
    if "zsl" in model_args.model:  # its own kind of model: label-embedding queries, one shared classifier
        preset, head, _, _, num_labels = FAMILIES["mld"]
        model = hf_mlcls.create_model(model_args.model, num_labels=num_labels, label_embedding_dim=8,
                                      **TINY_BACKBONE, **dict(head, num_groups=-1))
        model.set_label_embeddings(torch.randn(num_labels, 8))
        assert model.config.zero_shot
    if recipe.backbone_trainable_layers:
        from hf_mlcls.training import freeze_backbone_layers

        assert freeze_backbone_layers(model, recipe.backbone_trainable_layers) > 0
    recipe.early_stopping_patience = None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = set()  # the dtype the decoder's linear layers computed in: autocast's, not fp32
    linears = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "linear1" in n]
    for m in linears:
        m.register_forward_hook(lambda mod, inputs, out: seen.add(out.dtype))
    trainer = MultiLabelTrainer(model=model, args=args, train_dataset=Rows(FAMILIES[family][4]), recipe=recipe)
    trainer.train()
    assert args.max_grad_norm == 0.0
    if precision == "bf16":
        assert linears and seen == {torch.bfloat16}
    else:
        # Accelerate (1.16) enables fp16 autocast and its GradScaler only off the CPU: on the CPU an fp16
        # recipe runs, in fp32. What it does on a GPU is not exercised here.
        assert linears and seen == {torch.float32} and trainer.accelerator.scaler is None
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---- training-trajectory parity with the official training steps (tests/fixtures/recipes/README.md) ----

OFFICIAL = Path(__file__).parent / "fixtures" / "official"
TRAJECTORIES = Path(__file__).parent / "fixtures" / "recipes"


def _official_to_ours(name: str, state: dict, out: Path):
    """Our model holding an official state dict (no prefix), through the converter."""
    from hf_mlcls.convert import convert_checkpoint
    from test_convert import FIXTURE_PRESETS, tiny_overrides

    checkpoint = out.with_suffix(".pth")
    q2l = name.startswith("q2l")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}} if q2l else {"model": state}, checkpoint)
    extra = {"config_file": str(OFFICIAL / f"{name}.config.json")} if q2l else {}
    result = convert_checkpoint(checkpoint, out, FIXTURE_PRESETS[name], overrides={**tiny_overrides(name), "dropout": 0.0},
                                verify=False, **extra)
    return result.model


class Batches(torch.utils.data.Dataset):
    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        self.pixel_values, self.labels = pixel_values.flatten(0, 1), labels.flatten(0, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}


class StopAfter(TrainerCallback):
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_training_stop = True


def _replay(name: str, fixture: dict, recipe: RecipeArguments, tmp_path: Path, trainable=None, **args):
    """Our Trainer on the fixture's batches, from the official starting weights: (trainer, expected final, expected EMA)."""
    initial = torch.load(OFFICIAL / f"{name}.pth", weights_only=True)
    initial = {k.removeprefix("module."): v for k, v in next(iter(initial.values())).items()}
    model = _official_to_ours(name, initial, tmp_path / "start").train()
    if trainable:
        from hf_mlcls.training import freeze_backbone_layers

        freeze_backbone_layers(model, trainable)
    u8 = fixture["images_uint8"]
    pixels = u8.float() / 255
    if "image_mean" in fixture:
        pixels = (pixels - fixture["image_mean"][:, None, None]) / fixture["image_std"][:, None, None]
    steps, batch = u8.shape[:2]
    training_args = TrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=batch, logging_steps=1,
        save_strategy="no", report_to="none", remove_unused_columns=False, label_names=["labels"], use_cpu=True,
        seed=0, dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=0.0, **args,
    )
    trainer = InOrder(model=model, args=training_args, train_dataset=Batches(pixels, fixture["labels"]), recipe=recipe,
                      callbacks=[StopAfter(steps)])
    trainer.train()
    assert trainer.state.global_step == steps
    final = _official_to_ours(name, {**initial, **fixture["trained"]}, tmp_path / "final").state_dict()
    ema = _official_to_ours(name, {**initial, **fixture["ema"]}, tmp_path / "ema").state_dict()
    return trainer, final, ema


def _assert_trajectory(trainer, fixture, final, ema, rtol=1e-4, atol=1e-5):
    history = trainer.state.log_history
    losses = torch.tensor([e["loss"] for e in history if "loss" in e])
    torch.testing.assert_close(losses, fixture["losses"].to(losses.dtype), rtol=1e-5, atol=1e-4)
    # the learning rate each step used (OneCycle's, with its momentum cycling Adam's beta1)
    rates = torch.tensor([e["learning_rate"] for e in history if "learning_rate" in e], dtype=torch.float64)
    torch.testing.assert_close(rates, fixture["learning_rates"].to(rates.dtype), rtol=1e-6, atol=0)
    ours, ours_ema = trainer.model.state_dict(), trainer.ema.module.state_dict()
    for key, value in final.items():
        if not value.is_floating_point():
            continue  # batch-norm step counters: the momentum is fixed, they change nothing
        mine, mine_ema, theirs_ema = ours[key], ours_ema[key], ema[key]
        if key.endswith("in_proj_bias"):
            # An attention's key bias adds the same amount to every score of a query, which the softmax removes:
            # its true gradient is 0, and what either implementation computes is rounding noise that Adam turns
            # into lr-sized steps of random sign. Compared: the query and value biases.
            keep = torch.ones_like(value, dtype=torch.bool)
            keep[value.shape[0] // 3 : 2 * value.shape[0] // 3] = False
            mine, value, mine_ema, theirs_ema = mine[keep], value[keep], mine_ema[keep], theirs_ema[keep]
        torch.testing.assert_close(mine, value, rtol=rtol, atol=atol, msg=lambda m: f"{key}: {m}")
        torch.testing.assert_close(mine_ema, theirs_ema, rtol=rtol, atol=atol, msg=lambda m: f"EMA {key}: {m}")


def test_query2label_trains_as_the_official_main_mlc(tmp_path):
    """main_mlc.py's AdamW on every trainable parameter, OneCycle, ASL (scaled mean), EMA, frozen stem and
    layer1, no clipping: six steps from the q2l_resnet official fixture give its losses, weights and EMA."""
    fixture = torch.load(TRAJECTORIES / "q2l_resnet.train.pth", weights_only=True)
    recipe = RecipeArguments(optimizer="adamw", weight_decay_all=True, schedule="onecycle", pct_start=0.2, ema_decay=0.9)
    trainer, final, ema = _replay("q2l_resnet", fixture, recipe, tmp_path, trainable=["layer2", "layer3", "layer4"],
                                  learning_rate=1e-3, weight_decay=1e-2, num_train_epochs=1)
    _assert_trajectory(trainer, fixture, final, ema)


def test_ml_decoder_trains_as_the_official_train_py(tmp_path):
    """train.py's Adam with L2 decay off 1-D parameters and biases, OneCycle over 40 epochs, summed ASL, EMA, no
    clipping, batch-norm statistics in training mode: the first six steps from the mldecoder_tresnet official
    fixture give its losses, weights, running statistics and EMA."""
    fixture = torch.load(TRAJECTORIES / "mldecoder_tresnet.train.pth", weights_only=True)
    recipe = RecipeArguments(optimizer="adam", schedule="onecycle", pct_start=0.2, ema_decay=0.9)
    trainer, final, ema = _replay("mldecoder_tresnet", fixture, recipe, tmp_path, learning_rate=1e-2, weight_decay=1e-4,
                                  num_train_epochs=40)
    _assert_trajectory(trainer, fixture, final, ema)


def test_weight_decay_groups_follow_each_official_rule(tmp_path):
    """Query2Label (weight_decay_all): one decayed group of every trained parameter (main_mlc.py:243-249).
    ML-Decoder: no decay exactly for 1-D parameters and biases (helper_functions.py add_weight_decay)."""
    for family, recipe in (("q2l", RecipeArguments(optimizer="adamw", weight_decay_all=True)),
                           ("mld", RecipeArguments(optimizer="adam"))):
        model = tiny_model(family)
        args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.5, use_cpu=True, report_to="none")
        trainer = MultiLabelTrainer(model=model, args=args, recipe=recipe)
        optimizer = trainer.create_optimizer()
        decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if family == "q2l":
            assert decayed == {id(p) for _, p in trained}
        else:
            official = {id(p) for n, p in trained if not (p.ndim == 1 or n.endswith(".bias"))}
            assert decayed == official and len(decayed) < len(trained)


@pytest.mark.parametrize("raw_map, ema_map, kept", [(60.0, 50.0, "raw"), (50.0, 60.0, "ema")])
def test_final_weights_better_keeps_the_weights_that_scored_higher(raw_map, ema_map, kept, tmp_path):
    """final_weights='better': Query2Label's model_best holds the EMA if mAP_ema > mAP, else the raw weights."""
    model = tiny_model("q2l")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", metric_for_best_model="max_mAP_voc")
    trainer = MultiLabelTrainer(model=model, args=args, recipe=RecipeArguments(ema_decay=0.5, final_weights="better"))
    with torch.no_grad():
        for p in trainer.ema.module.parameters():
            p.add_(1.0)  # EMA weights that differ from the raw ones
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    trainer.state.log_history = [
        {"step": 4, "eval_mAP_voc": 10.0}, {"step": 4, "eval_ema_mAP_voc": 90.0},  # an earlier evaluation
        {"step": 8, "eval_mAP_voc": raw_map}, {"step": 8, "eval_ema_mAP_voc": ema_map},
    ]
    assert trainer.use_final_weights() == kept
    expected = raw if kept == "raw" else ema
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert trainer.ema is None


def test_each_evaluation_reports_the_better_of_raw_and_ema(tmp_path):
    from hf_mlcls.metrics import compute_metrics

    model = tiny_model("q2l")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", remove_unused_columns=False,
                             label_names=["labels"], per_device_eval_batch_size=8)
    trainer = MultiLabelTrainer(model=model, args=args, eval_dataset=Rows(5), compute_metrics=compute_metrics,
                                recipe=RecipeArguments(ema_decay=0.5))
    with torch.no_grad():
        for p in trainer.ema.module.parameters():
            p.mul_(0.5)
    metrics = trainer.evaluate()
    for key in ("mAP", "mAP_voc"):
        assert metrics[f"eval_{key}"] != metrics[f"eval_ema_{key}"]
        assert metrics[f"eval_max_{key}"] == max(metrics[f"eval_{key}"], metrics[f"eval_ema_{key}"])


def test_train_py_names_a_bad_final_weights(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "train.py"), "--final_weights", "best",
                             "--output_dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--final_weights must be 'ema' or 'better', got 'best'" in result.stderr
