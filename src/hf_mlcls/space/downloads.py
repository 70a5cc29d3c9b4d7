"""Files the page serves: results as CSV and JSON, and display images as files of their own.

Everything goes under ``<tmp_root>/downloads/<random>/``; folders older than ten minutes are removed
(Gradio serves copies from its own cache).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CSV_COLUMNS", "image_file", "prune_downloads", "write_downloads"]

from ..inference import CSV_COLUMNS, write_predictions  # the CSV of `hf-mlcls predict -o results.csv`, one writer


def prune_downloads(tmp_root: Path, max_age_s: float = 600) -> None:
    """Gradio serves copies from its own cache, so our files can go after a while."""
    root = Path(tmp_root) / "downloads"
    if not root.is_dir():
        return
    cutoff = time.time() - max_age_s
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _new_folder(tmp_root: Path) -> Path:
    prune_downloads(tmp_root)
    folder = Path(tmp_root) / "downloads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def image_file(tmp_root: Path, image: Image.Image, name: str = "image") -> str:
    """A display image as a file of its own (under the pruned downloads folder), for Gradio to serve.

    Gradio caches a returned PIL image by writing it in place at a path named by its content, so two
    requests that show the same picture rewrite one file while it is being sent (the client gets an
    empty body: 3 of 96 requests with 8 clients on one example). A file path is copied into its cache
    atomically instead.
    """
    path = _new_folder(tmp_root) / f"{name}.webp"
    image.save(path, format="WEBP")
    return str(path)


def write_downloads(tmp_root: Path, state: dict, threshold: float, top_k: int) -> tuple[str | None, str | None]:
    """CSV (the columns and rows of `hf-mlcls predict -o x.csv`) and JSON (per image: predicted labels,
    top-k, every score; plus model, threshold and top-k)."""
    if not state["scores"]:
        return None, None
    folder = _new_folder(tmp_root)
    csv_path, json_path = folder / "hf_mlcls_results.csv", folder / "hf_mlcls_results.json"
    images, rows = [], []
    for name, scores in zip(state["names"], state["scores"]):
        order = np.argsort(-np.asarray(scores), kind="stable")
        predicted = [j for j in order if scores[j] >= threshold]
        rows.append({"image": name, "labels": [{"label": state["labels"][j], "score": round(float(scores[j]), 6)} for j in predicted]})
        images.append({
            "image": name,
            "predicted": [state["labels"][j] for j in predicted],
            "top_k": [{"label": state["labels"][j], "score": round(float(scores[j]), 4)} for j in order[:top_k]],
            "scores": {state["labels"][j]: round(float(scores[j]), 4) for j in range(len(scores))},
        })
    write_predictions(rows, str(csv_path), "csv")
    payload = {"model": state["model"], "threshold": threshold, "top_k": top_k, "images": images}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return str(csv_path), str(json_path)
