"""The Space's settings, its one temporary folder, the model list, and messages without file-system paths."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

__all__ = [
    "DEMO_MODEL",
    "DISPLAY_SIDE",
    "IMAGE_SUFFIXES",
    "MAX_IMAGES",
    "MAX_LOADED_MODELS",
    "MAX_SIDE",
    "MAX_ZERO_SHOT_LABELS",
    "NO_MODEL_HINT",
    "UserFacingError",
    "make_tmp_root",
    "max_upload_mb",
    "message",
    "model_entries",
    "model_sources",
    "safe_name",
    "scrub",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_IMAGES = 8  # images classified per request
MAX_SIDE = 1024  # larger images are downscaled before anything else happens
DISPLAY_SIDE = 640  # longer side of attention overlays (small images are enlarged to it)
MAX_ZERO_SHOT_LABELS = 50
MAX_LOADED_MODELS = 2
# The folder `examples/train.py --config examples/configs/demo.yaml` trains into: offered when no model is named.
DEMO_MODEL = "outputs/demo"
NO_MODEL_HINT = (
    "No model to show: name one, e.g. `HF_MLCLS_MODELS=outputs/demo python spaces/app.py` "
    "(comma-separated local model folders or Hub ids; for a deployed Space, `hf-mlcls deploy-space --models`)."
)


class UserFacingError(Exception):
    """A message for the page; never contains a file-system path."""


def max_upload_mb() -> float:
    """`HF_MLCLS_MAX_UPLOAD_MB`, the largest accepted upload in MB (default 10)."""
    return float(os.environ.get("HF_MLCLS_MAX_UPLOAD_MB", "10"))


def make_tmp_root() -> Path:
    """One temporary folder (under `HF_MLCLS_SPACE_TMP` when set) for everything the app writes; removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="hf_mlcls_space_", dir=os.environ.get("HF_MLCLS_SPACE_TMP") or None))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


_PATH_RE = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:]+){2,}[\\/]?")


def scrub(text: str, *hidden: str | os.PathLike) -> str:
    """Remove file-system paths (and the `hidden` folders, e.g. the temporary one) from a message."""
    text = str(text)
    for folder in hidden:
        text = text.replace(str(folder), "…")
    return _PATH_RE.sub("…", text)


def safe_name(path_or_name: str) -> str:
    """The file's own name (never its folder), printable and short."""
    name = re.split(r"[\\/]", str(path_or_name))[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return (name[:60] + "…") if len(name) > 61 else (name or "image")


def message(kind: str, text: str) -> str:
    icon = {"error": "⚠", "info": "ℹ", "ok": "✓"}[kind]  # plain symbols: every font has them
    return f"{icon} {text}"


def model_entries(app_dir: str | os.PathLike) -> list[str]:
    """The models to offer: `HF_MLCLS_MODELS`, else `models.txt` beside the app, else `outputs/demo` when it
    holds a saved model (relative to the working folder), else none (the page then shows `NO_MODEL_HINT`)."""
    raw = os.environ.get("HF_MLCLS_MODELS", "").strip()
    if raw:
        return [e.strip() for e in raw.split(",") if e.strip()]
    listed = Path(app_dir) / "models.txt"
    if listed.is_file():
        return [e.strip() for e in listed.read_text(encoding="utf-8").splitlines() if e.strip()]
    if (Path(DEMO_MODEL) / "config.json").is_file():
        return [DEMO_MODEL]
    return []


def model_sources(entries: list[str]) -> "OrderedDict[str, str]":
    """Display name -> source (Hub id or local folder). Local folders are shown by their name only."""
    sources: OrderedDict[str, str] = OrderedDict()
    for entry in entries:
        is_local = os.path.isdir(entry) or entry.startswith((".", "/", "~")) or os.path.exists(entry)
        if not is_local and entry.count("/") > 1:
            is_local = True  # not an owner/name Hub id: a folder that does not exist (yet)
        name = f"{safe_name(entry.rstrip('/'))} (local)" if is_local else entry
        base, n = name, 2
        while name in sources:
            name, n = f"{base} #{n}", n + 1
        sources[name] = os.path.abspath(os.path.expanduser(entry)) if is_local else entry
    return sources
