#!/usr/bin/env python
"""ML-Decoder as a drop-in single-label head, against the backbone's own GAP + linear head.

    python examples/single_label_demo.py                     # 2 x 128 steps of batch 64 at 64 px
    python examples/single_label_demo.py --epochs 2 --num_train 256 --num_validation 128

Data: the built-in demo generator with one digit per image (`max_digits=1`: a handwritten
digit of random size and colour in one random quadrant of a noisy 64 px image; 10 classes;
train and validation digits from disjoint handwriting), as single-label rows.

Models (same backbone, same initial backbone weights, both from scratch): a half-width
timm ResNet-18 (channels 32-64-128-256) with
  - `gap`:  timm's own head, global average pooling + one linear layer (num_classes=10);
  - `mld`:  the ML-Decoder head (hf_mlcls `mldecoder-r50-224` preset with that backbone,
            decoder width 256, feed-forward 512, 10 queries), problem_type single-label.
Both train with the same loop: cross-entropy, AdamW (lr 2e-3, weight decay 1e-4), OneCycle,
batch 64, the same image order, no augmentation. The epochs are interleaved (the two models
take turns, the first alternating every epoch) so machine load falls on both alike.
Step time is one optimizer step (forward, backward, update) on a ready batch.

Prints one table and writes `<output_dir>/single_label_demo.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import platform
import time

import numpy as np
import torch


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--num_train", type=int, default=1024)
    p.add_argument("--num_validation", type=int, default=500)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--data_dir", default=None, help="where the one-digit demo set is written (default: the demo cache + '-1digit')")
    p.add_argument("--output_dir", default="outputs/single_label_demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return p.parse_args(argv)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_models(num_classes: int, seed: int):
    import timm

    from hf_mlcls import create_model

    backbone = {"backbone": "resnet18", "backbone_kwargs": {"channels": [32, 64, 128, 256]}}
    torch.manual_seed(seed)
    gap = timm.create_model("resnet18", num_classes=num_classes, channels=[32, 64, 128, 256])
    torch.manual_seed(seed)
    mld = create_model(
        "mldecoder-r50-224", id2label={i: str(i) for i in range(num_classes)}, problem_type="single_label_classification",
        image_size=64, image_mean=None, image_std=None, decoder_embedding=256, dim_feedforward=512, **backbone,
    )
    return {"gap": gap, "mld": mld}


def logits_of(model, pixel_values):
    out = model(pixel_values)
    return out.logits if hasattr(out, "logits") else out


def evaluate(model, batches) -> float:
    from hf_mlcls.metrics_single import topk_accuracy

    model.eval()
    scores, labels = [], []
    with torch.no_grad():
        for x, y in batches:
            scores.append(logits_of(model, x).float().numpy())
            labels.append(y.numpy())
    model.train()
    return topk_accuracy(np.concatenate(scores), np.concatenate(labels), ks=(1,))["top1"]


def load_data(args):
    from hf_mlcls.data import default_demo_dir, load_multilabel_dataset
    from hf_mlcls.data.single_label import to_single_label
    from hf_mlcls.training_single import SingleLabelArguments, single_label_transforms

    class Cfg:
        image_size, image_mean, image_std = 64, None, None

    data_dir = args.data_dir or default_demo_dir() + "-1digit"
    ds = to_single_label(load_multilabel_dataset("demo", data_dir, max_digits=1, num_train=args.num_train,
                                                 num_validation=args.num_validation, seed=args.seed))
    _, tf = single_label_transforms(Cfg, SingleLabelArguments(crop_pct=1.0))  # resize (a no-op at 64 px) + to tensor

    def tensors(split):
        rows = ds[split].with_transform(tf)
        x = torch.stack([rows[i]["pixel_values"] for i in range(len(rows))])
        y = torch.tensor(ds[split]["label"], dtype=torch.long)
        return x, y

    return ds["train"].features["label"].names, tensors("train"), tensors("validation")


def main(argv=None) -> dict:
    args = parse(argv)
    from hf_mlcls.paths import check_writable_folder

    check_writable_folder(args.output_dir, "--output_dir")  # before the data is built and the models trained
    if args.num_train < args.batch_size:
        raise ValueError(f"--num_train {args.num_train} is smaller than --batch_size {args.batch_size}; "
                         "give more training images or a smaller batch")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    names, (train_x, train_y), (val_x, val_y) = load_data(args)
    models = build_models(len(names), args.seed)
    steps_per_epoch = len(train_x) // args.batch_size
    opts, scheds = {}, {}
    for name, model in models.items():
        model.train()
        opts[name] = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        scheds[name] = torch.optim.lr_scheduler.OneCycleLR(opts[name], max_lr=2e-3, total_steps=steps_per_epoch * args.epochs,
                                                           pct_start=0.2)
    val_batches = list(zip(val_x.split(250), val_y.split(250)))
    step_times = {name: [] for name in models}
    history = []
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_x), generator=generator)  # the same image order for both models
        turn = list(models) if epoch % 2 == 0 else list(reversed(models))
        losses = {}
        for name in turn:
            model, opt, sched = models[name], opts[name], scheds[name]
            total = 0.0
            for s in range(steps_per_epoch):
                idx = order[s * args.batch_size:(s + 1) * args.batch_size]
                x, y = train_x[idx], train_y[idx]
                t0 = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(logits_of(model, x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step_times[name].append(time.perf_counter() - t0)
                total += loss.item()
            losses[name] = total / steps_per_epoch
        row = {"epoch": epoch + 1, **{f"{n}_loss": round(losses[n], 4) for n in models},
               **{f"{n}_top1": evaluate(models[n], val_batches) for n in models}}
        history.append(row)
        print(f"epoch {epoch + 1}: " + " | ".join(f"{n} loss {losses[n]:.3f} top-1 {row[f'{n}_top1']:.1f}" for n in models), flush=True)
    wall = time.perf_counter() - start
    results = {}
    for name, model in models.items():
        t = np.array(step_times[name]) * 1000
        results[name] = {
            "top1": history[-1][f"{name}_top1"],
            "step_ms_median": round(float(np.median(t)), 2), "step_ms_min": round(float(t.min()), 2), "step_ms_max": round(float(t.max()), 2),
            "parameters": int(sum(p.numel() for p in model.parameters())),
        }
    report = {
        "settings": {k: v for k, v in vars(args).items()},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
                    "torch": torch.__version__},
        "train_images": len(train_x), "validation_images": len(val_x), "wall_s": round(wall, 1),
        "results": results, "history": history,
    }
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "single_label_demo.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    print(f"\n{len(train_x)} train / {len(val_x)} validation one-digit images, {args.epochs} epochs each, "
          f"{report['wall_s']} s; load average {report['machine']['loadavg_start'][0]} -> {report['machine']['loadavg_end'][0]} "
          f"on {report['machine']['cores']} cores")
    print(f"{'head':<22}{'top-1 %':>9}{'step ms (median, min-max)':>30}{'parameters':>13}")
    for name, label in (("gap", "GAP + linear (timm)"), ("mld", "ML-Decoder")):
        r = results[name]
        print(f"{label:<22}{r['top1']:>9.1f}{r['step_ms_median']:>12.1f} ({r['step_ms_min']:.1f}-{r['step_ms_max']:.1f}){'':>6}"
              f"{r['parameters']:>13,}")
    return report


if __name__ == "__main__":
    from hf_mlcls.cli import run_user_command

    sys.exit(run_user_command("single_label_demo.py", lambda: main() and 0))
