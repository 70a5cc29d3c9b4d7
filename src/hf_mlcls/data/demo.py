"""A built-in multi-label set made offline in seconds: 2×2 mosaics of scikit-learn's
handwritten digits (10 classes, 1-4 digits per image) written in COCO format, so it
is read by the real COCO loader. Small CNNs learn it to a high mAP in minutes on a CPU.

Train and validation mosaics draw their digits from disjoint halves of the scikit-learn
digit images, so validation measures generalisation to unseen handwriting.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import PIL.Image

from .coco import load_coco
from .core import DatasetLayoutError, write_folder_atomically

__all__ = ["DEMO_CLASSES", "default_demo_dir", "generate_demo_dataset", "load_demo"]

DEMO_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_FORMAT = "hf_mlcls-demo"
_VERSION = 1
#: share of the 1,797 scikit-learn digits whose handwriting is used for train mosaics
_TRAIN_DIGIT_SHARE = 0.75


def default_demo_dir() -> str:
    """``$HF_MLCLS_CACHE/demo``, by default ``~/.cache/hf_mlcls/demo``."""
    base = os.environ.get("HF_MLCLS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_mlcls")
    return os.path.join(base, "demo")


def _params(num_train, num_validation, seed, image_size, max_digits) -> dict:
    return {
        "num_train": int(num_train),
        "num_validation": int(num_validation),
        "seed": int(seed),
        "image_size": int(image_size),
        "max_digits": int(max_digits),
    }


def _read_manifest(folder: str) -> Optional[dict]:
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _FORMAT else None


def _is_current(folder: str, params: dict) -> bool:
    m = _read_manifest(folder)
    return m is not None and m.get("version") == _VERSION and m.get("params") == params


def _render_split(folder, split, count, pool, digits, targets, rng, size, max_digits, first_id):
    tile = size // 2
    os.makedirs(os.path.join(folder, split))
    images, annotations = [], []
    ann_id = first_id * 10
    for n in range(count):
        image_id = first_id + n
        # dark, coloured, noisy background; bright digits of a random colour each
        background = rng.uniform(0, 90, size=3)
        canvas = np.broadcast_to(background, (size, size, 3)).astype(np.float64).copy()
        k = int(rng.integers(1, max_digits + 1))
        for cell in rng.choice(4, size=k, replace=False).tolist():
            sample = int(pool[rng.integers(len(pool))])
            side = int(rng.integers(int(tile * 0.7), tile - 1))
            glyph = PIL.Image.fromarray((digits[sample] * (255.0 / 16.0)).astype(np.uint8))
            alpha = np.asarray(glyph.resize((side, side), PIL.Image.BILINEAR), dtype=np.float64)[..., None] / 255.0
            colour = rng.uniform(150, 255, size=3)
            x = (cell % 2) * tile + int(rng.integers(0, tile - side + 1))
            y = (cell // 2) * tile + int(rng.integers(0, tile - side + 1))
            region = canvas[y:y + side, x:x + side]
            canvas[y:y + side, x:x + side] = region * (1 - alpha) + colour * alpha
            ann_id += 1
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": int(targets[sample]) + 1,
                "bbox": [x, y, side, side], "area": side * side, "iscrowd": 0,
            })
        canvas += rng.normal(0, 12, size=canvas.shape)
        name = f"{image_id:012d}.jpg"
        PIL.Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(os.path.join(folder, split, name), quality=92)
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
    categories = [{"id": i + 1, "name": c, "supercategory": "digit"} for i, c in enumerate(DEMO_CLASSES)]
    with open(os.path.join(folder, "annotations", f"instances_{split}.json"), "w", encoding="utf-8") as fh:
        json.dump({"info": {"description": "hf_mlcls demo: 2x2 mosaics of scikit-learn digits"},
                   "images": images, "annotations": annotations, "categories": categories}, fh)


def generate_demo_dataset(
    data_dir: Optional[str] = None,
    *,
    num_train: int = 2000,
    num_validation: int = 500,
    seed: int = 0,
    image_size: int = 64,
    max_digits: int = 4,
    overwrite: bool = False,
) -> str:
    """Write the demo set in COCO layout (``annotations/instances_{train,val}2017.json``,
    ``train2017/``, ``val2017/``, ``manifest.json``) and return its folder.

    Nothing is written when ``manifest.json`` already records the same parameters.
    The set is built in a temporary sibling folder and renamed into place, so a crash
    never leaves a half-written dataset; a folder holding something else (no demo
    manifest) is never replaced.
    """
    if image_size < 32 or image_size % 2:
        raise ValueError(f"image_size must be an even number >= 32, got {image_size}")
    if not 1 <= max_digits <= 4:
        raise ValueError(f"max_digits must be in 1..4, got {max_digits}")
    if num_train < 1 or num_validation < 1:
        raise ValueError("num_train and num_validation must be positive")
    folder = os.path.abspath(data_dir or default_demo_dir())
    params = _params(num_train, num_validation, seed, image_size, max_digits)
    if not overwrite and _is_current(folder, params):
        return folder
    if os.path.isdir(folder) and os.listdir(folder) and _read_manifest(folder) is None:
        raise DatasetLayoutError(
            f"demo: {folder} exists and is not a demo dataset (no manifest.json); refusing to replace it. "
            "Pass another data_dir or empty that folder."
        )
    images, target = load_digit_images()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(target))
    cut = int(len(order) * _TRAIN_DIGIT_SHARE)
    pools = {"train2017": order[:cut], "val2017": order[cut:]}

    def build(tmp: str) -> None:
        os.makedirs(os.path.join(tmp, "annotations"))
        _render_split(tmp, "train2017", num_train, pools["train2017"], images, target,
                      np.random.default_rng([seed, 1]), image_size, max_digits, first_id=1)
        _render_split(tmp, "val2017", num_validation, pools["val2017"], images, target,
                      np.random.default_rng([seed, 2]), image_size, max_digits, first_id=num_train + 1)
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump({"format": _FORMAT, "version": _VERSION, "params": params, "classes": list(DEMO_CLASSES)}, fh, indent=1)

    write_folder_atomically(folder, build, lambda f: _is_current(f, params))
    return folder


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 handwritten digits the demo draws from: ``images`` (float64, 0..16) and ``target``.

    They are the digits scikit-learn bundles (``sklearn.datasets.load_digits``: the test part of the UCI
    "Optical Recognition of Handwritten Digits" set, CC BY 4.0), stored as ``digits.npz`` beside this file
    so the demo needs no scikit-learn; a test checks they are equal to scikit-learn's.
    """
    with np.load(os.path.join(os.path.dirname(__file__), "digits.npz"), allow_pickle=False) as data:
        return data["images"].astype(np.float64), data["target"].astype(np.int64)


def load_demo(
    data_dir: Optional[str] = None,
    *,
    num_train: int = 2000,
    num_validation: int = 500,
    seed: int = 0,
    image_size: int = 64,
    max_digits: int = 4,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
) -> datasets.DatasetDict:
    """Generate the demo set when needed (see :func:`generate_demo_dataset`) and load it
    with the COCO loader: ``train`` / ``validation``, classes ``zero`` .. ``nine``."""
    folder = generate_demo_dataset(data_dir, num_train=num_train, num_validation=num_validation, seed=seed,
                                   image_size=image_size, max_digits=max_digits)
    return load_coco(folder, year=2017, splits=splits, verify_images=verify_images, strict=strict, dataset_name="demo")
