"""Multi-label image classification with Query2Label and ML-Decoder: the Gradio Space.

Run it from a checkout (`python spaces/app.py`) or as a deployed Space (`hf-mlcls deploy-space`).

Settings (environment variables):
    HF_MLCLS_MODELS        comma-separated Hub ids or local model folders to offer (first = default);
                           otherwise `models.txt` beside this file, otherwise DEFAULT_MODELS.
    HF_MLCLS_SPACE_TMP     parent folder of the app's temporary folder (default: the system's).
    HF_MLCLS_MAX_UPLOAD_MB largest upload accepted, in MB (default 10).
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   where to listen (Gradio's own variables).

Everything the app writes (Gradio's upload cache, downloads) lives in one temporary folder that is
removed at exit. Errors are shown in the page without file-system paths; the app keeps serving.
"""

from __future__ import annotations

import atexit
import csv
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"

# Our published models (converted official checkpoints). HF_MLCLS_MODELS or models.txt replace the list.
DEFAULT_MODELS = [
    "hf-mlcls/q2l-tresnetl-448-coco",
    "hf-mlcls/mldecoder-tresnetl-448-coco",
    "hf-mlcls/mldecoder-tresnetm-224-coco",
    "hf-mlcls/mldecoder-tresnetm-zsl-224-nuswide",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_UPLOAD_MB = float(os.environ.get("HF_MLCLS_MAX_UPLOAD_MB", "10"))
MAX_IMAGES = 8  # images classified per request
MAX_SIDE = 1024  # larger images are downscaled before anything else happens
DISPLAY_SIDE = 640  # attention overlays and previews
MAX_ZERO_SHOT_LABELS = 50
MAX_LOADED_MODELS = 2
# Decompression-bomb guard: PIL refuses images above twice this and warns above it; we refuse both.
Image.MAX_IMAGE_PIXELS = 50_000_000

# One temporary folder for everything this process writes (Gradio's cache included).
TMP_ROOT = Path(tempfile.mkdtemp(prefix="hf_mlcls_space_", dir=os.environ.get("HF_MLCLS_SPACE_TMP") or None))
os.environ["GRADIO_TEMP_DIR"] = str(TMP_ROOT / "gradio")
atexit.register(shutil.rmtree, TMP_ROOT, ignore_errors=True)

import gradio as gr  # noqa: E402  (after GRADIO_TEMP_DIR is set)
import torch  # noqa: E402

try:  # in a checkout, or deployed with the package beside app.py / installed from PyPI
    import hf_mlcls  # noqa: F401  (registers Query2Label and ML-Decoder with the Auto classes)

    HAVE_PACKAGE = True
except ImportError:  # the model repositories ship their own code
    HAVE_PACKAGE = False

from transformers import AutoImageProcessor, AutoModelForImageClassification  # noqa: E402


class UserFacingError(Exception):
    """A message for the page; never contains a file-system path."""


# ----------------------------------------------------------------------------- text helpers

_PATH_RE = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:]+){2,}[\\/]?")


def scrub(text: str) -> str:
    """Remove file-system paths (and the temporary folder) from a message."""
    text = str(text).replace(str(TMP_ROOT), "…").replace(str(APP_DIR), "…")
    return _PATH_RE.sub("…", text)


def safe_name(path_or_name: str) -> str:
    """The file's own name (never its folder), printable and short."""
    name = re.split(r"[\\/]", str(path_or_name))[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return (name[:60] + "…") if len(name) > 61 else (name or "image")


def message(kind: str, text: str) -> str:
    icon = {"error": "⚠", "info": "ℹ", "ok": "✓"}[kind]  # plain symbols: every font has them
    return f"{icon} {text}"


# ----------------------------------------------------------------------------- models


def model_sources() -> "OrderedDict[str, str]":
    """Display name -> source (Hub id or local folder). Local folders are shown by their name only."""
    raw = os.environ.get("HF_MLCLS_MODELS", "").strip()
    if raw:
        entries = [e.strip() for e in raw.split(",") if e.strip()]
    elif (APP_DIR / "models.txt").is_file():
        entries = [e.strip() for e in (APP_DIR / "models.txt").read_text().splitlines() if e.strip()]
    else:
        entries = list(DEFAULT_MODELS)
    sources: OrderedDict[str, str] = OrderedDict()
    for entry in entries:
        is_local = os.path.isdir(entry) or entry.startswith((".", "/", "~"))
        name = f"{safe_name(entry.rstrip('/'))} (local)" if is_local else entry
        base, n = name, 2
        while name in sources:
            name, n = f"{base} #{n}", n + 1
        sources[name] = os.path.abspath(os.path.expanduser(entry)) if is_local else entry
    return sources


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    processor: object
    family: str  # "query2label" or "ml_decoder"
    lock: threading.RLock

    @property
    def config(self):
        return self.model.config

    @property
    def labels(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]

    @property
    def zero_shot(self) -> bool:
        return bool(getattr(self.config, "zero_shot", False))

    @property
    def group_size(self) -> int:
        """Labels per query: 1 for Query2Label and zero-shot ML-Decoder, ceil(C/K) for ML-Decoder."""
        if self.family != "ml_decoder" or self.zero_shot:
            return 1
        return getattr(self.model.classifier, "group_size", None) or math.ceil(
            self.config.num_labels / self.config.num_queries
        )

    def describe(self) -> str:
        c = self.config
        family = "Query2Label" if self.family == "query2label" else "ML-Decoder"
        extra = ""
        if self.family == "ml_decoder":
            extra = " zero-shot," if self.zero_shot else f" {c.num_queries} group queries ({self.group_size} labels each),"
        return f"**{self.name}**: {family},{extra} {c.num_labels} labels, backbone `{c.backbone}`, {c.image_size} px"


class ModelStore:
    """Loads models on first use and keeps the most recent few in memory.

    A model loads under its own lock, so a slow first load (a large download) holds up only the
    requests for that model; the others are served meanwhile.
    """

    def __init__(self, sources: "OrderedDict[str, str]", capacity: int = MAX_LOADED_MODELS):
        self.sources = sources
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # guards the two dicts only, never held while loading
        self._loading: dict[str, threading.Lock] = {}

    def _cached(self, name: str) -> LoadedModel | None:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            return None

    def get(self, name: str) -> LoadedModel:
        if name not in self.sources:
            raise UserFacingError("Unknown model: pick one from the list.")
        loaded = self._cached(name)
        if loaded is not None:
            return loaded
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load per model at a time
            loaded = self._cached(name)  # loaded by the request we waited for
            if loaded is not None:
                return loaded
            loaded = self._load(name, self.sources[name])
            with self._lock:
                self._models[name] = loaded
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            return loaded

    @staticmethod
    def _load(name: str, source: str) -> LoadedModel:
        if os.path.isabs(source) and not os.path.isdir(source):
            raise UserFacingError(f"Could not load model **{name}**: its folder does not exist. Pick another model.")
        try:
            model = AutoModelForImageClassification.from_pretrained(source, trust_remote_code=not HAVE_PACKAGE)
            processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=not HAVE_PACKAGE)
        except Exception as err:  # anything: missing, offline, corrupt weights, wrong format
            detail = scrub(str(err).strip().splitlines()[0] if str(err).strip() else "")[:200]
            raise UserFacingError(
                f"Could not load model **{name}** ({type(err).__name__}{': ' + detail if detail else ''}). "
                "Pick another model."
            ) from None
        family = getattr(model.config, "model_type", "")
        if family not in ("query2label", "ml_decoder"):
            raise UserFacingError(f"**{name}** is a `{family}` model, not a Query2Label or ML-Decoder one.")
        return LoadedModel(name, model.eval(), processor, family, threading.RLock())


# ----------------------------------------------------------------------------- images


def load_image(path: str | None, name: str | None = None) -> Image.Image:
    """Open an uploaded image safely: type, size and pixel-count limits; RGB; at most MAX_SIDE px."""
    name = safe_name(name or path or "image")
    if not path:
        raise UserFacingError("No image was uploaded.")
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise UserFacingError(f"“{name}” is not an image file (accepted: {', '.join(IMAGE_SUFFIXES)}).")
    try:
        size = os.path.getsize(path)
    except OSError:
        raise UserFacingError(f"“{name}” could not be read; upload it again.") from None
    if size > MAX_UPLOAD_MB * 1024 * 1024:
        raise UserFacingError(f"“{name}” is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_MB:g} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at reduced size when possible
                img.seek(0)
                img.load()
                image = ImageOps.exif_transpose(img)
                image = _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserFacingError(
            f"“{name}” is too large to open safely (limit {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)."
        ) from None
    except UnidentifiedImageError:
        raise UserFacingError(f"“{name}” is not an image this app can read (or it is corrupt).") from None
    except Exception:  # truncated or corrupt data, unsupported modes
        raise UserFacingError(f"“{name}” looks damaged or truncated and could not be decoded.") from None
    if min(width, height) < 1:
        raise UserFacingError(f"“{name}” has no pixels.")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def _to_rgb(img: Image.Image) -> Image.Image:
    if HAVE_PACKAGE:  # the models' own decoding policy: the pixels `hf-mlcls predict` and the pipeline see
        from hf_mlcls.models.image_processing_multilabel import to_rgb

        return to_rgb(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(img, dtype=np.float32)
        top = float(array.max()) or 1.0
        img = Image.fromarray(np.clip(array / top * 255, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def _heat_colors(values: np.ndarray) -> np.ndarray:
    """A perceptual dark-blue -> teal -> yellow colour map (viridis-like), values in [0, 1]."""
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)
    positions = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(values, positions, anchors[:, c]) for c in range(3)], axis=-1)


def attention_overlay(image: Image.Image, grid: np.ndarray) -> Image.Image:
    """Upsample an (h, w) attention map over the image and blend it in."""
    shown = image.copy()
    shown.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    grid = np.asarray(grid, dtype=np.float32)
    grid = (grid - grid.min()) / (float(grid.max() - grid.min()) or 1.0)
    heat = np.asarray(Image.fromarray(grid, mode="F").resize(shown.size, Image.Resampling.BICUBIC))
    heat = np.clip(heat, 0, 1)[..., None]
    base = np.asarray(shown, dtype=np.float32)
    alpha = 0.15 + 0.6 * heat
    blended = base * (1 - alpha) + _heat_colors(heat[..., 0]) * alpha
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))


# ----------------------------------------------------------------------------- inference


@torch.inference_mode()
def run_model(loaded: LoadedModel, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and last-layer cross-attention maps (N, Q, h, w)."""
    with loaded.lock:
        if loaded.zero_shot and _has_no_label_set(loaded):
            raise UserFacingError(
                f"**{loaded.name}** is a zero-shot model without a label set: use the **Zero-shot** tab "
                "and type the labels you want."
            )
        inputs = loaded.processor(images=images, return_tensors="pt")
        try:
            out = loaded.model(pixel_values=inputs["pixel_values"], output_attentions=True)
        except ValueError as err:
            raise UserFacingError(f"The model could not process these images: {scrub(err)}") from None
        scores = torch.sigmoid(out.logits.float()).numpy()
        maps = out.cross_attentions[-1].float().numpy()
    return scores, maps


def _has_no_label_set(loaded: LoadedModel) -> bool:
    embeddings = getattr(getattr(loaded.model, "model", None), "label_embeddings", None)
    return embeddings is not None and bool(torch.isnan(embeddings).any())


# ----------------------------------------------------------------------------- session results


def _empty_state() -> dict:
    return {"model": None, "labels": [], "names": [], "images": [], "scores": [], "maps": [], "group_size": 1,
            "family": None}


def _results_rows(state: dict, threshold: float) -> list[dict]:
    rows = []
    for name, scores in zip(state["names"], state["scores"]):
        order = np.argsort(-np.asarray(scores), kind="stable")
        for rank, j in enumerate(order, start=1):
            rows.append({"image": name, "rank": rank, "label": state["labels"][j], "score": round(float(scores[j]), 4),
                         "predicted": bool(scores[j] >= threshold)})
    return rows


def _prune_downloads(max_age_s: float = 600) -> None:
    """Gradio serves copies from its own cache, so our files can go after a while."""
    root = TMP_ROOT / "downloads"
    if not root.is_dir():
        return
    cutoff = time.time() - max_age_s
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def image_file(image: Image.Image, name: str = "image") -> str:
    """A display image as a file of its own (under the pruned downloads folder), for Gradio to serve.

    Gradio caches a returned PIL image by writing it in place at a path named by its content, so two
    requests that show the same picture rewrite one file while it is being sent (the client gets an
    empty body: 3 of 96 requests with 8 clients on one example). A file path is copied into its cache
    atomically instead.
    """
    _prune_downloads()
    folder = TMP_ROOT / "downloads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / f"{name}.webp"
    image.save(path, format="WEBP")
    return str(path)


def write_downloads(state: dict, threshold: float, top_k: int) -> tuple[str | None, str | None]:
    """CSV (every label of every image) and JSON (per image: predicted labels, top-k, all scores)."""
    if not state["scores"]:
        return None, None
    _prune_downloads()
    folder = TMP_ROOT / "downloads" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    csv_path, json_path = folder / "hf_mlcls_results.csv", folder / "hf_mlcls_results.json"
    rows = _results_rows(state, threshold)
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "rank", "label", "score", "predicted"])
        writer.writeheader()
        writer.writerows(rows)
    images = []
    for name, scores in zip(state["names"], state["scores"]):
        order = np.argsort(-np.asarray(scores), kind="stable")
        images.append({
            "image": name,
            "predicted": [state["labels"][j] for j in order if scores[j] >= threshold],
            "top_k": [{"label": state["labels"][j], "score": round(float(scores[j]), 4)} for j in order[:top_k]],
            "scores": {state["labels"][j]: round(float(scores[j]), 4) for j in range(len(scores))},
        })
    payload = {"model": state["model"], "threshold": threshold, "top_k": top_k, "images": images}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    return str(csv_path), str(json_path)


def _image_choices(state: dict) -> list[tuple[str, int]]:
    return [(f"{i + 1}. {name}", i) for i, name in enumerate(state["names"])]


def _label_choices(state: dict, index: int) -> list[tuple[str, int]]:
    scores = np.asarray(state["scores"][index])
    order = np.argsort(-scores, kind="stable")
    return [(f"{state['labels'][j]} ({scores[j]:.2f})", int(j)) for j in order]


def render_scores(state: dict, index: int | None, threshold: float, top_k: int):
    """Label bars, predicted-labels line, gallery, table and downloads for the current state."""
    if not state["scores"]:
        return {}, "", [], None, None, None
    index = int(index) if index is not None and 0 <= int(index) < len(state["scores"]) else 0
    top_k = max(1, int(top_k))
    scores = np.asarray(state["scores"][index])
    order = np.argsort(-scores, kind="stable")
    bars = {state["labels"][j]: float(scores[j]) for j in order[:top_k]}
    predicted = [state["labels"][j] for j in order if scores[j] >= threshold]
    name = state["names"][index]
    if predicted:
        line = f"**{name}**: {len(predicted)} label(s) at score ≥ {threshold:.2f}: " + ", ".join(
            f"**{p}**" for p in predicted
        )
    else:
        line = f"**{name}**: no label reaches {threshold:.2f}; lower the threshold to see weaker guesses."
    gallery = []
    for image, img_name, img_scores in zip(state["images"], state["names"], state["scores"]):
        top = [state["labels"][j] for j in np.argsort(-np.asarray(img_scores), kind="stable") if img_scores[j] >= threshold]
        gallery.append((image_file(image, "thumbnail"), f"{img_name}: {', '.join(top[:4]) or '—'}"))
    import pandas as pd

    table = pd.DataFrame(
        [r for r in _results_rows(state, threshold) if r["rank"] <= top_k],
        columns=["image", "rank", "label", "score", "predicted"],
    )
    csv_file, json_file = write_downloads(state, threshold, top_k)
    return bars, line, gallery, table, csv_file, json_file


def render_attention(state: dict, index: int | None, label: int | None):
    """The cross-attention map of the chosen label's query over the chosen image, and a caption."""
    if not state["scores"]:
        return None, "Classify an image first."
    index = int(index) if index is not None and 0 <= int(index) < len(state["scores"]) else 0
    scores = np.asarray(state["scores"][index])
    if label is None or not 0 <= int(label) < len(scores):
        label = int(np.argmax(scores))
    label = int(label)
    maps = state["maps"][index]
    g = state["group_size"]
    query = label // g
    name = state["labels"][label]
    if state["family"] == "query2label" or g == 1:
        caption = (f"Where the query of **{name}** looked (score {scores[label]:.2f}): cross-attention of the last "
                   "decoder layer, averaged over heads. Bright = more attention.")
    else:
        members = state["labels"][query * g: query * g + g]
        others = [m for m in members if m != name]
        caption = (f"ML-Decoder answers with {len(maps)} group queries of {g} labels each. **{name}** "
                   f"(score {scores[label]:.2f}) is answered by query {query + 1}, which also answers for "
                   f"{', '.join(others) or 'no other label'}; the map is that query's cross-attention.")
    return image_file(attention_overlay(state["images"][index], maps[query]), "attention"), caption


# ----------------------------------------------------------------------------- event handlers


def _collect_files(files) -> list[tuple[str, str]]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    out = []
    for f in files:
        path = f if isinstance(f, str) else getattr(f, "name", None) or (f.get("path") if isinstance(f, dict) else None)
        if path:
            out.append((path, safe_name(getattr(f, "orig_name", None) or path)))
    return out


def load_model_info(model_name: str):
    try:
        loaded = STORE.get(model_name)
    except UserFacingError as err:
        return message("error", str(err))
    note = ""
    if loaded.zero_shot:
        note = " Zero-shot model: type your own labels in the **Zero-shot** tab."
    return message("ok", loaded.describe() + "." + note)


def classify(files, model_name, threshold, top_k):
    """Run the model on the uploaded images and render every view."""
    state = _empty_state()
    notes = []
    try:
        entries = _collect_files(files)
        if not entries:
            raise UserFacingError("Upload one or more images (or pick an example).")
        if len(entries) > MAX_IMAGES:
            notes.append(f"Only the first {MAX_IMAGES} of {len(entries)} images were classified.")
            entries = entries[:MAX_IMAGES]
        images, names = [], []
        for path, name in entries:
            try:
                images.append(load_image(path, name))
                names.append(name)
            except UserFacingError as err:
                notes.append(str(err))
        if not images:
            raise UserFacingError(" ".join(notes))
        loaded = STORE.get(model_name)
        scores, maps = run_model(loaded, images)
    except UserFacingError as err:
        return _outputs(state, message("error", str(err)), threshold, top_k)
    except Exception as err:  # never let a request take the app down
        return _outputs(state, message("error", f"Something went wrong ({type(err).__name__}); try again."),
                        threshold, top_k)
    for image in images:  # the session keeps display-size copies only
        image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    state.update(model=loaded.name, labels=loaded.labels, names=names, images=images,
                 scores=[s.tolist() for s in scores], maps=list(maps), group_size=loaded.group_size,
                 family=loaded.family)
    status = message("ok", f"Classified {len(images)} image(s) with {loaded.name}.")
    if notes:
        status += "\n\n" + message("error", " ".join(notes))
    return _outputs(state, status, threshold, top_k)


def reclassify(files, model_name, threshold, top_k):
    """After a model change: classify the current uploads again, or leave the page as it is."""
    if not _collect_files(files):
        return tuple(gr.skip() for _ in range(12))
    return classify(files, model_name, threshold, top_k)


def classify_example(example_index, model_name, threshold, top_k):
    examples = example_files()
    try:
        index = int(example_index)
        path = examples[index]
    except (TypeError, ValueError, IndexError):
        return _outputs(_empty_state(), message("error", "Unknown example."), threshold, top_k)
    return classify([str(path)], model_name, threshold, top_k)


def _outputs(state, status, threshold, top_k):
    bars, line, gallery, table, csv_file, json_file = render_scores(state, 0, threshold, top_k)
    if state["scores"]:
        overlay, caption = render_attention(state, 0, None)
        labels = _label_choices(state, 0)
        image_dd = gr.update(choices=_image_choices(state), value=0)
        label_dd = gr.update(choices=labels, value=labels[0][1])
    else:
        overlay, caption = None, ""
        image_dd = gr.update(choices=[], value=None)
        label_dd = gr.update(choices=[], value=None)
    return (state, status, image_dd, bars, line, gallery, label_dd, overlay, caption, table, csv_file, json_file)


def update_scores(state, index, threshold, top_k):
    """Threshold, top-k or image changed: re-render from the stored scores (no model run)."""
    state = state or _empty_state()
    bars, line, gallery, table, csv_file, json_file = render_scores(state, index, threshold, top_k)
    return bars, line, gallery, table, csv_file, json_file


def change_image(state, index, label, threshold, top_k):
    state = state or _empty_state()
    if not state["scores"]:
        return {}, "", gr.update(), None, ""
    index = int(index) if index is not None and 0 <= int(index) < len(state["scores"]) else 0
    bars, line, *_ = render_scores(state, index, threshold, top_k)
    choices = _label_choices(state, index)
    label = int(label) if label is not None else choices[0][1]
    overlay, caption = render_attention(state, index, label)
    return bars, line, gr.update(choices=choices, value=label), overlay, caption


def show_attention(state, index, label):
    return render_attention(state or _empty_state(), index, label)


def parse_label_names(text: str) -> list[str]:
    names, seen = [], set()
    for part in re.split(r"[,\n;]", text or ""):
        name = " ".join(part.split())[:60]
        if name and name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


def label_encoder(loaded: LoadedModel, names: list[str]):
    """The model's text encoder (``config.text_encoder``) and, for word vectors, the typed words it lacks.

    Raises a `UserFacingError` naming the encoder (never its folder) when it is not available here, and
    naming the labels when a word-vector encoder knows none of their words.
    """
    import importlib

    model = loaded.model
    # the model's own package: hf_mlcls.models, or the remote-code module a Hub folder ships
    text_encoding = importlib.import_module(type(model).__module__.rsplit(".", 1)[0] + ".text_encoding")
    spec = getattr(model.config, "text_encoder", None)
    try:
        encoder = text_encoding.get_text_encoder(spec)
    except (OSError, ValueError) as err:
        raise UserFacingError(
            f"**{loaded.name}** embeds label names with `{safe_name(spec or 'all-MiniLM-L6-v2')}`, which this Space "
            f"cannot load ({type(err).__name__}), so it cannot score typed names here."
        ) from None
    if not hasattr(encoder, "check_words"):  # sentence encoders embed any text
        return encoder, {}
    try:
        unknown, lost = encoder.check_words(names)
    except (OSError, ValueError) as err:
        raise UserFacingError(f"**{loaded.name}**: its word vectors `{safe_name(spec)}` cannot be read: {scrub(err)[:200]}") from None
    if lost:
        raise UserFacingError(
            f"**{loaded.name}** scores labels with word vectors, and none of the words of "
            + ", ".join(f"“{n}”" for n in lost[:10]) + " has one. Try other words (single common English words work best)."
        )
    return encoder, unknown


def zero_shot(file, labels_text, model_name, threshold):
    """Score typed label names with a zero-shot ML-Decoder model (needs `set_label_names`)."""
    try:
        names = parse_label_names(labels_text)
        if not names:
            raise UserFacingError("Type one or more label names, separated by commas or new lines.")
        if len(names) > MAX_ZERO_SHOT_LABELS:
            raise UserFacingError(f"At most {MAX_ZERO_SHOT_LABELS} labels at once, got {len(names)}.")
        entries = _collect_files(file)
        if not entries:
            raise UserFacingError("Upload an image (or pick an example above).")
        image = load_image(*entries[0])
        loaded = STORE.get(model_name)
        if not loaded.zero_shot:
            family = "Query2Label" if loaded.family == "query2label" else "ML-Decoder"
            raise UserFacingError(
                f"**{loaded.name}** is a {family} model with a fixed set of {loaded.config.num_labels} labels. "
                "Zero-shot needs an ML-Decoder zero-shot model (`zero_shot=True`): pick one in the model list."
            )
        if not hasattr(loaded.model, "set_label_names"):
            raise UserFacingError(
                f"**{loaded.name}** is zero-shot, but its code cannot turn label names into queries "
                "(`set_label_names` is missing): install a newer `hf_mlcls` with text-encoder support."
            )
        with loaded.lock:
            model = loaded.model
            encoder, unknown = label_encoder(loaded, names)
            old = model.model.label_embeddings.detach().clone()
            old_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
            old_encoder = getattr(model.config, "text_encoder", None)
            try:
                model.set_label_names(names, encoder)  # the model's own text encoder (config.text_encoder)
                names = [model.config.id2label[i] for i in range(model.config.num_labels)]  # the model's order
                with torch.inference_mode():
                    inputs = loaded.processor(images=[image], return_tensors="pt")
                    out = model(pixel_values=inputs["pixel_values"], output_attentions=True)
                scores = torch.sigmoid(out.logits.float())[0].numpy()
                maps = out.cross_attentions[-1][0].float().numpy()
            finally:  # leave the model as the Classify tab knows it
                model.set_label_embeddings(old, old_names)
                model.config.text_encoder = old_encoder
    except UserFacingError as err:
        return {}, message("error", str(err)), None
    except Exception as err:
        return {}, message("error", f"Zero-shot scoring failed ({type(err).__name__}: {scrub(err)[:200]})."), None
    best = int(np.argmax(scores))
    predicted = [names[j] for j in np.argsort(-scores) if scores[j] >= threshold]
    line = (f"Scores for {len(names)} label(s). At ≥ {threshold:.2f}: " + (", ".join(f"**{p}**" for p in predicted)
            or "none") + f". The map shows the query of **{names[best]}**, the best-scoring label.")
    if unknown:
        line += " Words the model's word vectors do not know (each such label is the average of its other words): " + "; ".join(
            f"“{label}”: {', '.join(words)}" for label, words in list(unknown.items())[:10]) + "."
    return ({n: float(s) for n, s in zip(names, scores)}, message("ok", line),
            image_file(attention_overlay(image, maps[best]), "attention"))


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


# ----------------------------------------------------------------------------- the page

CSS = """
#status { min-height: 2.2em; }
.caption { font-size: 0.95em; opacity: 0.9; }
footer { display: none !important; }
"""

INTRO = """
# Multi-label image classification
**Query2Label** and **ML-Decoder** on Hugging Face transformers. Upload photos (or pick an example), set the threshold,
and see every label the model finds, with its own probability, and *where it looked* for each one.
"""

ABOUT = f"""
### How it works
- **Scores** are independent sigmoid probabilities, one per label: several labels can be present at once,
  and they do not sum to one. Labels at or above the **threshold** are the predictions; **top-k** limits the
  bars and the table to each image's k best labels.
- **Where the model looked** shows the decoder's cross-attention over the image. Query2Label has one query
  per label. ML-Decoder has a fixed number of *group* queries, each answering for several labels, so the map
  belongs to the chosen label's group.
- **Zero-shot** ML-Decoder models turn label names into queries, so you can type labels the model never saw.
  Expect much weaker scores than for trained labels.

### Limits
Up to {MAX_IMAGES} images per request, {MAX_UPLOAD_MB:g} MB per file, {Image.MAX_IMAGE_PIXELS // 1_000_000}
megapixels per image (bigger images are refused; large ones are downscaled to {MAX_SIDE} px). Uploads are kept
only in a temporary folder that is deleted when the app stops.

Models: load your own with `HF_MLCLS_MODELS=owner/name,/path/to/folder python app.py`.
"""


def build_demo(sources: "OrderedDict[str, str] | None" = None) -> gr.Blocks:
    global STORE
    STORE = ModelStore(sources or model_sources())
    names = list(STORE.sources)
    examples = example_files()
    with gr.Blocks(title="Multi-label image classification — Query2Label & ML-Decoder",
                   delete_cache=(1800, 3600), analytics_enabled=False) as demo:
        # Per-session results; dropped an hour after their last change so memory stays bounded.
        state = gr.State(_empty_state(), time_to_live=3600)
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model_dd = gr.Dropdown(names, value=names[0] if names else None, label="Model", scale=2,
                                   elem_id="model")
            model_info = gr.Markdown(elem_id="model-info")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    with gr.Column(scale=1):
                        files = gr.File(label="Images (one or several)", file_count="multiple",
                                        file_types=list(IMAGE_SUFFIXES), elem_id="upload", height=150)
                        example_set = gr.Dataset(components=[gr.Image(visible=False)], samples=[[str(p)] for p in examples],
                                                 type="index", layout="gallery", label="…or pick an example",
                                                 elem_id="examples", samples_per_page=6)
                        with gr.Row():
                            threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Threshold",
                                                  elem_id="threshold")
                            top_k = gr.Slider(1, 50, value=5, step=1, label="Top-k", elem_id="topk")
                        run_btn = gr.Button("Classify", variant="primary", elem_id="classify-btn")
                        status = gr.Markdown(elem_id="status")
                    with gr.Column(scale=1):
                        image_dd = gr.Dropdown([], label="Image", elem_id="image-choice")
                        predicted = gr.Markdown(elem_id="predicted")
                        bars = gr.Label(label="Label scores", elem_id="scores", show_heading=False)
                with gr.Row():
                    with gr.Column(scale=1):
                        label_dd = gr.Dropdown([], label="Where did the model look for…", elem_id="label-choice")
                        caption = gr.Markdown(elem_classes=["caption"], elem_id="attention-caption")
                    with gr.Column(scale=1):
                        overlay = gr.Image(label="Cross-attention map", type="pil", interactive=False,
                                           elem_id="attention", height=360)
                with gr.Accordion("All results and downloads", open=False):
                    gallery = gr.Gallery(label="Images", columns=4, height="auto", object_fit="contain", preview=False,
                                         fit_columns=False,
                                         elem_id="gallery")
                    table = gr.Dataframe(headers=["image", "rank", "label", "score", "predicted"],
                                         interactive=False, elem_id="table")
                    with gr.Row():
                        csv_file = gr.File(label="CSV", interactive=False, elem_id="csv")
                        json_file = gr.File(label="JSON", interactive=False, elem_id="json")
            with gr.Tab("Zero-shot", id="zero-shot"):
                gr.Markdown("Type any label names for an **ML-Decoder zero-shot** model (pick one in the model "
                            "list). Each name becomes a query; scores are independent probabilities.")
                with gr.Row():
                    with gr.Column():
                        zs_file = gr.File(label="Image", file_count="single", file_types=list(IMAGE_SUFFIXES),
                                          elem_id="zs-upload", height=120)
                        zs_labels = gr.Textbox(label="Labels", placeholder="dog, frisbee, grass, beach umbrella",
                                               lines=2, elem_id="zs-labels")
                        zs_threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Threshold")
                        zs_btn = gr.Button("Score these labels", variant="primary")
                        zs_status = gr.Markdown(elem_id="zs-status")
                    with gr.Column():
                        zs_bars = gr.Label(label="Scores", elem_id="zs-scores", show_heading=False)
                        zs_overlay = gr.Image(label="Attention of the best label", type="pil",
                                              interactive=False, height=300)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)

        classify_outputs = [state, status, image_dd, bars, predicted, gallery, label_dd, overlay, caption, table,
                            csv_file, json_file]
        score_outputs = [bars, predicted, gallery, table, csv_file, json_file]

        model_dd.change(load_model_info, [model_dd], [model_info], api_name="load_model").then(
            reclassify, [files, model_dd, threshold, top_k], classify_outputs, api_visibility="private"
        )
        demo.load(load_model_info, [model_dd], [model_info], api_visibility="private")
        run_btn.click(classify, [files, model_dd, threshold, top_k], classify_outputs, api_name="classify")
        files.upload(classify, [files, model_dd, threshold, top_k], classify_outputs, api_visibility="private")
        example_set.click(classify_example, [example_set, model_dd, threshold, top_k], classify_outputs,
                          api_name="classify_example")
        threshold.change(update_scores, [state, image_dd, threshold, top_k], score_outputs,
                         api_name="update_scores", trigger_mode="always_last", show_progress="hidden")
        top_k.change(update_scores, [state, image_dd, threshold, top_k], score_outputs,
                     api_visibility="private", trigger_mode="always_last", show_progress="hidden")
        image_dd.input(change_image, [state, image_dd, label_dd, threshold, top_k],
                       [bars, predicted, label_dd, overlay, caption], api_name="change_image")
        label_dd.input(show_attention, [state, image_dd, label_dd], [overlay, caption], api_name="show_attention")
        zs_btn.click(zero_shot, [zs_file, zs_labels, model_dd, zs_threshold], [zs_bars, zs_status, zs_overlay],
                     api_name="zero_shot")
    return demo


STORE: ModelStore | None = None


def main() -> None:
    # A stopped Space or a test sends SIGTERM: exit normally so the temporary folder is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo = build_demo()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(
        max_file_size=f"{MAX_UPLOAD_MB:g}mb",
        allowed_paths=[str(EXAMPLES_DIR), str(TMP_ROOT)],
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="amber"),
        css=CSS,
        show_error=False,
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
