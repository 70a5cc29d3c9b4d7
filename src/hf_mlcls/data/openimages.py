"""Open Images v6 image-level labels: class descriptions, human-verified label CSVs
(``Confidence`` 1 = present, 0 = verified absent) and the optional trainable-class
list. Read with pyarrow and grouped with numpy: the train file has tens of millions
of rows.

Rows carry ``labels`` (verified positives) and, by default, ``negative_labels``
(verified negatives): every class in neither list is *unknown*. Listing the unknown
classes per row instead would mean ~9,600 ids per image, so the loader stores the
two short lists and the transform builds the -1/0/1 vector. With
``unverified_as_negative=True`` (the ML-Decoder protocol) rows carry only ``labels``.
"""

from __future__ import annotations

import csv
import os
from typing import Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .core import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SplitRows,
    build_dataset,
    merge_dict,
    resolve_splits,
    unknown_names_error,
    utf8_text,
)
from .class_names import normalise_class_name

__all__ = ["load_openimages"]

LAYOUT = """  <data_dir>/            (the CSV/TXT files may also sit in <data_dir>/annotations/)
    oidv6-class-descriptions.csv                       LabelName,DisplayName
    oidv6-train-annotations-human-imagelabels.csv      ImageID,Source,LabelName,Confidence
    validation-annotations-human-imagelabels.csv       (same columns; an oidv6- prefix is accepted)
    test-annotations-human-imagelabels.csv             (optional)
    oidv6-classes-trainable.txt                        (optional: one LabelName per line)
    train/<ImageID>.jpg, validation/<ImageID>.jpg, test/<ImageID>.jpg"""

_LABEL_FILES = {
    "train": ("oidv6-train-annotations-human-imagelabels.csv", "train-annotations-human-imagelabels.csv"),
    "validation": ("validation-annotations-human-imagelabels.csv", "oidv6-validation-annotations-human-imagelabels.csv"),
    "test": ("test-annotations-human-imagelabels.csv", "oidv6-test-annotations-human-imagelabels.csv"),
}
_DESCRIPTIONS = ("oidv6-class-descriptions.csv", "class-descriptions.csv")
_TRAINABLE = ("oidv6-classes-trainable.txt", "classes-trainable.txt")
_NEEDED = ("ImageID", "LabelName", "Confidence")


def _find(root: str, names: Sequence[str]) -> Optional[str]:
    for folder in (root, os.path.join(root, "annotations")):
        for n in names:
            p = os.path.join(folder, n)
            if os.path.isfile(p):
                return p
    return None


def _user_path(root: str, path: str) -> str:
    p = path if os.path.isabs(path) else os.path.join(root, path)
    if not os.path.isfile(p):
        raise MissingDatasetFileError(f"openimages-v6: expected file {p} does not exist.\nExpected layout:\n{LAYOUT}")
    return p


def _read_descriptions(path: str) -> tuple[list[str], list[str]]:
    mids, names, seen = [], [], {}
    with open(path, encoding="utf-8-sig", newline="") as fh, utf8_text(path):
        reader = csv.reader(fh)
        try:
            for row in reader:
                if not row:
                    continue
                if reader.line_num == 1 and row[:2] == ["LabelName", "DisplayName"]:
                    continue
                if len(row) != 2:
                    raise DatasetLayoutError(f"{path}:{reader.line_num}: expected 2 fields (LabelName,DisplayName), got {len(row)}")
                mid = row[0].strip()
                if mid in seen:
                    raise DatasetLayoutError(f"{path}:{reader.line_num}: duplicated LabelName {mid!r} (first on line {seen[mid]})")
                seen[mid] = reader.line_num
                mids.append(mid)
                names.append(normalise_class_name(row[1], f"{path}:{reader.line_num}: DisplayName"))
        except csv.Error as exc:
            raise DatasetLayoutError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    if not mids:
        raise DatasetLayoutError(f"{path}: no classes")
    return mids, names


def _locate_csv_problem(path: str, arrow_message: str) -> DatasetLayoutError:
    """pyarrow says *that* a CSV is malformed; re-read it with :mod:`csv` to say *where*."""
    with open(path, encoding="utf-8-sig", newline="") as fh, utf8_text(path):
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if not header:
                return DatasetLayoutError(f"{path}: empty file (expected a header ImageID,Source,LabelName,Confidence)")
            missing = [c for c in _NEEDED if c not in header]
            if missing:
                return DatasetLayoutError(f"{path}: header {header} lacks column(s) {missing}.\nExpected layout:\n{LAYOUT}")
            conf = header.index("Confidence")
            for row in reader:
                if len(row) != len(header):
                    return DatasetLayoutError(f"{path}:{reader.line_num}: malformed CSV row: {len(row)} fields, the header has {len(header)}")
                try:
                    float(row[conf])
                except ValueError:
                    return DatasetLayoutError(f"{path}:{reader.line_num}: Confidence {row[conf]!r} is not a number")
        except csv.Error as exc:
            return DatasetLayoutError(f"{path}:{reader.line_num}: malformed CSV: {exc}")
    return DatasetLayoutError(f"{path}: cannot be read as CSV: {arrow_message}")


def _read_label_table(path: str) -> pa.Table:
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=list(_NEEDED),
                column_types={"ImageID": pa.string(), "LabelName": pa.string(), "Confidence": pa.float64()},
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as exc:
        raise _locate_csv_problem(path, str(exc)) from None
    if table.num_rows == 0:  # a header and nothing else: the caller says the split is empty
        return table
    bad_conf = pc.invert(pc.fill_null(pc.is_in(table["Confidence"], value_set=pa.array([0.0, 1.0])), False))
    if pc.any(bad_conf).as_py():
        i = int(pc.index(bad_conf, True).as_py())
        raise DatasetLayoutError(
            f"{path}:{i + 2}: Confidence {table['Confidence'][i].as_py()!r} is neither 1 (positive) nor 0 (verified negative)"
        )
    ok_id = pc.fill_null(pc.match_substring_regex(table["ImageID"], r"^[0-9A-Za-z_\-]+$"), False)
    if not pc.all(ok_id).as_py():
        i = int(pc.index(ok_id, False).as_py())
        raise DatasetLayoutError(
            f"{path}:{i + 2}: ImageID {table['ImageID'][i].as_py()!r} is not a plain id; refusing it as an image path"
        )
    return table


def _csr(keys: np.ndarray, num_classes: int, num_rows: int) -> pa.Array:
    rows, cls = keys // num_classes, keys % num_classes
    offsets = np.zeros(num_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=num_rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(cls, type=pa.int64()))


def load_openimages(
    data_dir: str,
    *,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    unverified_as_negative: bool = False,
    trainable_classes: Union[None, bool, str] = None,
    class_descriptions: Optional[str] = None,
    class_names: str = "display",
    image_dirs: Optional[Mapping[str, str]] = None,
    image_ext: str = ".jpg",
    keep_empty: bool = True,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
) -> datasets.DatasetDict:
    """Load Open Images v6 human-verified image labels into ``train`` / ``validation``
    (+ ``test`` when its label file is there).

    Args:
        unverified_as_negative: ``False`` (default): rows hold ``labels`` and
            ``negative_labels``; classes in neither are unknown (-1 in the label
            vector). ``True``: the ML-Decoder protocol, unverified = negative; rows
            hold only ``labels``.
        trainable_classes: ``None`` uses ``oidv6-classes-trainable.txt`` when it is
            there (9,605 classes; labels of other classes are dropped and counted),
            ``False`` uses every described class, a path names the list.
        class_descriptions: path of the LabelName,DisplayName CSV (default: found).
        class_names: ``"display"`` (DisplayName; a repeated one gets its LabelName
            appended) or ``"label_name"`` (the ``/m/...`` ids). The ids in class
            order are in the load report under ``label_names``.
        image_dirs: ``{split: folder}`` under ``data_dir`` (default train /
            validation / test); images are ``<folder>/<ImageID><image_ext>``.
        splits: a list of split names, or ``{split: label CSV file name}``.
    """
    root = os.path.abspath(data_dir)
    if not os.path.isdir(root):
        raise MissingDatasetFileError(f"openimages-v6: expected folder {root} does not exist.\nExpected layout:\n{LAYOUT}")
    desc_path = _user_path(root, class_descriptions) if class_descriptions else _find(root, _DESCRIPTIONS)
    if desc_path is None:
        raise MissingDatasetFileError(
            f"openimages-v6: expected file {os.path.join(root, _DESCRIPTIONS[0])} does not exist.\nExpected layout:\n{LAYOUT}"
        )
    mids, display = _read_descriptions(desc_path)
    display_of = dict(zip(mids, display))
    if trainable_classes is False:
        class_mids = mids
        trainable_path = None
    else:
        trainable_path = _user_path(root, trainable_classes) if isinstance(trainable_classes, str) else _find(root, _TRAINABLE)
        if trainable_path is None:
            class_mids = mids
        else:
            with open(trainable_path, encoding="utf-8-sig") as fh, utf8_text(trainable_path):
                class_mids = [line.strip() for line in fh if line.strip()]
            unknown = [m for m in class_mids if m not in display_of]
            if unknown:
                raise unknown_names_error(f"{trainable_path}", unknown, mids, f" (not in {desc_path})")
            if len(set(class_mids)) != len(class_mids):
                raise DatasetLayoutError(f"{trainable_path}: a LabelName is listed twice")
    if class_names == "label_name":
        names = list(class_mids)
    elif class_names == "display":
        counts: dict[str, int] = {}
        for m in class_mids:
            counts[display_of[m]] = counts.get(display_of[m], 0) + 1
        names = [display_of[m] if counts[display_of[m]] == 1 else f"{display_of[m]} ({m})" for m in class_mids]
    else:
        raise ValueError(f"class_names must be 'display' or 'label_name', got {class_names!r}")
    class_index = {m: i for i, m in enumerate(class_mids)}
    num_classes = len(class_mids)

    layout_splits = {}
    for split, candidates in _LABEL_FILES.items():
        layout_splits[split] = _find(root, candidates) or os.path.join(root, candidates[0])
    chosen, _ = resolve_splits(splits, layout_splits, ("train", "validation"), os.path.isfile)
    dirs = {"train": "train", "validation": "validation", "test": "test", **(image_dirs or {})}
    out = {}
    for split, label_file in chosen.items():
        path = label_file if os.path.isabs(label_file) else (_find(root, [label_file]) or os.path.join(root, label_file))
        if not os.path.isfile(path):
            raise MissingDatasetFileError(f"openimages-v6 split {split!r}: expected file {path} does not exist.\nExpected layout:\n{LAYOUT}")
        table = _read_label_table(path)
        if table.num_rows == 0:
            raise DatasetLayoutError(f"openimages-v6 split {split!r}: {path} has no rows")
        images = pc.dictionary_encode(table["ImageID"]).combine_chunks()
        labels = pc.dictionary_encode(table["LabelName"]).combine_chunks()
        image_ids, img = images.dictionary, images.indices.to_numpy().astype(np.int64)
        label_values = labels.dictionary.to_pylist()
        unknown = [m for m in label_values if m not in display_of]
        if unknown:
            raise unknown_names_error(path, unknown, mids, f" (LabelNames not in {desc_path})")
        lookup = np.array([class_index.get(m, -1) for m in label_values], dtype=np.int64)
        cls = lookup[labels.indices.to_numpy()]
        conf = table["Confidence"].to_numpy()
        known = cls >= 0
        key = img * num_classes + cls
        pos = np.unique(key[known & (conf == 1.0)])
        neg = np.unique(key[known & (conf == 0.0)])
        conflicts = np.intersect1d(pos, neg, assume_unique=True)
        if conflicts.size:
            neg = np.setdiff1d(neg, conflicts, assume_unique=True)
        num_images = len(image_ids)
        if unverified_as_negative:
            neg = np.zeros(0, dtype=np.int64)
        row_keep = None
        if not keep_empty:
            row_keep = np.flatnonzero(np.bincount(pos // num_classes, minlength=num_images) > 0)
        pos_arr, neg_arr = _csr(pos, num_classes, num_images), _csr(neg, num_classes, num_images)
        ids = image_ids
        if row_keep is not None:
            take = pa.array(row_keep)
            pos_arr, neg_arr, ids = pos_arr.take(take), neg_arr.take(take), ids.take(take)
        image_dir = os.path.join(root, dirs.get(split, split))
        paths = pc.binary_join_element_wise(image_dir + os.sep, ids, image_ext, "")
        base = os.path.basename(path)
        rows = SplitRows(
            paths=paths,
            labels=pos_arr,
            negative_labels=None if unverified_as_negative else neg_arr,
            refs=lambda i, ids=ids, base=base: f"{base}: ImageID {ids[i].as_py()}",
            source=path,
            image_roots=(root, image_dir),
            extra_report={
                "num_label_rows": table.num_rows,
                "dropped_untrainable_labels": int((~known).sum()),
                "conflicting_labels": int(conflicts.size),
                "dropped_empty": 0 if row_keep is None else int(num_images - len(row_keep)),
                "unverified": "negative" if unverified_as_negative else "unknown",
                "label_names": list(class_mids),
            },
        )
        out[split] = build_dataset(
            rows, names, dataset_name="openimages-v6", split=split, verify_images=verify_images, strict=strict,
            options={"unverified_as_negative": unverified_as_negative, "trainable_classes": trainable_path,
                     "class_names": class_names, "keep_empty": keep_empty},
            num_threads=num_threads,
        )
    return merge_dict(out)
