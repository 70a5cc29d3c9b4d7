#!/usr/bin/env python
"""Zero-shot you can check: train on seen label names, score names the model never saw.

    python examples/zero_shot_demo.py                        # coloured shapes: 22 seen, 8 unseen "colour shape" names
    python examples/zero_shot_demo.py --dataset demo         # the negative control: digits, unseen seven, eight, nine
    python examples/zero_shot_demo.py --unseen "red star" "blue circle" --epochs 6
    python examples/zero_shot_demo.py --eval_only            # score the model saved by an earlier run again

1. `examples/train.py` trains a zero-shot ML-Decoder (a half-width ResNet-18 cut after its
   third stage, 32 px input for shapes and 64 px for demo, from scratch, no augmentation) on a
   built-in generated set, with the seen class names embedded by the packaged all-MiniLM-L6-v2
   as its queries. Images keep their
   unseen objects, unlabelled, as NUS-WIDE's zero-shot protocol does.
   - `shapes` (default): 64 px scenes of 1-3 coloured shapes, 30 classes "red circle" ..
     "orange cross"; 8 combinations are held out, every word of which appears in seen names.
     By default (`--word_labels`) each scene is also labelled with the single words of its
     shapes ("red", "circle": 11 more seen labels), so the model learns what each word means;
     the unseen names are never training labels and are embedded only at evaluation.
   - `demo`: 2x2 mosaics of handwritten digits, names "zero" .. "nine" (number words say nothing
     about how a digit looks: the negative control).
2. The saved model is reloaded and given the unseen names with `set_label_names`, then scored
   on the validation images that contain an unseen class (ZSL: the unseen labels; GZSL: all
   labels on the same images).
3. Chance: random scores on the same images and targets, `--chance_draws` times, in the same run.

Prints one table and writes `<output_dir>/zero_shot_demo.json` (figures, wall and CPU time, load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

#: per dataset: the held-out names and the number of epochs of the measured runs
SETTINGS = {
    # shapes: 32 px model input (the 64 px scenes resized), 2x2 tokens, one per quadrant, that is one per shape
    "shapes": {"unseen": None, "epochs": 6, "image_size": 32, "num_train": 2000, "num_validation": 600,
               "batch_size": 32, "word_labels": True, "output_dir": "outputs/zero_shot_shapes"},  # None: SHAPES_UNSEEN
    "demo": {"unseen": ["seven", "eight", "nine"], "epochs": 10, "image_size": 64, "num_train": None,
             "num_validation": None, "batch_size": 64, "output_dir": "outputs/zero_shot_demo"},
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(SETTINGS), default="shapes",
                   help="shapes (default: compositional names) or demo (digits, the negative control)")
    p.add_argument("--data_dir", default=None, help="where the generated set lives (default: under $HF_MLCLS_CACHE)")
    p.add_argument("--num_train", type=int, default=None, help="generated training images (default: 2000 for both)")
    p.add_argument("--num_validation", type=int, default=None, help="generated validation images (default: 600 / 500)")
    p.add_argument("--image_size", type=int, default=None, help="the model's input side (default: 32 for shapes, 64 for demo)")
    p.add_argument("--batch_size", type=int, default=None, help="training batch (default: 32 for shapes, 64 for demo)")
    p.add_argument("--unseen", nargs="+", default=None,
                   help="class names held out of training (default: the dataset's: 8 shape combinations, or seven eight nine)")
    p.add_argument("--epochs", type=int, default=None, help="default: 6 for shapes, 10 for demo")
    p.add_argument("--output_dir", default=None, help="default: outputs/zero_shot_shapes or outputs/zero_shot_demo")
    p.add_argument("--text_encoder", default=None,
                   help="default: the packaged all-MiniLM-L6-v2; a word-vector file (GloVe text) compares word-vector queries")
    p.add_argument("--query_noise_std", type=float, default=0.02, help="the paper's additive query noise")
    p.add_argument("--query_extra", type=int, default=8, help="the paper's random-query additions")
    p.add_argument("--chance_draws", type=int, default=1000)
    p.add_argument("--word_labels", action=argparse.BooleanOptionalAction, default=None,
                   help="shapes: also label each image with the single words of its shapes ('red', 'circle') as 11 "
                        "more seen labels (the unseen names stay out of training); default: on for shapes")
    p.add_argument("--data_seed", type=int, default=0, help="shapes: the generated set's seed (other scenes, same names)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval_only", action="store_true", help="score the model already saved in --output_dir (no training)")
    args = p.parse_args(argv)
    setting = SETTINGS[args.dataset]
    if args.unseen is None:
        if setting["unseen"] is None:
            from hf_mlcls.data.shapes import SHAPES_UNSEEN

            args.unseen = list(SHAPES_UNSEEN)
        else:
            args.unseen = list(setting["unseen"])
    if args.word_labels is None:
        args.word_labels = bool(setting.get("word_labels", False))
    if args.dataset != "shapes" and (args.word_labels or args.data_seed != 0):
        p.error(f"--word_labels and --data_seed are options of the shapes set, not of --dataset {args.dataset}")
    for key in ("epochs", "image_size", "num_train", "num_validation", "batch_size"):
        if getattr(args, key) is None:
            setattr(args, key, setting[key])
    args.output_dir = args.output_dir or setting["output_dir"]
    if args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    for flag in ("num_train", "num_validation", "image_size", "batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.chance_draws < 1:
        p.error(f"--chance_draws must be >= 1, got {args.chance_draws}")
    return args


def dataset_options(args) -> dict:
    options = {k: getattr(args, k) for k in ("num_train", "num_validation") if getattr(args, k) is not None}
    if args.dataset == "shapes":
        options.update(word_labels=args.word_labels, seed=args.data_seed)
    return options


def class_names(args, names: list[str]) -> list[str]:
    """``names`` without the shapes' single-word labels: the classes that GZSL and the report are about."""
    if args.dataset != "shapes":
        return list(names)
    from hf_mlcls.data.shapes import SHAPES_WORDS

    return [n for n in names if n not in SHAPES_WORDS]


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train(args) -> None:
    sys.path.insert(0, HERE)
    import train as train_script

    overrides = {
        "backbone": "resnet18",
        "backbone_kwargs": {"channels": [32, 64, 128, 256]},
        "out_index": -2,  # stride-16 features, and no last stage to compute
        "image_size": args.image_size,
        "decoder_embedding": 256,
        "num_heads": 4,
        "dim_feedforward": 512,
        "query_noise_std": args.query_noise_std,
        "query_extra": args.query_extra,
    }
    argv = [
        "--model", "mldecoder-tresnetm-zsl-224",
        "--model_overrides", json.dumps(overrides),
        "--dataset", args.dataset,
        "--unseen_labels", *args.unseen,
        # no RandAugment: its colour operations would change what "red" looks like; no Cutout: at half the side
        # it hides a whole quadrant, that is a whole digit or shape
        "--randaugment", "false", "--cutout", "false",
        "--optimizer", "adamw", "--weight_decay", "1e-4", "--learning_rate", "2e-3",
        "--schedule", "onecycle", "--pct_start", "0.2", "--ema_decay", "0.98",
        "--num_train_epochs", str(args.epochs),
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", "250",
        "--dataloader_num_workers", "0", "--dataloader_pin_memory", "false",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "20",
        "--do_train", "true", "--do_eval", "false",
        "--output_dir", args.output_dir, "--report_to", "none", "--seed", str(args.seed), "--use_cpu", "true",
    ]
    if args.data_dir:
        argv += ["--data_dir", args.data_dir]
    if dataset_options(args):
        argv += ["--dataset_options", json.dumps(dataset_options(args))]
    if args.text_encoder:
        argv += ["--text_encoder", args.text_encoder]
    train_script.main(argv)


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


def evaluate(args, model) -> dict:
    """ZSL and GZSL figures of ``model`` (trained on the seen names) with chance from the same images."""
    from hf_mlcls.data import apply_transforms, load_multilabel_dataset, transforms_from_image_processor
    from hf_mlcls.data.nuswide_zsl import zero_shot_splits
    from hf_mlcls.metrics import compute_zsl

    splits = zero_shot_splits(load_multilabel_dataset(args.dataset, args.data_dir, **dataset_options(args)), args.unseen)
    eval_tf = transforms_from_image_processor(model.build_image_processor(), train=False)
    results = {}
    rng = np.random.default_rng(args.seed)
    keys = ["mAP"] + [f"{m}_top{k}" for k in (1, 3, 5) for m in ("P", "R", "F1")]
    for setting in ("zsl", "gzsl"):
        all_names = splits[setting].features["labels"].feature.names
        names = class_names(args, all_names)  # GZSL: the 30 "colour shape" names, not the single words
        model.set_label_names(names)  # the model's own text encoder (config.text_encoder)
        logits, targets = score(model, apply_transforms(splits[setting], eval_transform=eval_tf))
        targets = targets[:, [all_names.index(n) for n in names]]
        ours = compute_zsl(logits, targets, top_k=(1, 3, 5))  # the papers' k = 3, 5; k = 1 for few unseen labels
        draws = [compute_zsl(rng.random(targets.shape), targets, top_k=(1, 3, 5)) for _ in range(args.chance_draws)]
        chance = {k: (float(np.mean([d[k] for d in draws])), float(np.std([d[k] for d in draws]))) for k in keys}
        results[setting] = {
            "labels": names,
            "num_images": int(targets.shape[0]),
            **{k: float(ours[k]) for k in keys},
            "AP_per_class": {n: float(a) for n, a in zip(names, ours["AP_per_class"])},
            "positives_per_class": {n: int(p) for n, p in zip(names, targets.sum(0))},
            "chance": {k: {"mean": m, "std": s} for k, (m, s) in chance.items()},
        }
    return results


#: unseen shapes names with no word in common (the Space test types these)
PROBES = ("blue circle", "purple triangle", "yellow square", "orange star")


@torch.inference_mode()
def probe_single_shapes(args, model) -> dict | None:
    """With PROBES as the label set: on how many validation scenes holding exactly one shape, of a PROBES class,
    does that class score highest? (What the Space's Zero-shot tab shows for these four typed names.)"""
    if args.dataset != "shapes" or not set(PROBES) <= set(args.unseen):
        return None
    from PIL import Image

    from hf_mlcls.data.shapes import generate_shapes_dataset

    folder = generate_shapes_dataset(args.data_dir, **dataset_options(args))
    with open(os.path.join(folder, "annotations", "instances_val2017.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    names = {c["id"]: c["name"] for c in data["categories"]}
    kept = set(class_names(args, list(names.values())))  # not the single words
    per_image: dict[int, list[str]] = {}
    for ann in data["annotations"]:
        if names[ann["category_id"]] in kept:
            per_image.setdefault(ann["image_id"], []).append(names[ann["category_id"]])
    processor = model.build_image_processor()
    model.set_label_names(list(PROBES))
    hits, total = 0, 0
    for image in data["images"]:
        labels = per_image.get(image["id"], [])
        if len(labels) != 1 or labels[0] not in PROBES:
            continue
        with Image.open(os.path.join(folder, "val2017", image["file_name"])) as img:
            pixels = processor(images=[img.convert("RGB")], return_tensors="pt")["pixel_values"]
        hits += int(PROBES[int(model(pixel_values=pixels).logits[0].argmax())] == labels[0])
        total += 1
    return {"names": list(PROBES), "scenes": total, "right_name_first": hits, "chance": total / len(PROBES)}


def main(argv=None) -> dict:
    args = parse(argv)
    started, cpu0, load0 = time.perf_counter(), cpu_seconds(), os.getloadavg()
    torch.manual_seed(args.seed)
    if not args.eval_only:
        train(args)
    train_wall, train_cpu = time.perf_counter() - started, cpu_seconds() - cpu0

    from transformers import AutoModelForImageClassification

    import hf_mlcls  # noqa: F401  (registers the model type)

    model = AutoModelForImageClassification.from_pretrained(args.output_dir).eval()
    seen = [model.config.id2label[i] for i in range(model.config.num_labels)]
    leaked = sorted(set(seen) & set(args.unseen))
    if leaked:  # a model trained with an unseen name would make the ZSL figures meaningless
        raise SystemExit(f"zero_shot_demo.py: the model in {args.output_dir} was trained with the unseen name(s) {leaked}")
    results = evaluate(args, model)
    probe = probe_single_shapes(args, model)
    trained = not args.eval_only
    report = {
        "command": "python examples/zero_shot_demo.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": args.dataset,
        "seen": seen,
        "unseen": args.unseen,
        "text_encoder": model.config.text_encoder,
        "epochs": args.epochs,
        "word_labels": args.word_labels if args.dataset == "shapes" else None,
        "data_seed": args.data_seed,
        "image_size": args.image_size,
        "num_train": args.num_train,
        "query_noise_std": model.config.query_noise_std,
        "query_extra": model.config.query_extra,
        "train_wall_seconds": round(train_wall, 1) if trained else None,
        "train_cpu_seconds": round(train_cpu, 1) if trained else None,  # user + sys of this process
        "total_wall_seconds": round(time.perf_counter() - started, 1),
        "total_cpu_seconds": round(cpu_seconds() - cpu0, 1),
        "load_average_1min": {"start": round(load0[0], 2), "end": round(os.getloadavg()[0], 2)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        + ("CUDA" if torch.cuda.is_available() else "no GPU"),
        "results": results,
        "single_shape_probe": probe,
    }
    with open(os.path.join(args.output_dir, "zero_shot_demo.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)

    cores = os.cpu_count() or 1
    took = "" if not trained else (
        f" for {args.epochs} epochs: {train_wall / 60:.1f} min wall, {train_cpu / 60:.1f} min CPU "
        f"(~{train_cpu / 60 / cores:.1f} min on {cores} idle cores); load {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"\nzero-shot {args.dataset}: trained on {len(seen)} names{took}; unseen: {', '.join(args.unseen)}")
    print(f"{'setting':<6} {'labels':>6} {'images':>6} {'metric':>7} {'model':>7} {'chance (random scores)':>24}")
    for setting, r in results.items():
        c = r["chance"]
        for key in ("mAP", "F1_top1", "F1_top3", "F1_top5"):
            print(f"{setting.upper():<6} {len(r['labels']):>6} {r['num_images']:>6} {key:>7} {r[key]:>7.2f} "
                  f"{c[key]['mean']:>15.2f} ± {c[key]['std']:<5.2f}")
    print("unseen AP: " + ", ".join(f"{n} {results['zsl']['AP_per_class'][n]:.2f}" for n in args.unseen))
    seen_classes = class_names(args, seen)
    print("seen AP (GZSL): " + ", ".join(f"{n} {results['gzsl']['AP_per_class'][n]:.2f}" for n in seen_classes))
    if probe:
        print(f"label set {', '.join(probe['names'])}: the right name first on {probe['right_name_first']} of "
              f"{probe['scenes']} single-shape validation scenes (chance {probe['chance']:.1f})")
    return report


if __name__ == "__main__":
    from hf_mlcls.cli import run_user_command

    sys.exit(run_user_command("zero_shot_demo.py", lambda: main() and 0))
