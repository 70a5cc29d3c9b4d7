"""A class-per-folder tree (ImageNet's ``train/<wnid>/*.JPEG``, torchvision's
``ImageFolder``): one single-label split per top-level folder."""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import datasets

from .core import DatasetLayoutError, check_class_names, merge_dict, require_file, resolve_splits
from .single_label import build_single_label_dataset

__all__ = ["IMAGE_EXTENSIONS", "load_imagefolder"]

#: torchvision's ``IMG_EXTENSIONS`` (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

LAYOUT = """  <data_dir>/
    train/<class name>/<image>     (ImageNet: train/n01440764/n01440764_10026.JPEG)
    val/<class name>/<image>       (ImageNet's validation set sorted into class folders)
    test/<class name>/<image>      (optional)"""


def _scan_split(folder: str, split: str, class_index: Optional[dict[str, int]]) -> tuple[list[str], list[int], list[str], dict]:
    """Paths, labels and class folder names of one split. With ``class_index`` (the
    train split's classes), a folder that is not a known class is an error."""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetLayoutError(f"imagefolder: {folder} has no class folders.\nExpected layout:\n{LAYOUT}")
    if class_index is not None:
        unknown = [c for c in classes if c not in class_index]
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:20])
            raise DatasetLayoutError(
                f"imagefolder: {folder} has {len(unknown)} class folder(s) that the train split does not: {shown}"
            )
    paths, labels = [], []
    ignored = 0
    empty = []
    for name in classes:
        found = 0
        for root, dirs, files in os.walk(os.path.join(folder, name), followlinks=True):
            dirs.sort()
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, f))
                    labels.append(name)
                    found += 1
                else:
                    ignored += 1
        if not found:
            empty.append(name)
    report = {"ignored_files": ignored, "empty_class_folders": empty[:50], "num_empty_class_folders": len(empty)}
    return paths, labels, classes, report


def load_imagefolder(
    data_dir: str,
    *,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    dataset_name: str = "imagefolder",
) -> datasets.DatasetDict:
    """Single-label splits from ``<data_dir>/<split folder>/<class>/<image>``.

    Classes are the train split's folder names in sorted order (torchvision's
    ``ImageFolder`` order, so ImageNet's class ``i`` is the ``i``-th sorted wnid, as timm
    numbers it); another split may hold a subset of them, never a folder the train split
    lacks. Images are the files with an image extension (``IMAGE_EXTENSIONS``), found
    recursively; other files are counted in the report (``ignored_files``). Split folders:
    ``train`` and ``val`` are required, ``test`` is loaded when present;
    ``splits={"validation": "val_sorted"}`` names others.
    """
    root = os.path.abspath(os.path.expanduser(str(data_dir)))
    require_file(root, dataset_name, LAYOUT, directory=True)
    chosen, required = resolve_splits(
        splits, {"train": "train", "validation": "val", "test": "test"}, ("train", "validation"),
        lambda native: os.path.isdir(os.path.join(root, native)),
    )
    for name, native in chosen.items():
        require_file(os.path.join(root, native), f"{dataset_name} split {name!r}", LAYOUT, directory=True)
    first = "train" if "train" in chosen else next(iter(chosen))
    scanned = {first: _scan_split(os.path.join(root, chosen[first]), first, None)}
    class_names = check_class_names(scanned[first][2], os.path.join(root, chosen[first]))
    index = {c: i for i, c in enumerate(class_names)}
    for name, native in chosen.items():
        if name not in scanned:
            scanned[name] = _scan_split(os.path.join(root, native), name, index)
    out = {}
    for name, native in chosen.items():
        paths, names, _, report = scanned[name]
        out[name] = build_single_label_dataset(
            [index[c] for c in names], class_names, dataset_name=dataset_name, split=name, paths=paths,
            source=os.path.join(root, native), verify_images=verify_images, strict=strict, num_threads=num_threads,
            options={"splits": dict(chosen)}, extra_report=report,
        )
    return merge_dict(out)
