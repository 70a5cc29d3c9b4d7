"""Prediction and evaluation of a saved (or Hub) model, batched, shared by the CLI and the examples."""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import stat
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .data.images import open_rgb
from .progress import progress as show_progress
from .data.transforms import transforms_from_image_processor
from .errors import ImageOpenError, ModelLoadError
from .paths import atomic_path, nearest_existing

logger = logging.getLogger(__name__)

#: columns of the prediction CSV (`hf-mlcls predict -o x.csv`, the Space's download)
CSV_COLUMNS = ["image", "label", "score", "error"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _check_device(device: str) -> None:
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"device {device!r} is not a device torch knows (cpu, cuda, cuda:1, mps ...): {err}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available here; use --device cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use --device cpu")


def load_model(name_or_path: str, device: str | None = None, **kwargs):
    """A classification model from a saved folder or a Hub id, in eval mode, with its image processor.

    A folder or id that cannot be loaded (missing, offline, no weights file, a damaged or
    truncated weights file, a config that is not JSON) raises :class:`ModelLoadError`
    (an ``OSError``) naming it, with the cause in one line.
    """
    import hf_mlcls  # noqa: F401  (its import hook registers the model types with the Auto classes)
    from safetensors import SafetensorError
    from transformers import AutoModelForImageClassification

    if device is not None:
        _check_device(device)
    # "owner/name" is a Hub id unless such a folder exists; a path that can be no Hub id must exist
    looks_local = os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1 or (
        os.path.sep != "/" and os.path.sep in name_or_path
    )
    if looks_local and not os.path.exists(os.path.expanduser(name_or_path)):
        raise FileNotFoundError(f"model folder {name_or_path!r} does not exist")
    if os.path.isfile(name_or_path):
        raise ModelLoadError(f"model {name_or_path!r} is a file; give the folder save_pretrained wrote (or a Hub id)")
    _check_model_type(name_or_path)
    from .models.modeling_common import CheckpointWeightsError

    try:
        model = AutoModelForImageClassification.from_pretrained(name_or_path, **kwargs)
    except CheckpointWeightsError as err:  # a learned tensor missing, or not of the config's shape
        raise ModelLoadError(f"cannot load {' '.join(str(err).split())}") from err
    except pickle.UnpicklingError as err:  # a pytorch_model.bin that is more than tensors
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: refusing its pickle weights file, which would import or run code "
            "(only torch.load(weights_only=True) is used); if you trust its source, load it there and save_pretrained "
            "it again (safetensors)"
        ) from err
    except SafetensorError as err:
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: its weights file is damaged or truncated ({err}); "
            "save or download it again"
        ) from err
    except OSError as err:  # missing files, offline without a cached copy, config.json that is not JSON
        detail = " ".join(str(err).split())
        where = "" if os.path.exists(name_or_path) else "no folder of that name here, and as a Hub id: "
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {where}{detail[:400]}") from err
    except ValueError as err:  # a config field refused, or a model type no image-classification class takes
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {' '.join(str(err).split())[:400]}") from err
    if not hasattr(model, "build_image_processor"):
        raise ModelLoadError(
            f"model {name_or_path!r} is a {type(model).__name__}, not a Query2Label or ML-Decoder model"
        )
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval()


def _check_model_type(name_or_path: str) -> None:
    """A local folder whose config.json names another model type is refused before any weights are read."""
    config_path = os.path.join(name_or_path, "config.json")
    if not os.path.isfile(config_path):
        return  # a Hub id, or a folder without config.json (from_pretrained names what is missing)
    try:
        with open(config_path, encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
    except (OSError, ValueError, AttributeError):
        return  # not JSON: from_pretrained's own error names the file
    if model_type not in ("query2label", "ml_decoder"):
        raise ModelLoadError(
            f"cannot load model {name_or_path!r}: its config.json describes a {model_type!r} model, not a Query2Label "
            "or ML-Decoder one (model_type query2label or ml_decoder)"
        )


def _file_kind(mode: int) -> str | None:
    """What a file that is not a regular file is (None for a regular file): opening a named pipe or a
    device would block or read forever, so such paths are never opened."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


def find_images(inputs: Iterable[str]) -> list[str]:
    """Files as given, folders expanded (recursively, sorted) to the image files they hold.

    Only regular files are taken: a named pipe, socket or device among a folder's files is skipped with a
    warning naming it, and one given by name is refused (``ValueError``); neither is ever opened."""
    inputs = list(inputs)
    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in sorted(os.walk(item)):
                for name in sorted(files):
                    if not name.lower().endswith(IMAGE_EXTENSIONS):
                        continue
                    path = os.path.join(root, name)
                    try:
                        kind = _file_kind(os.stat(path).st_mode)
                    except OSError:
                        kind = "unreadable (a broken link?)"
                    if kind is None:
                        found.append(path)
                    else:
                        logger.warning("skipping %s: it is %s, not an image file", path, kind)
        elif os.path.exists(item):
            kind = _file_kind(os.stat(item).st_mode)
            if kind is not None:
                raise ValueError(f"{item!r} is {kind}, not an image file; give image files or folders of images")
            found.append(item)
        else:
            raise FileNotFoundError(f"no such image or folder: {item!r}")
    if not found:
        raise FileNotFoundError(f"no image files in {list(inputs)!r}")
    return found


def _scores(model, logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    if getattr(model.config, "problem_type", None) == "single_label_classification":
        return logits.softmax(-1).cpu()
    return logits.sigmoid().cpu()


def _forward_model(model, fast: bool):
    """The module that runs the forward: the model's fast CPU copy where it applies, else the model."""
    from .models.fast_cpu import fast_model  # the models package imports transformers: not at import time

    return fast_model(model, fast)


@torch.no_grad()
def predict_probabilities(model, images: Sequence, batch_size: int = 32, progress: bool = True, fast: bool = True) -> torch.Tensor:
    """Sigmoid scores (N, C) for PIL images or paths; images that cannot be read raise ImageOpenError.

    Pixels come from the model's image processor (``model.build_image_processor()``, the one
    ``pipeline`` and the Space use): decoded by its ``to_rgb``, resized and normalised. On the CPU the
    forward takes the fast inference path (:func:`hf_mlcls.models.fast_cpu.fast_model`; ``fast=False``
    or ``HF_MLCLS_FAST_CPU=0`` for the plain forward).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    processor = model.build_image_processor()
    device = next(model.parameters()).device
    forward = _forward_model(model, fast)
    outputs = []
    batches = range(0, len(images), batch_size)
    for start in show_progress(batches, desc="predicting", unit="batch") if progress else batches:
        # open_rgb names an unreadable file; it decodes with the processor's own to_rgb
        batch = torch.stack([processor.pixel_values(open_rgb(image)) for image in images[start : start + batch_size]])
        outputs.append(_scores(model, forward(batch.to(device)).logits))
    return torch.cat(outputs) if outputs else torch.zeros(0, model.config.num_labels)


def select_labels(scores: torch.Tensor, id2label: dict, threshold: float = 0.5, top_k: int | None = None) -> list[list[dict]]:
    """Per image: labels at or above ``threshold`` (or the ``top_k`` best), highest score first; equal scores in
    label order.

    No loop over labels: the chosen entries are found for all images at once (a threshold, or the ``top_k``-th
    highest score of each image from ``torch.topk``), only they are sorted, and only they become dicts.
    """
    scores = torch.as_tensor(scores).detach().float().cpu()
    if scores.ndim != 2:
        raise ValueError(f"scores must be (num_images, num_labels), got shape {tuple(scores.shape)}")
    n, c = scores.shape
    s = scores.numpy()
    k = min(int(top_k), c) if top_k else 0
    if k:
        threshold = torch.topk(scores, k, dim=1).values[:, -1:].numpy()  # each image's k-th highest score
    rows, labels = np.nonzero(s >= threshold)
    values = s[rows, labels]
    order = np.lexsort((labels, -values, rows))  # by image, then score descending, then label
    rows, labels, values = rows[order], labels[order], values[order]
    if k:  # ties at the k-th score can let more than k through: keep each image's first k
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
        keep = rank < k
        rows, labels, values = rows[keep], labels[keep], values[keep]
    out: list[list[dict]] = [[] for _ in range(n)]
    for r, i, v in zip(rows.tolist(), labels.tolist(), values.tolist()):
        out[r].append({"label": id2label[i], "score": round(v, 6)})
    return out


@torch.no_grad()
def predict_files(
    model, paths: Sequence[str], threshold: float = 0.5, top_k: int | None = None, batch_size: int = 32, progress: bool = True,
    fast: bool = True,
) -> list[dict]:
    """Predictions for image files; a file that cannot be read gets an ``error`` instead of labels.

    Each file is decoded once, by the transform, a batch at a time; the forward as in
    :func:`predict_probabilities` (``fast``).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    processor = model.build_image_processor()
    device = next(model.parameters()).device
    id2label = model.config.id2label
    forward = _forward_model(model, fast)
    results = []
    batches = range(0, len(paths), batch_size)
    for start in show_progress(batches, desc="predicting", unit="batch") if progress else batches:
        tensors, readable, batch_results = [], [], []
        for path in paths[start : start + batch_size]:
            try:
                tensors.append(processor.pixel_values(open_rgb(path)))  # its one decode (open_rgb names a bad file)
                readable.append(len(batch_results))
                batch_results.append({"image": path, "labels": []})
            except ImageOpenError as err:
                logger.warning("skipping %s: %s", path, err)
                batch_results.append({"image": path, "labels": [], "error": str(err)})
        if tensors:
            scores = _scores(model, forward(torch.stack(tensors).to(device)).logits)
            for at, labels in zip(readable, select_labels(scores, id2label, threshold, top_k)):
                batch_results[at]["labels"] = labels
        results.extend(batch_results)
    return results


def write_predictions(results: list[dict], output: str | None, fmt: str | None = None) -> str:
    """Write predictions as JSON or CSV; returns the text when ``output`` is None.

    CSV columns ``image,label,score,error``: one row per image and label; an image with no label over the
    threshold gets one row with empty label and score (so "no label" differs from "not processed"), and an
    image that could not be read one row with its error.
    """
    fmt = fmt or ("csv" if output and output.endswith(".csv") else "json")
    if fmt not in ("csv", "json"):
        raise ValueError(f"format must be 'csv' or 'json', got {fmt!r}")
    if fmt == "json":
        text = json.dumps(results, indent=2)
    else:
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            if result.get("error") or not result["labels"]:
                writer.writerow([result["image"], "", "", result.get("error") or ""])
            for item in result["labels"]:
                writer.writerow([result["image"], item["label"], item["score"], ""])
        text = buffer.getvalue()
    if output:
        check_output_file(output)
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)  # never a half-written file, and no temporary file left behind
    return text


def check_output_file(output: str, flag: str = "--output", inputs: Sequence[str] = ()) -> None:
    """Refuse, before any work, an output file path that cannot be written: an existing folder, a path under a
    file, a folder that cannot be created, or one of the ``inputs`` (it would be overwritten). Creates the
    missing folders above it (``ValueError`` naming ``flag`` when it cannot)."""
    if os.path.isdir(output):
        raise ValueError(f"{flag} {output!r} is a folder; name a file to write (e.g. {os.path.join(output, 'predictions.json')!r})")
    if os.path.exists(output) and not os.path.isfile(output):
        raise ValueError(f"{flag} {output!r} is {_file_kind(os.stat(output).st_mode)}, not a file to write")
    folder = os.path.dirname(os.path.abspath(output))
    above = nearest_existing(folder)
    if os.path.exists(above) and not os.path.isdir(above):
        raise ValueError(f"{flag} {output!r} lies under {above!r}, which is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag} {output!r}: cannot create its folder {folder!r}: {err.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {output!r}: no permission to write in {folder!r}")
    if os.path.isfile(output):
        for item in inputs:
            if os.path.exists(item) and os.path.samefile(item, output):
                raise ValueError(f"{flag} {output!r} is one of the input images; it would be overwritten")


@torch.no_grad()
def score_dataset(model, dataset, batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(scores, targets) of a `load_multilabel_dataset` split: sigmoid scores and multi-hot targets (-1 unknown).

    The images go through the eval transform of the model's image processor, which gives the processor's own
    ``pixel_values`` (and, unlike the processor, can run in DataLoader workers)."""
    from .data import MultiLabelCollator, apply_transforms

    transform = transforms_from_image_processor(model.build_image_processor(), train=False)
    loader = torch.utils.data.DataLoader(
        apply_transforms(dataset, eval_transform=transform),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=MultiLabelCollator(),
    )
    device = next(model.parameters()).device
    scores, targets = [], []
    for batch in show_progress(loader, desc="evaluating", unit="batch") if progress else loader:
        scores.append(model(batch["pixel_values"].to(device)).logits.float().sigmoid().cpu())
        targets.append(batch["labels"])
    return torch.cat(scores).numpy(), torch.cat(targets).numpy()
