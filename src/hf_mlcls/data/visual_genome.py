"""Visual Genome VG-500: the 500 most frequent object categories, the multi-label protocol
of C-Tran (Lanchantin et al., 2021), which Query2Label reports on.

The files are C-Tran's (``load_data.py`` lines 93-100 of github.com/QData/C-Tran):
``train_list_500.txt`` / ``test_list_500.txt`` (one image file name a line) and
``vg_category_500_labels_index.json`` (``{file name: [label indices]}``, indices in
0..499) beside the ``VG_100K/`` image folder. Its ``dataloaders/vg500_dataset.py``
(lines 12-32) reads each list line without its newline, joins it onto ``VG_100K/``, and
sets the listed indices of a 500-long target to 1; this loader does the same. The
release names no classes; ``class_names`` (a list, or a text file with one name a line)
gives them, otherwise they are ``vg500_000`` .. ``vg500_499``.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence, Union

import datasets

from .core import (
    DatasetLayoutError,
    SplitRows,
    build_dataset,
    check_class_names,
    merge_dict,
    parse_json_bytes,
    read_bytes,
    require_file,
    resolve_image_path,
    resolve_splits,
    utf8_text,
)

__all__ = ["VG500_NUM_CLASSES", "load_visual_genome"]

VG500_NUM_CLASSES = 500
LABELS_FILE = "vg_category_500_labels_index.json"

LAYOUT = """  <data_dir>/                       (C-Tran's VG/ folder, or its parent)
    VG_100K/<image>                  Visual Genome images (VG_100K and VG_100K_2 merged, as C-Tran uses them)
    train_list_500.txt               98,249 file names, one a line
    test_list_500.txt                10,000 file names
    vg_category_500_labels_index.json   {file name: [label indices 0..499]}"""


def _find_root(data_dir: str) -> str:
    for candidate in (data_dir, os.path.join(data_dir, "VG")):
        if os.path.isfile(os.path.join(candidate, LABELS_FILE)):
            return candidate
    return data_dir


def _read_list(path: str) -> list[tuple[str, int]]:
    names, seen = [], {}
    with open(path, encoding="utf-8-sig", newline="") as fh, utf8_text(path):
        for lineno, line in enumerate(fh, 1):
            name = line.rstrip("\r\n")
            if not name.strip():
                continue
            if name in seen:
                raise DatasetLayoutError(f"{path}:{lineno}: image {name!r} listed twice (first on line {seen[name]})")
            seen[name] = lineno
            names.append((name, lineno))
    return names


def _read_labels(path: str, what: str):
    """The labels file; an image with two entries is refused (a JSON parser keeps only the last of two equal
    keys, so one entry's labels would vanish without a word)."""
    raw = read_bytes(path, what)
    table = parse_json_bytes(raw, path, what)
    if isinstance(table, dict):
        twice: list[str] = []

        def keys_once(pairs):
            seen: set = set()
            twice.extend(k for k, _ in pairs if k in seen or seen.add(k))

        json.loads(raw.decode("utf-8-sig"), object_pairs_hook=keys_once)
        if twice:
            raise DatasetLayoutError(
                f"{path}: image {twice[0]!r} has two entries ({len(twice)} such key(s)); give each image one entry "
                "holding all its label indices"
            )
    return table


def _class_option(class_names: Union[None, str, Sequence[str]]) -> list[str]:
    if class_names is None:
        return [f"vg500_{i:03d}" for i in range(VG500_NUM_CLASSES)]
    source = "class_names"
    if isinstance(class_names, str):
        source = require_file(class_names, "visual-genome class_names", "a text file with 500 names, one a line")
        with open(class_names, encoding="utf-8-sig") as fh, utf8_text(class_names):
            class_names = [line.strip() for line in fh if line.strip()]
    names = check_class_names(list(class_names), source)
    if len(names) != VG500_NUM_CLASSES:
        raise DatasetLayoutError(f"{source}: {len(names)} class names, VG-500 has {VG500_NUM_CLASSES}")
    return names


def load_visual_genome(
    data_dir: str,
    *,
    class_names: Union[None, str, Sequence[str]] = None,
    image_folder: str = "VG_100K",
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    dataset_name: str = "visual-genome",
) -> datasets.DatasetDict:
    """``train`` (``train_list_500.txt``) and ``validation`` (``test_list_500.txt``, on which
    C-Tran and Query2Label report), 500 classes. Rows follow the list files' order; an
    image with no label index is kept (an all-negative row, as C-Tran's target would be)
    and counted in the report (``num_without_labels``)."""
    root = _find_root(os.path.abspath(os.path.expanduser(str(data_dir))))
    require_file(root, dataset_name, LAYOUT, directory=True)
    names = _class_option(class_names)
    labels_path = require_file(os.path.join(root, LABELS_FILE), dataset_name, LAYOUT)
    chosen, _ = resolve_splits(
        splits, {"train": "train", "validation": "test"}, ("train", "validation"),
        lambda native: os.path.isfile(os.path.join(root, f"{native}_list_500.txt")),
    )
    lists = {name: require_file(os.path.join(root, f"{native}_list_500.txt"), f"{dataset_name} split {name!r}", LAYOUT)
             for name, native in chosen.items()}
    image_dir = require_file(os.path.join(root, image_folder), dataset_name, LAYOUT, directory=True)
    table = _read_labels(labels_path, dataset_name)
    if not isinstance(table, dict):
        raise DatasetLayoutError(f"{labels_path}: expected a JSON object {{file name: [label indices]}}, got {type(table).__name__}")
    out = {}
    for name, list_path in lists.items():
        rows = SplitRows(source=list_path, image_roots=(root, image_dir))
        refs = []
        empty = 0
        for image, lineno in _read_list(list_path):
            where = f"{list_path}:{lineno}"
            if image not in table:
                raise DatasetLayoutError(f"{where}: image {image!r} has no entry in {labels_path}")
            indices = table[image]
            if not isinstance(indices, list) or not all(type(i) is int for i in indices):
                raise DatasetLayoutError(f"{labels_path}: entry {image!r} must be a list of integer label indices, got {indices!r}")
            bad = [i for i in indices if not 0 <= i < VG500_NUM_CLASSES]
            if bad:
                raise DatasetLayoutError(f"{labels_path}: entry {image!r} has label index {bad[0]}, outside 0..{VG500_NUM_CLASSES - 1}")
            rows.paths.append(resolve_image_path(root, image_dir, image, where))
            rows.labels.append(sorted(set(indices)))
            refs.append(where)
            empty += not indices
        rows.refs = refs
        rows.extra_report = {"num_without_labels": empty}
        out[name] = build_dataset(rows, names, dataset_name=dataset_name, split=name, verify_images=verify_images,
                                  strict=strict, num_threads=num_threads,
                                  options={"image_folder": image_folder, "splits": dict(chosen)})
    return merge_dict(out)
