"""A built-in zero-shot set made offline in seconds: scenes of coloured shapes whose class
names are compositions of two words a text encoder knows ("red circle", "blue star", ...).

6 colours x 5 shapes = 30 classes; each 64 px scene holds 1-3 shapes, one per quadrant, on a
noisy grey background, written in COCO layout and read by the real COCO loader (like the
digits demo). :data:`SHAPES_UNSEEN` is the default held-out set for zero-shot: 8 combinations
chosen so that every colour and every shape still appears in at least three seen classes, so
every word of an unseen name is a word the model was trained with, in other combinations.

Unlike digit names, these names say how the objects look, and the default text encoder
(all-MiniLM-L6-v2) places them almost additively: a least-squares fit of colour + shape
vectors leaves 2.5 % of the 30 embeddings' variance.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import PIL.Image
import PIL.ImageDraw

from .coco import load_coco
from .core import DatasetLayoutError, write_folder_atomically

__all__ = [
    "SHAPES_CLASSES",
    "SHAPES_COLOURS",
    "SHAPES_SHAPES",
    "SHAPES_UNSEEN",
    "SHAPES_WORDS",
    "default_shapes_dir",
    "generate_shapes_dataset",
    "load_shapes",
]

#: colour name -> RGB; far apart from each other and from the grey background
SHAPES_COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 190, 40),
    "blue": (40, 70, 230),
    "yellow": (235, 220, 30),
    "purple": (150, 40, 200),
    "orange": (245, 140, 20),
}
SHAPES_SHAPES = ("circle", "square", "triangle", "star", "cross")
SHAPES_CLASSES = tuple(f"{c} {s}" for c in SHAPES_COLOURS for s in SHAPES_SHAPES)
#: the held-out combinations of the zero-shot demo: each colour is unseen in at most 2 of its 5
#: shapes, each shape in at most 2 of its 6 colours
SHAPES_UNSEEN = (
    "red star", "red square", "green circle", "blue cross", "blue circle", "yellow square", "purple triangle",
    "orange star",
)
#: the single-word labels of ``word_labels=True``: each colour and each shape word on its own
SHAPES_WORDS = tuple(SHAPES_COLOURS) + SHAPES_SHAPES
_FORMAT = "hf_mlcls-shapes"
_VERSION = 1


def default_shapes_dir() -> str:
    """``$HF_MLCLS_CACHE/shapes``, by default ``~/.cache/hf_mlcls/shapes``."""
    base = os.environ.get("HF_MLCLS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_mlcls")
    return os.path.join(base, "shapes")


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


def _outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Polygon of a shape of "radius" r centred at (cx, cy), turned by angle (radians)."""
    if shape == "square":
        pts = [(math.cos(a), math.sin(a)) for a in (math.pi / 4 + k * math.pi / 2 for k in range(4))]
        pts = [(x * 0.8, y * 0.8) for x, y in pts]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))]
        pts = [(x, y + 0.15) for x, y in pts]
    elif shape == "star":
        pts = [((1.0 if k % 2 == 0 else 0.42) * math.cos(a), (1.0 if k % 2 == 0 else 0.42) * math.sin(a))
               for k, a in enumerate(-math.pi / 2 + k * math.pi / 5 for k in range(10))]
    elif shape == "cross":
        w = 0.32
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
        pts = [(x * 0.9, y * 0.9) for x, y in pts]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _render_split(folder, split, count, rng, size, max_shapes, first_id, word_labels=False):
    """Draw ``count`` scenes at 4x the size (then downsample: smooth edges) and their COCO annotations
    (with ``word_labels``, each shape is also annotated with its colour word and its shape word)."""
    classes = SHAPES_CLASSES + (SHAPES_WORDS if word_labels else ())
    scale = 4
    tile = size // 2
    os.makedirs(os.path.join(folder, split))
    colours = list(SHAPES_COLOURS)
    images, annotations = [], []
    ann_id = first_id * 10
    for n in range(count):
        image_id = first_id + n
        grey = float(rng.uniform(40, 150))
        canvas = PIL.Image.new("RGB", (size * scale, size * scale), (int(grey),) * 3)
        draw = PIL.ImageDraw.Draw(canvas)
        k = int(rng.integers(1, max_shapes + 1))
        for cell in rng.choice(4, size=k, replace=False).tolist():
            colour = colours[int(rng.integers(len(colours)))]
            shape = SHAPES_SHAPES[int(rng.integers(len(SHAPES_SHAPES)))]
            side = float(rng.uniform(0.6, 0.95) * tile)  # the shape's bounding square
            x = (cell % 2) * tile + float(rng.uniform(0, tile - side))
            y = (cell // 2) * tile + float(rng.uniform(0, tile - side))
            rgb = tuple(int(np.clip(v + rng.uniform(-20, 20), 0, 255)) for v in SHAPES_COLOURS[colour])
            cx, cy, r = (x + side / 2) * scale, (y + side / 2) * scale, side / 2 * scale
            if shape == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
            else:
                draw.polygon(_outline(shape, cx, cy, r, float(rng.uniform(-0.25, 0.25))), fill=rgb)
            # the words come after the rng draws, so word_labels changes no pixel
            for name in (f"{colour} {shape}",) + ((colour, shape) if word_labels else ()):
                ann_id += 1
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": classes.index(name) + 1,
                    "bbox": [round(x, 2), round(y, 2), round(side, 2), round(side, 2)], "area": round(side * side, 2),
                    "iscrowd": 0,
                })
        pixels = np.asarray(canvas.resize((size, size), PIL.Image.BOX), dtype=np.float64)
        pixels = pixels + rng.normal(0, 10, size=pixels.shape)
        name = f"{image_id:012d}.png"  # PNG: JPEG would blur the colours of small shapes into each other
        PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(os.path.join(folder, split, name))
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
    categories = [{"id": i + 1, "name": c, "supercategory": c.split()[1] if " " in c else "word"}
                  for i, c in enumerate(classes)]
    with open(os.path.join(folder, "annotations", f"instances_{split}.json"), "w", encoding="utf-8") as fh:
        json.dump({"info": {"description": "hf_mlcls shapes: coloured shapes with compositional names"},
                   "images": images, "annotations": annotations, "categories": categories}, fh)


def generate_shapes_dataset(
    data_dir: Optional[str] = None,
    *,
    num_train: int = 3000,
    num_validation: int = 600,
    seed: int = 0,
    image_size: int = 64,
    max_shapes: int = 3,
    word_labels: bool = False,
    overwrite: bool = False,
) -> str:
    """Write the shapes set in COCO layout (``annotations/instances_{train,val}2017.json``,
    ``train2017/``, ``val2017/``, ``manifest.json``) and return its folder.

    The same parameters always give the same files. Nothing is written when ``manifest.json``
    already records the same parameters; the set is built in a temporary sibling folder and
    renamed into place, and a folder holding something else (no shapes manifest) is never replaced.

    ``word_labels=True`` adds 11 classes after the 30 (:data:`SHAPES_WORDS`: ``red`` ... ``orange``,
    ``circle`` ... ``cross``): an image is also labelled with the colour word and the shape word of each
    shape it holds. The images are the same as without; only the annotations differ.
    """
    if image_size < 32 or image_size % 2:
        raise ValueError(f"image_size must be an even number >= 32, got {image_size}")
    if not 1 <= max_shapes <= 4:
        raise ValueError(f"max_shapes must be in 1..4, got {max_shapes}")
    if num_train < 1 or num_validation < 1:
        raise ValueError("num_train and num_validation must be positive")
    folder = os.path.abspath(data_dir or default_shapes_dir())
    params = {"num_train": int(num_train), "num_validation": int(num_validation), "seed": int(seed),
              "image_size": int(image_size), "max_shapes": int(max_shapes), "word_labels": bool(word_labels)}
    if not overwrite and _is_current(folder, params):
        return folder
    if os.path.isdir(folder) and os.listdir(folder) and _read_manifest(folder) is None:
        raise DatasetLayoutError(
            f"shapes: {folder} exists and is not a shapes dataset (no manifest.json); refusing to replace it. "
            "Pass another data_dir or empty that folder."
        )
    def build(tmp: str) -> None:
        os.makedirs(os.path.join(tmp, "annotations"))
        _render_split(tmp, "train2017", num_train, np.random.default_rng([seed, 1]), image_size, max_shapes, 1,
                      word_labels)
        _render_split(tmp, "val2017", num_validation, np.random.default_rng([seed, 2]), image_size, max_shapes,
                      num_train + 1, word_labels)
        classes = list(SHAPES_CLASSES) + (list(SHAPES_WORDS) if word_labels else [])
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump({"format": _FORMAT, "version": _VERSION, "params": params, "classes": classes,
                       "unseen": list(SHAPES_UNSEEN)}, fh, indent=1)

    write_folder_atomically(folder, build, lambda f: _is_current(f, params))
    return folder


def load_shapes(
    data_dir: Optional[str] = None,
    *,
    num_train: int = 3000,
    num_validation: int = 600,
    seed: int = 0,
    image_size: int = 64,
    max_shapes: int = 3,
    word_labels: bool = False,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
) -> datasets.DatasetDict:
    """Generate the shapes set when needed (see :func:`generate_shapes_dataset`) and load it with the
    COCO loader: ``train`` / ``validation``, the 30 classes of :data:`SHAPES_CLASSES` (then the 11 of
    :data:`SHAPES_WORDS` with ``word_labels=True``)."""
    folder = generate_shapes_dataset(data_dir, num_train=num_train, num_validation=num_validation, seed=seed,
                                     image_size=image_size, max_shapes=max_shapes, word_labels=word_labels)
    return load_coco(folder, year=2017, splits=splits, verify_images=verify_images, strict=strict,
                     dataset_name="shapes")
