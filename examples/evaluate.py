#!/usr/bin/env python
"""Evaluate a saved or Hub model on a dataset split.

    python examples/evaluate.py --model outputs/demo --dataset demo --split validation --output_dir outputs/demo/eval

Writes `metrics.json` (the format model cards render from, see docs/hub.md),
`per_class_ap.csv` and `evaluation.png` (per-class AP bars and the precision-recall
curves of the weakest classes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from hf_mlcls.data import load_multilabel_dataset
from hf_mlcls.inference import load_model, score_dataset
from hf_mlcls.metrics import compute


def precision_recall(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    known = targets >= 0
    s, t = scores[known], targets[known]
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(t[order] > 0)
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / max(tp[-1] if len(tp) else 0, 1)
    return precision, recall


def plot(path: str, names: list[str], ap: np.ndarray, scores: np.ndarray, targets: np.ndarray, weakest: int = 5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = ~np.isnan(ap)
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(14, max(4, 0.22 * valid.sum() + 1)), gridspec_kw={"width_ratios": [1.2, 1]})
    order = np.argsort(np.where(valid, ap, np.inf))
    shown = [i for i in order if valid[i]]
    bars.barh([names[i] for i in shown], [ap[i] for i in shown], color="#4c72b0")
    bars.set_xlabel("average precision (%)")
    bars.set_xlim(0, 100)
    bars.set_title(f"per-class AP (mAP {np.nanmean(ap):.2f})")
    bars.invert_yaxis()
    for i in shown[:weakest]:
        precision, recall = precision_recall(scores[:, i], targets[:, i])
        curves.plot(recall, precision, label=f"{names[i]} (AP {ap[i]:.1f})")
    curves.set_xlabel("recall")
    curves.set_ylabel("precision")
    curves.set_xlim(0, 1)
    curves.set_ylim(0, 1.02)
    curves.set_title(f"precision-recall, {min(weakest, len(shown))} weakest classes")
    curves.legend(loc="lower left")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved model folder or a Hub id")
    parser.add_argument("--dataset", default="demo", help="a name from hf_mlcls.data.list_datasets()")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--dataset_options", default=None, help="JSON object of loader options")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--output_dir", default=None, help="default: <model>/eval (or ./eval for a Hub id)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--quiet", action="store_true", help="no progress bars (also HF_MLCLS_QUIET=1, or CI set)")
    args = parser.parse_args(argv)
    if args.quiet:
        from hf_mlcls.progress import set_quiet

        set_quiet()

    if not args.model.strip():
        raise ValueError("--model is empty; give a saved model folder or a Hub id")
    try:
        options = json.loads(args.dataset_options) if args.dataset_options else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--dataset_options is not valid JSON ({err.msg} at column {err.colno}): {args.dataset_options!r}") from None
    if not isinstance(options, dict):
        raise ValueError(f"--dataset_options must be a JSON object like '{{\"key\": value}}', got {args.dataset_options!r}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise ValueError(f"--num_workers must be >= 0, got {args.num_workers}")
    if not 0 <= args.threshold <= 1:
        raise ValueError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.output_dir is not None:
        from hf_mlcls.paths import check_writable_folder

        check_writable_folder(args.output_dir, "--output_dir")  # before the model and the data are loaded
    from hf_mlcls.data.registry import dataset_spec

    dataset_spec(args.dataset)  # an unknown --dataset is one line before the model is loaded
    model = load_model(args.model, device=args.device)  # first: a wrong --model fails before the data is read
    dataset = load_multilabel_dataset(args.dataset, args.data_dir, **options)
    if args.split not in dataset:
        raise ValueError(f"split {args.split!r} not in dataset {args.dataset!r} (it has {list(dataset)})")
    split = dataset[args.split]
    names = split.features["labels"].feature.names
    model_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_names != list(names):
        raise ValueError(f"the model's {len(model_names)} labels differ from the dataset's {len(names)} classes")

    scores, targets = score_dataset(model, split, batch_size=args.batch_size, num_workers=args.num_workers)
    metrics = compute(scores, targets, threshold=args.threshold)
    ap = np.asarray(metrics["AP_per_class"], dtype=float)
    output_dir = args.output_dir or (os.path.join(args.model, "eval") if os.path.isdir(args.model) else "eval")
    os.makedirs(output_dir, exist_ok=True)
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating, np.integer))}
    report = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "num_samples": int(len(scores)),
        "metrics": scalars,
        "per_class_AP": {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, ap)},
    }
    write_atomic(os.path.join(output_dir, "metrics.json"), json.dumps(report, indent=2))
    rows = ["label,AP,positives"] + [f"{n},{'' if np.isnan(v) else f'{v:.4f}'},{int((targets[:, i] > 0).sum())}" for i, (n, v) in enumerate(zip(names, ap))]
    write_atomic(os.path.join(output_dir, "per_class_ap.csv"), "\n".join(rows) + "\n")
    plot(os.path.join(output_dir, "evaluation.png"), list(names), ap, scores, targets)
    print(
        f"{args.dataset}/{args.split}: {len(scores)} images | mAP {scalars['mAP']:.2f} | mAP_voc {scalars['mAP_voc']:.2f} "
        f"| CF1 {scalars['CF1']:.2f} | OF1 {scalars['OF1']:.2f} -> {output_dir}"
    )
    return report


if __name__ == "__main__":
    from hf_mlcls.cli import run_user_command

    sys.exit(run_user_command("evaluate.py", lambda: main() and 0))
