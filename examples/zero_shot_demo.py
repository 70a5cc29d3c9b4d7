#!/usr/bin/env python
"""Zero-shot on the built-in demo data: train on 7 digits, score the 3 the model never saw.

    python examples/zero_shot_demo.py                        # unseen: seven, eight, nine
    python examples/zero_shot_demo.py --unseen two five eight --epochs 8
    python examples/zero_shot_demo.py --eval_only            # score the model saved by an earlier run again

1. `examples/train.py` trains a zero-shot ML-Decoder (a half-width ResNet-18 cut after its
   third stage, 64 px, from scratch, no augmentation) on the demo's 2x2 digit mosaics, with the 7 seen class names ("zero" .. "six")
   embedded by the packaged all-MiniLM-L6-v2 as its queries. Images keep their unseen digits,
   unlabelled, as NUS-WIDE's zero-shot protocol does.
2. The saved model is reloaded and given the unseen names with `set_label_names`, then scored
   on the validation mosaics that contain an unseen digit (ZSL: the 3 unseen labels; GZSL: all
   10 labels on the same images).
3. Chance: random scores on the same images and targets, `--chance_draws` times.

Prints one table and writes `<output_dir>/zero_shot_demo.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unseen", nargs="+", default=["seven", "eight", "nine"], help="digit names held out of training")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--output_dir", default="outputs/zero_shot_demo")
    p.add_argument("--text_encoder", default=None, help="default: the packaged all-MiniLM-L6-v2")
    p.add_argument("--query_noise_std", type=float, default=0.02, help="the paper's additive query noise")
    p.add_argument("--query_extra", type=int, default=8, help="the paper's random-query additions")
    p.add_argument("--chance_draws", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval_only", action="store_true", help="score the model already saved in --output_dir (no training)")
    return p.parse_args()


def train(args) -> float:
    sys.path.insert(0, HERE)
    import train as train_script

    overrides = {
        "backbone": "resnet18",
        "backbone_kwargs": {"channels": [32, 64, 128, 256]},
        "out_index": -2,  # stride-16 features (4x4 tokens for 64 px), and no last stage to compute
        "image_size": 64,
        "decoder_embedding": 256,
        "num_heads": 4,
        "dim_feedforward": 512,
        "query_noise_std": args.query_noise_std,
        "query_extra": args.query_extra,
    }
    argv = [
        "--model", "mldecoder-tresnetm-zsl-224",
        "--model_overrides", json.dumps(overrides),
        "--dataset", "demo",
        "--unseen_labels", *args.unseen,
        "--randaugment", "false", "--cutout", "false",  # Cutout at half the side hides a whole digit of a 2x2 mosaic
        "--optimizer", "adamw", "--weight_decay", "1e-4", "--learning_rate", "2e-3",
        "--schedule", "onecycle", "--pct_start", "0.2", "--ema_decay", "0.98",
        "--num_train_epochs", str(args.epochs),
        "--per_device_train_batch_size", "64", "--per_device_eval_batch_size", "250",
        "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "20",
        "--do_train", "true", "--do_eval", "false",
        "--output_dir", args.output_dir, "--report_to", "none", "--seed", str(args.seed), "--use_cpu", "true",
    ]
    if args.text_encoder:
        argv += ["--text_encoder", args.text_encoder]
    start = time.perf_counter()
    train_script.main(argv)
    return time.perf_counter() - start


@torch.inference_mode()
def score(model, dataset, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Logits and targets of a transformed split."""
    from hf_mlcls.data import MultiLabelCollator

    collate = MultiLabelCollator()
    logits, targets = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        logits.append(model(pixel_values=batch["pixel_values"]).logits.float())
        targets.append(batch["labels"])
    return torch.cat(logits).numpy(), torch.cat(targets).numpy()


def main() -> None:
    args = parse()
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    train_seconds = 0.0 if args.eval_only else train(args)

    from transformers import AutoModelForImageClassification

    import hf_mlcls  # noqa: F401  (registers the model type)
    from hf_mlcls.data import apply_transforms, load_multilabel_dataset, transforms_from_image_processor
    from hf_mlcls.data.nuswide_zsl import zero_shot_splits
    from hf_mlcls.metrics import compute_zsl

    model = AutoModelForImageClassification.from_pretrained(args.output_dir).eval()
    seen = [model.config.id2label[i] for i in range(model.config.num_labels)]
    splits = zero_shot_splits(load_multilabel_dataset("demo"), args.unseen)
    eval_tf = transforms_from_image_processor(model.build_image_processor(), train=False)
    results = {}
    rng = np.random.default_rng(args.seed)
    for setting in ("zsl", "gzsl"):
        names = splits[setting].features["labels"].feature.names
        model.set_label_names(names)  # the model's own text encoder (config.text_encoder)
        logits, targets = score(model, apply_transforms(splits[setting], eval_transform=eval_tf))
        ours = compute_zsl(logits, targets, top_k=(1, 3, 5))  # the papers' k = 3, 5; k = 1 for 3 unseen labels
        keys = ["mAP"] + [f"{m}_top{k}" for k in (1, 3, 5) for m in ("P", "R", "F1")]
        draws = [compute_zsl(rng.random(targets.shape), targets, top_k=(1, 3, 5)) for _ in range(args.chance_draws)]
        chance = {k: (float(np.mean([d[k] for d in draws])), float(np.std([d[k] for d in draws]))) for k in keys}
        results[setting] = {
            "labels": names,
            "num_images": int(targets.shape[0]),
            **{k: float(ours[k]) for k in keys},
            "AP_per_class": {n: float(a) for n, a in zip(names, ours["AP_per_class"])},
            "chance": {k: {"mean": m, "std": s} for k, (m, s) in chance.items()},
        }
    report = {
        "command": "python examples/zero_shot_demo.py " + " ".join(sys.argv[1:]),
        "seen": seen,
        "unseen": args.unseen,
        "text_encoder": model.config.text_encoder,
        "epochs": args.epochs,
        "train_seconds": round(train_seconds, 1) if not args.eval_only else None,
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        + ("CUDA" if torch.cuda.is_available() else "no GPU"),
        "results": results,
    }
    with open(os.path.join(args.output_dir, "zero_shot_demo.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)

    took = "" if args.eval_only else f" for {args.epochs} epochs in {train_seconds / 60:.1f} min ({report['total_seconds'] / 60:.1f} min in all)"
    print(f"\nzero-shot demo: trained on {len(seen)} digits{took}; unseen: {', '.join(args.unseen)}")
    print(f"{'setting':<6} {'labels':>6} {'images':>6} {'metric':>7} {'model':>7} {'chance (random scores)':>24}")
    for setting, r in results.items():
        c = r["chance"]
        for key in ("mAP", "F1_top1", "F1_top3", "F1_top5"):
            print(f"{setting.upper():<6} {len(r['labels']):>6} {r['num_images']:>6} {key:>7} {r[key]:>7.2f} "
                  f"{c[key]['mean']:>15.2f} ± {c[key]['std']:<5.2f}")
    print("unseen AP: " + ", ".join(f"{n} {results['zsl']['AP_per_class'][n]:.2f}" for n in args.unseen))
    print("seen AP (GZSL): " + ", ".join(f"{n} {results['gzsl']['AP_per_class'][n]:.2f}" for n in seen))


if __name__ == "__main__":
    main()
