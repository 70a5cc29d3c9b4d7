"""The evaluation JSON of `examples/evaluate.py`: read it and check its format (see docs/hub.md)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["EVAL_METRICS", "check_eval_results", "load_eval_results"]

# Metrics the evaluation JSON must carry (0-100 scale).
EVAL_METRICS = ("mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "OF1_top3")


def load_eval_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read the evaluation JSON of `examples/evaluate.py` and check its format (see docs/hub.md).

    Format: ``{"model": str, "dataset": str, "split": str, "num_samples": int,
    "metrics": {"mAP": float, "mAP_voc": float, "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3",
    "OF1_top3", ...}, "per_class_AP": {label: float}}`` with every number on a 0-100 scale.
    """
    path = Path(path)
    name = path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"evaluation file {name} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read evaluation file {name}: {err.__class__.__name__}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"evaluation file {name} is not valid JSON (line {err.lineno}: {err.msg})") from None
    return check_eval_results(data, source=name)


def check_eval_results(data: Any, source: str = "evaluation results") -> dict[str, Any]:
    """Validate an evaluation dict (see `load_eval_results`); returns it unchanged."""

    def fail(msg: str):
        raise UserError(f"{source}: {msg} (format: see docs/hub.md)")

    if not isinstance(data, dict):
        fail(f"expected a JSON object, got {type(data).__name__}")
    for key, kind in (("model", str), ("dataset", str), ("split", str), ("num_samples", int), ("metrics", dict)):
        if key not in data:
            fail(f"missing field {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            fail(f"field {key!r} must be {kind.__name__}, got {type(data[key]).__name__}")
    if data["num_samples"] < 1:
        fail(f"num_samples must be >= 1, got {data['num_samples']}")
    missing = [m for m in EVAL_METRICS if m not in data["metrics"]]
    if missing:
        fail(f"metrics lacks {', '.join(missing)}")
    for section in ("metrics", "per_class_AP"):
        values = data.get(section, {})
        if not isinstance(values, dict):
            fail(f"{section!r} must be an object of name -> number")
        for key, value in values.items():
            if value is None and section == "per_class_AP":
                continue  # a class without positives in the split: no AP (skipped, as the metrics do)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(f"{section}[{key!r}] must be a finite number, got {value!r}")
            if section == "metrics" and key.startswith("num_"):
                if value < 0:
                    fail(f"metrics[{key!r}] is a count and must be >= 0, got {value}")
            elif not -1e-6 <= value <= 100 + 1e-6:
                fail(f"{section}[{key!r}] = {value} is outside 0-100 (numbers are percentages)")
    return data
