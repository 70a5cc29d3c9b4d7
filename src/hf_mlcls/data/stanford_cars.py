"""Stanford Cars (196 classes, 8,144 train / 8,041 test images) from the devkit's MAT files.

Layout as torchvision's ``StanfordCars`` expects it (its ``stanford_cars/`` folder):
class names from ``devkit/cars_meta.mat`` (``class_names``), train labels from
``devkit/cars_train_annos.mat`` and test labels from ``cars_test_annos_withlabels.mat``
(each an ``annotations`` struct array with ``fname`` and a 1-based ``class``). The MAT
files are read by :mod:`hf_mlcls.data.matfile` (no scipy).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence, Union

import datasets
import numpy as np

from .core import DatasetLayoutError, check_class_names, merge_dict, require_file, resolve_image_path, resolve_splits
from .matfile import read_mat
from .single_label import build_single_label_dataset

__all__ = ["load_stanford_cars"]

LAYOUT = """  <data_dir>/                      (torchvision's stanford_cars/ folder, or its parent)
    devkit/cars_meta.mat             class_names: 196 names
    devkit/cars_train_annos.mat      annotations: fname, class (1-based), bbox_*
    cars_test_annos_withlabels.mat   the same for the test images
    cars_train/<fname>   cars_test/<fname>"""

_SPLITS = {
    "train": ("devkit/cars_train_annos.mat", "cars_train"),
    "test": ("cars_test_annos_withlabels.mat", "cars_test"),
}


def _find_root(data_dir: str) -> str:
    for candidate in (data_dir, os.path.join(data_dir, "stanford_cars")):
        if os.path.isdir(os.path.join(candidate, "devkit")):
            return candidate
    return data_dir


def _scalar(value, where: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.number):
        raise DatasetLayoutError(f"{where}: expected one number, got {value!r}")
    number = array.reshape(-1)[0]
    if number != int(number):
        raise DatasetLayoutError(f"{where}: expected a whole number, got {number}")
    return int(number)


def _class_names(path: str) -> list[str]:
    variables = read_mat(path)
    if "class_names" not in variables:
        raise DatasetLayoutError(f"{path}: no variable 'class_names' (it has {sorted(variables)})")
    names = variables["class_names"]
    flat = list(np.asarray(names, dtype=object).reshape(-1, order="F"))
    bad = [i for i, n in enumerate(flat) if not isinstance(n, str) or not n.strip()]
    if bad:
        raise DatasetLayoutError(f"{path}: class_names{{{bad[0] + 1}}} is not a name ({flat[bad[0]]!r})")
    return check_class_names([n.strip() for n in flat], path)


def _annotations(path: str, root: str, image_dir: str, num_classes: int) -> tuple[list[str], list[int], list[str]]:
    variables = read_mat(path)
    if "annotations" not in variables:
        raise DatasetLayoutError(f"{path}: no variable 'annotations' (it has {sorted(variables)})")
    records = np.asarray(variables["annotations"], dtype=object).reshape(-1, order="F")
    paths, labels, refs, seen = [], [], [], {}
    for i, record in enumerate(records, 1):
        where = f"{path}: annotations({i})"
        if not isinstance(record, dict):
            raise DatasetLayoutError(f"{where}: not a struct")
        missing = [f for f in ("fname", "class") if f not in record]
        if missing:
            raise DatasetLayoutError(
                f"{where}: no field {missing[0]!r} (fields: {sorted(record)}); the test set's labels are in "
                "cars_test_annos_withlabels.mat, not cars_test_annos.mat"
            )
        name = record["fname"]
        if not isinstance(name, str):
            raise DatasetLayoutError(f"{where}.fname: expected a file name, got {name!r}")
        if name in seen:
            raise DatasetLayoutError(f"{where}: image {name!r} listed twice (first in annotations({seen[name]}))")
        seen[name] = i
        label = _scalar(record["class"], f"{where}.class")
        if not 1 <= label <= num_classes:
            raise DatasetLayoutError(f"{where}.class: {label} is outside 1..{num_classes} (the classes of cars_meta.mat)")
        paths.append(resolve_image_path(root, image_dir, name, where))
        labels.append(label - 1)
        refs.append(f"annotations({i})")
    return paths, labels, refs


def load_stanford_cars(
    data_dir: str,
    *,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    dataset_name: str = "stanford-cars",
) -> datasets.DatasetDict:
    """``train`` (8,144 images) and ``validation`` (the 8,041 labelled test images, on which
    the 96.41% top-1 is reported), 196 classes in ``cars_meta.mat`` order (class ``k`` of
    the annotations is index ``k - 1``). ``splits={"validation": "test"}`` is the default
    mapping; the layout's split names are ``train`` and ``test``."""
    root = _find_root(os.path.abspath(os.path.expanduser(str(data_dir))))
    require_file(root, dataset_name, LAYOUT, directory=True)
    class_names = _class_names(require_file(os.path.join(root, "devkit", "cars_meta.mat"), dataset_name, LAYOUT))
    chosen, _ = resolve_splits(
        splits, {"train": "train", "validation": "test"}, ("train", "validation"),
        lambda native: native in _SPLITS and os.path.isfile(os.path.join(root, _SPLITS[native][0])),
    )
    out = {}
    for name, native in chosen.items():
        if native not in _SPLITS:
            raise ValueError(f"{dataset_name}: unknown layout split {native!r}; the layout has {sorted(_SPLITS)}")
        annos, folder = _SPLITS[native]
        annos = require_file(os.path.join(root, annos), f"{dataset_name} split {name!r}", LAYOUT)
        image_dir = require_file(os.path.join(root, folder), f"{dataset_name} split {name!r}", LAYOUT, directory=True)
        paths, labels, refs = _annotations(annos, root, image_dir, len(class_names))
        out[name] = build_single_label_dataset(
            labels, class_names, dataset_name=dataset_name, split=name, paths=paths, refs=refs, source=annos,
            verify_images=verify_images, strict=strict, num_threads=num_threads, options={"splits": dict(chosen)},
        )
    return merge_dict(out)
