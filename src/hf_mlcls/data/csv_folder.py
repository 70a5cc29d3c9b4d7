"""The ``csv`` layout: one CSV file per split, an image path and a label cell per row."""

from __future__ import annotations

import csv
import os
from typing import Mapping, Sequence, Union

import datasets

from .core import DatasetLayoutError, require_file, resolve_image_path, utf8_text
from .label_names import _class_option, _LabelResolver, parse_label_cell
from .tabular import _build_splits, _file_splits, _RawSplit

__all__ = ["CSV_LAYOUT", "load_csv", "read_csv_rows"]

CSV_LAYOUT = """  <data_dir>/
    train.csv, validation.csv (or val.csv), optional test.csv
        header with at least: {image},{labels}   e.g.  images/001.jpg,cat|dog
    optional classes.txt (one class name per line: fixes the class order)
    the images, at the paths the files give (relative to <data_dir>)"""



def read_csv_rows(path: str, delimiter: str = ",", required: Sequence[str] = (), layout: str = ""):
    """Yield ``(line_number, row_dict)`` from a CSV with a header holding the
    ``required`` columns; ragged or malformed lines raise an error naming the file
    and line."""
    with open(path, encoding="utf-8-sig", newline="") as fh, utf8_text(path):
        reader = csv.DictReader(fh, delimiter=delimiter, strict=True)
        try:
            header = reader.fieldnames
            if not header:
                raise DatasetLayoutError(f"{path}: empty file (expected a header line)")
            twice = sorted({c for c in header if header.count(c) > 1})
            if twice:
                raise DatasetLayoutError(
                    f"{path}:1: the header names column(s) {twice} more than once (one would be dropped); "
                    "give each column one name"
                )
            if any(c not in header for c in required):
                raise DatasetLayoutError(
                    f"{path}: needs columns {', '.join(repr(c) for c in required)}; the header has {header}."
                    + (f"\nExpected layout:\n{layout}" if layout else "")
                )
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DatasetLayoutError(
                        f"{path}:{reader.line_num}: malformed CSV row: expected {len(header)} fields ({', '.join(header)})"
                    )
                yield reader.line_num, row
        except csv.Error as exc:
            raise DatasetLayoutError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None


def load_csv(
    data_dir: str,
    *,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    image_column: str = "image",
    label_column: str = "labels",
    unknown_label_column: str = "unknown_labels",
    label_separator: str = "|",
    delimiter: str = ",",
    classes: Union[None, str, Sequence[str]] = None,
    label_type: str = "auto",
    drop_unlisted_labels: bool = False,
    keep_empty: bool = True,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
) -> datasets.DatasetDict:
    """One CSV per split: ``train.csv``, ``validation.csv`` (or ``val.csv``), optional ``test.csv``.

    Each file has a header with ``image_column`` (a path relative to ``data_dir``) and
    ``label_column`` (names or indices: ``cat|dog``, ``["cat", "dog"]``, ``0|3``; empty
    means no label), and optionally ``unknown_label_column`` in the same format.
    ``classes``: a list, a text file (one name per line, relative to ``data_dir``), or
    ``None`` (``classes.txt`` in ``data_dir`` when present, else the sorted union of
    names; for index labels ``"0".."N-1"``). ``label_type``: ``auto``, ``name`` or
    ``index``. A name not in ``classes`` is an error unless ``drop_unlisted_labels``.
    ``splits``: a list of split names or ``{split: file name}``.
    """
    root = os.path.abspath(data_dir)
    layout = CSV_LAYOUT.format(image=image_column, labels=label_column)
    require_file(root, "csv dataset", layout, directory=True)
    files = _file_splits(root, "csv", splits, layout, "csv")
    raws = {}
    for split, path in files.items():
        raw = _RawSplit(source=path, image_roots=(root,))
        base = os.path.basename(path)
        for lineno, row in read_csv_rows(path, delimiter, (image_column, label_column), layout):
            where = f"{path}:{lineno}"
            raw.paths.append(resolve_image_path(root, root, row[image_column].strip(), where))
            try:
                raw.tokens.append(parse_label_cell(row[label_column], label_separator))
                if unknown_label_column in row:
                    if raw.unknown_tokens is None:
                        raw.unknown_tokens = []
                    raw.unknown_tokens.append(parse_label_cell(row[unknown_label_column], label_separator))
            except ValueError as exc:
                raise DatasetLayoutError(f"{where}: {exc}") from None
            raw.refs.append(f"{base}:{lineno}")
        raws[split] = raw
    resolver = _LabelResolver(_class_option(classes, root), label_type, drop_unlisted_labels)
    options = {"label_type": label_type, "drop_unlisted_labels": drop_unlisted_labels, "keep_empty": keep_empty}
    return _build_splits(raws, resolver, dataset_name="csv", verify_images=verify_images, strict=strict,
                         options=options, num_threads=num_threads, keep_empty=keep_empty)
