"""The JSON reports examples/train.py writes under ``<output_dir>/eval/`` for the saved model.

`metrics.json` is what the model card renders (see docs/hub.md); `single_label_metrics.json` and
`zero_shot_metrics.json` hold top-1/top-5 and ZSL/GZSL figures, which the card's format has no place for.
Each is written to a temporary file and renamed into place, so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os

from ..paths import atomic_path

#: Trainer timings and the loss: reported by `Trainer.evaluate`, but not metrics of the model
NOT_METRICS = ("loss", "runtime", "samples_per_second", "steps_per_second", "model_preparation_time")


def metric_values(metrics: dict, prefix: str = "eval_") -> dict[str, float]:
    """The raw model's metrics under ``prefix`` (the EMA's ``<prefix>ema_*`` and timings left out), prefix removed."""
    return {
        k[len(prefix):]: float(v) for k, v in metrics.items()
        if k.startswith(prefix) and not k.startswith(prefix + "ema_") and k[len(prefix):] not in NOT_METRICS
    }


def write_report(output_dir: str, name: str, report: dict) -> str:
    """Write ``report`` as ``<output_dir>/eval/<name>`` atomically; returns its path."""
    folder = os.path.join(output_dir, "eval")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    return path


def _header(model: str, data_args, num_samples: int) -> dict:
    return {"model": model, "dataset": data_args.dataset, "split": data_args.eval_split, "num_samples": num_samples}


def write_eval_json(output_dir: str, model: str, data_args, num_samples: int, metrics: dict) -> str:
    """`eval/metrics.json`, the evaluation the model card renders from; per-class AP comes from evaluate.py."""
    report = {**_header(model, data_args, num_samples), "metrics": metric_values(metrics), "per_class_AP": {}}
    return write_report(output_dir, "metrics.json", report)


def write_single_label_json(output_dir: str, model: str, data_args, num_samples: int, metrics: dict) -> str:
    """`eval/single_label_metrics.json`: top-1/top-5 of the saved model."""
    report = {**_header(model, data_args, num_samples), "metrics": metric_values(metrics)}
    return write_report(output_dir, "single_label_metrics.json", report)


def write_zero_shot_json(output_dir: str, model: str, data_args, text_encoder, eval_sets: dict, label_sets: dict,
                         metrics: dict) -> str:
    """`eval/zero_shot_metrics.json`: ZSL / GZSL metrics of the saved model, one entry per evaluated label set."""
    report = {"model": model, "dataset": data_args.dataset, "text_encoder": text_encoder, "settings": {}}
    for split, ds in eval_sets.items():
        report["settings"][split] = {
            "num_samples": len(ds),
            "labels": label_sets[split].names,
            "metrics": metric_values(metrics, f"eval_{split}_"),
        }
    return write_report(output_dir, "zero_shot_metrics.json", report)
