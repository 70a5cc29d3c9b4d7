"""NUS-WIDE: the 81-concept benchmark from the official release (image lists + one 0/1
file per concept) or from the ``data.csv`` the ML-Decoder/ASL authors distribute.
Many NUS-WIDE images are gone from Flickr: missing files are skipped and counted."""

from __future__ import annotations

import csv
import os
import re
from typing import Mapping, Optional, Sequence, Union

import datasets
import numpy as np

from .core import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SplitRows,
    build_dataset,
    merge_dict,
    resolve_image_path,
    resolve_splits,
    utf8_text,
)
from .label_names import _class_option, _LabelResolver, parse_label_cell, read_class_list
from .tabular import _build_splits, _RawSplit

__all__ = ["NUS_WIDE_CLASSES", "load_nus_wide"]

#: The 81 NUS-WIDE concepts in the order of the release's Concepts81.txt (alphabetical).
NUS_WIDE_CLASSES = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars", "castle",
    "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog", "earthquake", "elk", "fire",
    "fish", "flags", "flowers", "food", "fox", "frost", "garden", "glacier", "grass", "harbor", "horses",
    "house", "lake", "leaf", "map", "military", "moon", "mountain", "nighttime", "ocean", "person", "plane",
    "plants", "police", "protest", "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand",
    "sign", "sky", "snow", "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers",
    "tattoo", "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water",
    "waterfall", "wedding", "whales", "window", "zebra",
)

OFFICIAL_LAYOUT = """  <data_dir>/
    Concepts81.txt                       (or ConceptsList/Concepts81.txt)
    ImageList/TrainImagelist.txt, ImageList/TestImagelist.txt
    TrainTestLabels/Labels_<concept>_Train.txt, Labels_<concept>_Test.txt
                                         (or Groundtruth/TrainTestLabels/...; one 0/1 per image-list line)
    Flickr/<path given in the image list, e.g. actor/0001_2124494179.jpg>"""

CSV_LAYOUT = """  <data_dir>/
    data.csv   header + rows: <image path relative to data_dir>,"['label a', 'label b']",<train|val>
    the images at those paths"""

_WINDOWS_ABS = re.compile(r"^[A-Za-z]:/")


def _first_existing(paths: Sequence[str]) -> Optional[str]:
    return next((p for p in paths if os.path.exists(p)), None)


def _list_entry(text: str, where: str) -> str:
    # The release's lists use Windows separators, sometimes with the original
    # absolute prefix (C:\ImageData\Flickr\...); keep the part below Flickr/.
    path = text.strip().replace("\\", "/")
    if _WINDOWS_ABS.match(path):
        marker = path.lower().rfind("flickr/")
        if marker < 0:
            raise DatasetLayoutError(f"{where}: absolute image path {text.strip()!r} has no Flickr/ folder in it")
        path = path[marker + len("flickr/"):]
    return path


def _read_labels_file(path: str, n: int) -> np.ndarray:
    values = np.zeros(n, dtype=bool)
    count = 0
    with open(path, encoding="utf-8-sig") as fh, utf8_text(path):
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            if text not in ("0", "1"):
                raise DatasetLayoutError(f"{path}:{lineno}: expected 0 or 1, got {text!r}")
            if count >= n:
                raise DatasetLayoutError(f"{path}: more lines than the {n} images of its image list")
            values[count] = text == "1"
            count += 1
    if count != n:
        raise DatasetLayoutError(f"{path}: {count} labels for the {n} images of its image list")
    return values


def _load_official(root, *, splits, image_root, verify_images, strict, num_threads, keep_empty):
    concepts = _first_existing([os.path.join(root, "Concepts81.txt"), os.path.join(root, "ConceptsList", "Concepts81.txt")])
    label_dir = _first_existing([os.path.join(root, "TrainTestLabels"), os.path.join(root, "Groundtruth", "TrainTestLabels")])
    if concepts is None:
        raise MissingDatasetFileError(f"nus-wide: expected file {os.path.join(root, 'Concepts81.txt')} does not exist.\nExpected layout:\n{OFFICIAL_LAYOUT}")
    if label_dir is None:
        raise MissingDatasetFileError(f"nus-wide: expected folder {os.path.join(root, 'TrainTestLabels')} does not exist.\nExpected layout:\n{OFFICIAL_LAYOUT}")
    names = read_class_list(concepts)
    native = {"train": "Train", "validation": "Test"}

    def list_path(n: str) -> str:
        return os.path.join(root, "ImageList", f"{n}Imagelist.txt")

    chosen, _ = resolve_splits(splits, native, ("train", "validation"), lambda n: os.path.isfile(list_path(n)))
    image_dir = os.path.join(root, image_root)
    out = {}
    for split, nat in chosen.items():
        lp = list_path(nat)
        if not os.path.isfile(lp):
            raise MissingDatasetFileError(f"nus-wide split {split!r}: expected file {lp} does not exist.\nExpected layout:\n{OFFICIAL_LAYOUT}")
        entries, seen = [], {}
        with open(lp, encoding="utf-8-sig") as fh, utf8_text(lp):
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    entry = _list_entry(line, f"{lp}:{lineno}")
                    if entry in seen:
                        raise DatasetLayoutError(f"{lp}:{lineno}: image {entry!r} is listed again (first on line {seen[entry]})")
                    seen[entry] = lineno
                    entries.append((entry, lineno))
        matrix = np.zeros((len(entries), len(names)), dtype=bool)
        for j, concept in enumerate(names):
            fp = os.path.join(label_dir, f"Labels_{concept}_{nat}.txt")
            if not os.path.isfile(fp):
                raise MissingDatasetFileError(f"nus-wide split {split!r}: expected file {fp} does not exist.\nExpected layout:\n{OFFICIAL_LAYOUT}")
            matrix[:, j] = _read_labels_file(fp, len(entries))
        base = os.path.basename(lp)
        rows = SplitRows(source=lp, refs=[], image_roots=(root, image_dir))
        dropped_empty = 0
        for (entry, lineno), row in zip(entries, matrix):
            labels = np.flatnonzero(row).tolist()
            if not labels and not keep_empty:
                dropped_empty += 1
                continue
            rows.paths.append(resolve_image_path(root, image_dir, entry, f"{lp}:{lineno}"))
            rows.labels.append(labels)
            rows.refs.append(f"{base}:{lineno}")
        rows.extra_report = {"layout": "official", "dropped_empty": dropped_empty}
        out[split] = build_dataset(rows, names, dataset_name="nus-wide", split=split, verify_images=verify_images,
                                   strict=strict, options={"layout": "official", "keep_empty": keep_empty},
                                   num_threads=num_threads)
    return merge_dict(out)


def _load_csv(root, *, splits, csv_file, classes, drop_unlisted_labels, verify_images, strict, num_threads, keep_empty):
    path = os.path.join(root, csv_file)
    if not os.path.isfile(path):
        raise MissingDatasetFileError(f"nus-wide: expected file {path} does not exist.\nExpected layout:\n{CSV_LAYOUT}")
    if isinstance(splits, Mapping):
        wanted = dict(splits)
    else:
        native = {"train": "train", "validation": "val"}
        wanted, _ = resolve_splits(splits, native, ("train", "validation"), lambda n: True)
    by_value = {v: k for k, v in wanted.items()}
    raws = {split: _RawSplit(source=f"{path} (split {value!r})", image_roots=(root,)) for split, value in wanted.items()}
    base = os.path.basename(path)
    with open(path, encoding="utf-8-sig", newline="") as fh, utf8_text(path):
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise DatasetLayoutError(f"{path}: empty file")
            if len(header) < 3:
                raise DatasetLayoutError(
                    f"{path}: expected 3 columns (image, labels, split), the header has {len(header)}: {header}.\n"
                    f"Expected layout:\n{CSV_LAYOUT}"
                )
            for row in reader:
                if not row:
                    continue
                where = f"{path}:{reader.line_num}"
                if len(row) != len(header):
                    raise DatasetLayoutError(f"{where}: malformed CSV row: {len(row)} fields, the header has {len(header)}")
                split = by_value.get(row[2].strip())
                if split is None:
                    continue
                raw = raws[split]
                raw.paths.append(resolve_image_path(root, root, row[0].strip(), where))
                try:
                    raw.tokens.append(parse_label_cell(row[1], separator=","))
                except ValueError as exc:
                    raise DatasetLayoutError(f"{where}: {exc}") from None
                raw.refs.append(f"{base}:{reader.line_num}")
        except csv.Error as exc:
            raise DatasetLayoutError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    for split, raw in raws.items():
        if not raw.paths:
            raise DatasetLayoutError(f"nus-wide split {split!r}: no row of {path} has split value {wanted[split]!r}")
    resolver = _LabelResolver(_class_option(classes, root), "name", drop_unlisted_labels)
    options = {"layout": "csv", "drop_unlisted_labels": drop_unlisted_labels, "keep_empty": keep_empty}
    return _build_splits(raws, resolver, dataset_name="nus-wide", verify_images=verify_images, strict=strict,
                         options=options, num_threads=num_threads, keep_empty=keep_empty)


def load_nus_wide(
    data_dir: str,
    *,
    layout: str = "auto",
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    image_root: str = "Flickr",
    csv_file: str = "data.csv",
    classes: Union[None, str, Sequence[str]] = None,
    drop_unlisted_labels: bool = False,
    keep_empty: bool = True,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
) -> datasets.DatasetDict:
    """Load NUS-WIDE into ``train`` / ``validation``.

    Args:
        layout: ``"official"`` (the release: ``ImageList/``, ``TrainTestLabels/``,
            ``Concepts81.txt``; ``validation`` is the release's Test list),
            ``"csv"`` (``data.csv``: path, label list, ``train``/``val``) or
            ``"auto"`` (``csv`` when ``data.csv`` exists).
        image_root: official layout only: folder under ``data_dir`` the image lists
            are relative to.
        classes / drop_unlisted_labels: csv layout only. The class list defaults to
            the sorted union of the labels in ``data.csv`` (as the ML-Decoder code
            builds it); pass ``classes="Concepts81.txt", drop_unlisted_labels=True``
            to keep only the 81 benchmark concepts of a file with more tags.
        keep_empty: keep images with no label (``False`` drops them, as the
            ML-Decoder zero-shot loader does for images without a relevant label).
        splits: a list of split names, or ``{split: native}`` with ``native`` the
            image-list prefix (``Train``/``Test``) or the ``data.csv`` split value.
    """
    root = os.path.abspath(data_dir)
    if not os.path.isdir(root):
        raise MissingDatasetFileError(
            f"nus-wide: expected folder {root} does not exist.\nExpected layout (official):\n{OFFICIAL_LAYOUT}\nor (csv):\n{CSV_LAYOUT}"
        )
    if layout == "auto":
        layout = "csv" if os.path.isfile(os.path.join(root, csv_file)) else "official"
        concepts = [os.path.join(root, "Concepts81.txt"), os.path.join(root, "ConceptsList", "Concepts81.txt")]
        if layout == "official" and _first_existing(concepts) is None:
            raise MissingDatasetFileError(
                f"nus-wide: expected file {concepts[0]} does not exist (official layout), nor does "
                f"{os.path.join(root, csv_file)} (csv layout).\n"
                f"Expected layout (official):\n{OFFICIAL_LAYOUT}\nor (csv):\n{CSV_LAYOUT}"
            )
    if layout == "official":
        return _load_official(root, splits=splits, image_root=image_root, verify_images=verify_images, strict=strict,
                              num_threads=num_threads, keep_empty=keep_empty)
    if layout == "csv":
        return _load_csv(root, splits=splits, csv_file=csv_file, classes=classes, drop_unlisted_labels=drop_unlisted_labels,
                         verify_images=verify_images, strict=strict, num_threads=num_threads, keep_empty=keep_empty)
    raise ValueError(f"layout must be 'auto', 'official' or 'csv', got {layout!r}")
