"""The example images that fit a model: each example lists what it shows (`files/examples/examples.json`).

A model is offered the examples that show at least one of its labels (digit mosaics for the demo model,
drawn scenes for a model with labels such as car or tree); when none does (e.g. a zero-shot model), the
manifest's ``default`` list.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["examples_for", "read_manifest"]


def read_manifest(folder: str | Path) -> dict:
    """``{"images": {file name: [labels it shows]}, "default": [file names]}``; empty when missing or unreadable."""
    try:
        data = json.loads((Path(folder) / "examples.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"images": {}, "default": []}
    images = {str(k): [str(x) for x in v] for k, v in dict(data.get("images", {})).items() if isinstance(v, list)}
    return {"images": images, "default": [str(x) for x in data.get("default", [])]}


def examples_for(labels: list[str] | None, folder: str | Path) -> list[Path]:
    """The examples in `folder` that show one of `labels` (case-blind), in manifest order; else the defaults."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    wanted = {str(label).lower() for label in labels or []}
    fit = [name for name, shows in manifest["images"].items() if wanted & {s.lower() for s in shows}]
    names = fit or manifest["default"]
    return [folder / name for name in names if (folder / name).is_file() and "/" not in name and "\\" not in name]
