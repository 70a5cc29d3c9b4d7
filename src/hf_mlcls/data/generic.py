"""Any multi-label folder: a CSV or JSON-lines file per split (image path relative to
``data_dir`` + a label list), or any ``datasets`` repo / saved dataset (``hub``)."""

from __future__ import annotations

import ast
import csv
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import pyarrow as pa

from .core import (
    REPORT_KEY,
    DatasetLayoutError,
    MissingDatasetFileError,
    SplitRows,
    build_dataset,
    check_class_names,
    merge_dict,
    require_file,
    resolve_image_path,
    resolve_splits,
    unknown_names_error,
    utf8_text,
    warn_skipped,
)

__all__ = ["load_csv", "load_jsonl", "load_hub", "parse_label_cell", "read_class_list"]

CSV_LAYOUT = """  <data_dir>/
    train.csv, validation.csv (or val.csv), optional test.csv
        header with at least: {image},{labels}   e.g.  images/001.jpg,cat|dog
    optional classes.txt (one class name per line: fixes the class order)
    the images, at the paths the files give (relative to <data_dir>)"""

JSONL_LAYOUT = """  <data_dir>/
    train.jsonl, validation.jsonl (or val.jsonl), optional test.jsonl
        one object per line: {{"{image}": "images/001.jpg", "{labels}": ["cat", "dog"]}}
    optional classes.txt (one class name per line: fixes the class order)
    the images, at the paths the files give (relative to <data_dir>)"""


#: Labels given as bare indices (no ``classes=``) name classes "0".."N-1"; an index this
#: large is a typo or an id column, not a class (Open Images has 19,958 labels in all).
MAX_INDEX_CLASSES = 100_000


def parse_label_cell(cell: Any, separator: str = "|") -> list:
    """A label cell as a list of tokens (names or integers).

    Lists pass through; a string that starts with ``[`` is read as a JSON or Python
    list literal (``["cat", "dog"]``, ``['cat', 'dog']``, ``[0, 3]``); any other
    string is split on ``separator``; empty means no label.
    """
    if cell is None:
        return []
    if isinstance(cell, (list, tuple)):
        return list(cell)
    if isinstance(cell, (int, np.integer)) and not isinstance(cell, bool):
        return [int(cell)]
    text = str(cell).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, RecursionError, MemoryError) as exc:
                shown = text if len(text) <= 80 else text[:77] + "..."
                raise ValueError(f"label list {shown!r} is neither JSON nor a Python list literal ({str(exc)[:200]})") from None
        if not isinstance(value, (list, tuple)):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise ValueError(f"label list {shown!r} is not a list")
        return list(value)
    return [t.strip() for t in text.split(separator) if t.strip()]


def read_class_list(path: str) -> list[str]:
    """Class names from a text file, one per line (blank lines ignored)."""
    require_file(path, "class list", "  one class name per line")
    with open(path, encoding="utf-8-sig") as fh, utf8_text(path):
        names = [line.strip() for line in fh if line.strip()]
    return check_class_names(names, path)


def _class_option(classes: Union[None, str, Sequence[str]], data_dir: Optional[str]) -> Optional[list[str]]:
    if classes is None:
        if data_dir and os.path.isfile(os.path.join(data_dir, "classes.txt")):
            return read_class_list(os.path.join(data_dir, "classes.txt"))
        return None
    if isinstance(classes, (str, os.PathLike)):
        path = os.fspath(classes)
        if data_dir and not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        return read_class_list(path)
    return check_class_names(list(classes), "classes=")


def _is_int_token(t: Any) -> bool:
    if isinstance(t, bool):
        return False
    if isinstance(t, (int, np.integer)):
        return True
    return isinstance(t, str) and t.strip().lstrip("-").isdigit()


@dataclass
class _RawSplit:
    """Rows of one split with their labels still as tokens."""

    source: str
    paths: list[str] = field(default_factory=list)
    tokens: list[list] = field(default_factory=list)
    unknown_tokens: Optional[list[list]] = None
    refs: list[str] = field(default_factory=list)


class _LabelResolver:
    """Turns label tokens into class indices once every split has been read, so the
    class list (given, or the sorted union of names) is the same for all splits."""

    def __init__(self, classes: Optional[list[str]], label_type: str, drop_unlisted: bool):
        if label_type not in ("auto", "name", "index"):
            raise ValueError(f"label_type must be 'auto', 'name' or 'index', got {label_type!r}")
        self.classes = classes
        self.label_type = label_type
        self.drop_unlisted = drop_unlisted
        self.dropped: dict[str, int] = {}

    def finalize(self, splits: Iterable[_RawSplit]) -> list[str]:
        splits = list(splits)
        all_tokens = [t for s in splits for col in (s.tokens, s.unknown_tokens or []) for row in col for t in row]
        mode = self.label_type
        if mode == "auto":
            if self.classes is not None and all(str(t) in self._index() for t in all_tokens):
                mode = "name"
            elif all_tokens and all(_is_int_token(t) for t in all_tokens):
                mode = "index"
            else:
                mode = "name"
        self.mode = mode
        if self.classes is None:
            if mode == "index":
                bad = next(
                    ((s.refs[r], t) for s in splits for col in (s.tokens, s.unknown_tokens or [])
                     for r, row in enumerate(col) for t in row if not _is_int_token(t)),
                    None,
                )
                if bad is not None:
                    raise DatasetLayoutError(f"{bad[0]}: label {bad[1]!r} is not a class index (label_type='index')")
                top = max((int(t) for t in all_tokens), default=-1)
                if top >= MAX_INDEX_CLASSES:
                    where = next(
                        (s.refs[r] for s in splits for col in (s.tokens, s.unknown_tokens or [])
                         for r, row in enumerate(col) if any(_is_int_token(t) and int(t) == top for t in row)),
                        "?",
                    )
                    raise DatasetLayoutError(
                        f"{where}: label index {top} would make {top + 1} classes (unnamed indices must be below "
                        f"{MAX_INDEX_CLASSES}); pass classes= (a list or a classes.txt) to name the classes"
                    )
                self.classes = [str(i) for i in range(top + 1)]
            else:
                self.classes = sorted({str(t) for t in all_tokens})
        if not self.classes:
            raise DatasetLayoutError("no class names: the files hold no labels and no classes= was given")
        return self.classes

    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_idx"):
            self._idx = {c: i for i, c in enumerate(self.classes or [])}
        return self._idx

    def convert(self, raw: _RawSplit, tokens: list[list]) -> list[list[int]]:
        index = self._index()
        n = len(self.classes)
        out, unknown = [], {}
        for row, toks in enumerate(tokens):
            ids = set()
            for t in toks:
                if self.mode == "index":
                    if not _is_int_token(t) or not 0 <= int(t) < n:
                        raise DatasetLayoutError(f"{raw.refs[row]}: label {t!r} is not a class index in [0, {n})")
                    ids.add(int(t))
                else:
                    i = index.get(str(t))
                    if i is None:
                        if self.drop_unlisted:
                            self.dropped[str(t)] = self.dropped.get(str(t), 0) + 1
                        else:
                            unknown.setdefault(str(t), raw.refs[row])
                        continue
                    ids.add(i)
            out.append(sorted(ids))
        if unknown:
            first = "; ".join(f"{k!r} at {v}" for k, v in list(unknown.items())[:5])
            raise unknown_names_error(
                raw.source, unknown, self.classes, f" First seen: {first}. Pass drop_unlisted_labels=True to drop them."
            )
        return out


def _check_duplicate_paths(raw: _RawSplit) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(raw.paths):
        j = seen.setdefault(p, i)
        if j != i:
            raise DatasetLayoutError(
                f"{raw.refs[i]}: image {p} is listed again (first at {raw.refs[j]}); give each image one row"
            )


def _build_splits(
    raws: Mapping[str, _RawSplit],
    resolver: _LabelResolver,
    *,
    dataset_name: str,
    verify_images,
    strict: bool,
    options: dict,
    num_threads: int,
    keep_empty: bool = True,
) -> datasets.DatasetDict:
    names = resolver.finalize(raws.values())
    has_unknown = any(r.unknown_tokens is not None for r in raws.values())
    out = {}
    for split, raw in raws.items():
        _check_duplicate_paths(raw)
        resolver.dropped = {}
        labels = resolver.convert(raw, raw.tokens)
        unknown = None
        if has_unknown:
            unknown = resolver.convert(raw, raw.unknown_tokens) if raw.unknown_tokens is not None else [[] for _ in labels]
            unknown = [sorted(set(u) - set(p)) for u, p in zip(unknown, labels)]
        paths, refs = raw.paths, raw.refs
        dropped_empty = 0
        if not keep_empty:
            keep = [i for i, lab in enumerate(labels) if lab]
            dropped_empty = len(labels) - len(keep)
            paths, refs, labels = [paths[i] for i in keep], [refs[i] for i in keep], [labels[i] for i in keep]
            unknown = None if unknown is None else [unknown[i] for i in keep]
        rows = SplitRows(
            paths=paths, labels=labels, unknown_labels=unknown, refs=refs, source=raw.source,
            extra_report={"dropped_labels": dict(sorted(resolver.dropped.items())), "dropped_empty": dropped_empty,
                          "label_type": resolver.mode},
        )
        out[split] = build_dataset(rows, names, dataset_name=dataset_name, split=split, verify_images=verify_images,
                                   strict=strict, options=options, num_threads=num_threads)
    return merge_dict(out)


def _default_file_splits(root: str, ext: str) -> dict[str, str]:
    val = f"validation.{ext}"
    if not os.path.isfile(os.path.join(root, val)) and os.path.isfile(os.path.join(root, f"val.{ext}")):
        val = f"val.{ext}"
    return {"train": f"train.{ext}", "validation": val, "test": f"test.{ext}"}


def _file_splits(root: str, ext: str, splits, layout: str, name: str) -> dict[str, str]:
    layout_splits = _default_file_splits(root, ext)
    if isinstance(splits, Mapping):
        chosen = dict(splits)
    else:
        chosen, _ = resolve_splits(splits, layout_splits, ("train", "validation"),
                                   lambda f: os.path.isfile(os.path.join(root, f)))
    out = {}
    for split, fname in chosen.items():
        path = os.path.join(root, fname)
        if not os.path.isfile(path):
            raise MissingDatasetFileError(f"{name} split {split!r}: expected file {path} does not exist.\nExpected layout:\n{layout}")
        out[split] = path
    return out


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
        raw = _RawSplit(source=path)
        base = os.path.basename(path)
        has_unknown = False
        for lineno, row in read_csv_rows(path, delimiter, (image_column, label_column), layout):
            where = f"{path}:{lineno}"
            raw.paths.append(resolve_image_path(root, root, row[image_column].strip(), where))
            try:
                raw.tokens.append(parse_label_cell(row[label_column], label_separator))
                if unknown_label_column in row:
                    has_unknown = True
                    if raw.unknown_tokens is None:
                        raw.unknown_tokens = []
                    raw.unknown_tokens.append(parse_label_cell(row[unknown_label_column], label_separator))
            except ValueError as exc:
                raise DatasetLayoutError(f"{where}: {exc}") from None
            raw.refs.append(f"{base}:{lineno}")
        if not has_unknown:
            raw.unknown_tokens = None
        raws[split] = raw
    resolver = _LabelResolver(_class_option(classes, root), label_type, drop_unlisted_labels)
    options = {"label_type": label_type, "drop_unlisted_labels": drop_unlisted_labels, "keep_empty": keep_empty}
    return _build_splits(raws, resolver, dataset_name="csv", verify_images=verify_images, strict=strict,
                         options=options, num_threads=num_threads, keep_empty=keep_empty)


def load_jsonl(
    data_dir: str,
    *,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    image_column: str = "image",
    label_column: str = "labels",
    unknown_label_column: str = "unknown_labels",
    label_separator: str = "|",
    classes: Union[None, str, Sequence[str]] = None,
    label_type: str = "auto",
    drop_unlisted_labels: bool = False,
    keep_empty: bool = True,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
) -> datasets.DatasetDict:
    """One JSON-lines file per split (``train.jsonl``, ``validation.jsonl`` or
    ``val.jsonl``, optional ``test.jsonl``); each line an object with ``image_column``
    and ``label_column`` (a list of names or indices, or a string split on
    ``label_separator``). Options as :func:`load_csv`."""
    root = os.path.abspath(data_dir)
    layout = JSONL_LAYOUT.format(image=image_column, labels=label_column)
    require_file(root, "jsonl dataset", layout, directory=True)
    files = _file_splits(root, "jsonl", splits, layout, "jsonl")
    raws = {}
    for split, path in files.items():
        raw = _RawSplit(source=path)
        base = os.path.basename(path)
        unknown: list = []
        has_unknown = False
        with open(path, encoding="utf-8-sig") as fh, utf8_text(path):
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise DatasetLayoutError(f"{where}: malformed JSON: {exc}") from None
                if not isinstance(obj, dict) or image_column not in obj or label_column not in obj:
                    raise DatasetLayoutError(f"{where}: expected an object with keys {image_column!r} and {label_column!r}")
                if not isinstance(obj[image_column], str):
                    raise DatasetLayoutError(f"{where}: {image_column!r} must be a path string")
                raw.paths.append(resolve_image_path(root, root, obj[image_column], where))
                try:
                    raw.tokens.append(parse_label_cell(obj[label_column], label_separator))
                    has_unknown = has_unknown or unknown_label_column in obj
                    unknown.append(parse_label_cell(obj.get(unknown_label_column), label_separator))
                except ValueError as exc:
                    raise DatasetLayoutError(f"{where}: {exc}") from None
                raw.refs.append(f"{base}:{lineno}")
        raw.unknown_tokens = unknown if has_unknown else None
        raws[split] = raw
    resolver = _LabelResolver(_class_option(classes, root), label_type, drop_unlisted_labels)
    options = {"label_type": label_type, "drop_unlisted_labels": drop_unlisted_labels, "keep_empty": keep_empty}
    return _build_splits(raws, resolver, dataset_name="jsonl", verify_images=verify_images, strict=strict,
                         options=options, num_threads=num_threads, keep_empty=keep_empty)


# --------------------------------------------------------------------------- hub

_INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def _label_kind(feature: Any, column: str, split: str) -> tuple[str, Optional[list[str]]]:
    """('classlabel', names) | ('single', names) | ('string', None) | ('int', None)."""
    if isinstance(feature, datasets.ClassLabel):
        return "single", list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(feature, (datasets.List, datasets.LargeList)) or inner is not None:
        if isinstance(inner, datasets.ClassLabel):
            return "classlabel", list(inner.names)
        if isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string"):
            return "string", None
        if isinstance(inner, datasets.Value) and inner.dtype in _INT_TYPES:
            return "int", None
    raise DatasetLayoutError(
        f"hub split {split!r}: label column {column!r} has feature {feature}; expected a list of ClassLabel, "
        "a list of strings, a list of integers, or a single ClassLabel"
    )


def _empty_saved_splits(data_dir: str) -> str:
    """'split 'x'' for each split of a save_to_disk folder that holds no data file."""
    empty = []
    for name in sorted(os.listdir(data_dir)):
        state = os.path.join(data_dir, name, "state.json")
        try:
            with open(state, encoding="utf-8") as fh:
                if not json.load(fh).get("_data_files"):
                    empty.append(f"split {name!r}")
        except (OSError, ValueError, AttributeError):
            continue
    return ", ".join(empty)


def load_hub(
    data_dir: str,
    *,
    image_column: str = "image",
    label_column: str = "labels",
    unknown_label_column: Optional[str] = None,
    classes: Union[None, str, Sequence[str]] = None,
    drop_unlisted_labels: bool = False,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    config_name: Optional[str] = None,
    revision: Optional[str] = None,
    verify_images: Union[bool, str] = False,
    strict: bool = False,
    **load_dataset_kwargs: Any,
) -> datasets.DatasetDict:
    """Any ``datasets`` dataset: a folder written by ``save_to_disk`` (read with
    ``load_from_disk``) or anything ``datasets.load_dataset(data_dir, config_name,
    revision=...)`` opens (a Hub repo id, a local data folder).

    ``image_column`` (an ``Image`` feature or path strings) becomes ``image``;
    ``label_column`` (list of ``ClassLabel``, list of names, list of indices, or a
    single ``ClassLabel``) becomes ``labels``; ``unknown_label_column`` (same kinds)
    becomes ``unknown_labels``. Splits named ``val``/``valid`` are renamed
    ``validation`` unless ``splits`` (a list, or ``{split: their split}``) says
    otherwise. Images are not checked by default (``verify_images=True`` decodes each
    one's header, including embedded bytes).
    """
    is_saved = os.path.isdir(data_dir) and (
        os.path.isfile(os.path.join(data_dir, "dataset_dict.json")) or os.path.isfile(os.path.join(data_dir, "state.json"))
    )
    if is_saved:
        try:
            loaded = datasets.load_from_disk(data_dir)
        except FileNotFoundError as exc:
            raise MissingDatasetFileError(f"hub: the saved dataset folder {data_dir!r} lacks a file: {exc}") from exc
        except IndexError as exc:  # datasets cannot reload a split saved with no rows (no shard at all)
            raise DatasetLayoutError(f"hub: {_empty_saved_splits(data_dir) or 'a split'} of {data_dir!r} is empty") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:  # truncated Arrow shards, damaged JSON metadata
            raise DatasetLayoutError(
                f"hub: cannot read the saved dataset folder {data_dir!r} (damaged or truncated?): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    else:
        try:
            loaded = datasets.load_dataset(data_dir, config_name, revision=revision, **load_dataset_kwargs)
        except FileNotFoundError as exc:
            raise MissingDatasetFileError(
                f"hub: {data_dir!r} is neither a folder written by save_to_disk nor a dataset load_dataset can find ({exc})"
            ) from exc
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    available = dict(loaded)
    if isinstance(splits, Mapping):
        chosen = dict(splits)
    elif splits is not None:
        chosen = {s: s for s in ([splits] if isinstance(splits, str) else splits)}
    else:
        chosen = {s: s for s in available}
        for alias in ("val", "valid"):
            if alias in chosen and "validation" not in chosen:
                chosen["validation"] = chosen.pop(alias)
    for ours, theirs in chosen.items():
        if theirs not in available:
            raise DatasetLayoutError(f"hub: split {theirs!r} (for {ours!r}) not in {data_dir!r}; it has {sorted(available)}")

    given = _class_option(classes, data_dir if is_saved else None) if classes is not None else None
    kinds = {}
    for ours, theirs in chosen.items():
        ds = available[theirs]
        for col in (image_column, label_column) + ((unknown_label_column,) if unknown_label_column else ()):
            if col not in ds.column_names:
                raise DatasetLayoutError(f"hub split {theirs!r}: no column {col!r}; columns are {ds.column_names}")
        kinds[ours] = _label_kind(ds.features[label_column], label_column, theirs)
        if len(ds) == 0:
            raise DatasetLayoutError(f"hub split {theirs!r} is empty")

    # one class list for every split
    feature_names = {tuple(n) for k, n in kinds.values() if n is not None}
    if len(feature_names) > 1:
        raise DatasetLayoutError(f"hub: the splits' label features disagree on the class names: {sorted(feature_names)}")
    if given is not None:
        names = given
    elif feature_names:
        names = list(next(iter(feature_names)))
    else:
        values = set()
        for ours, theirs in chosen.items():
            col = available[theirs].data.column(label_column).combine_chunks().flatten()
            values.update(v for v in col.to_pylist() if v is not None)
        if any(k == "string" for k, _ in kinds.values()):
            names = sorted(str(v) for v in values)
        else:
            names = [str(i) for i in range(max(values, default=-1) + 1)]
    names = check_class_names(names, f"hub {data_dir}")
    index = {c: i for i, c in enumerate(names)}
    label_feature = datasets.List(datasets.ClassLabel(names=names))

    def convert(ds: datasets.Dataset, column: str, kind: str, own: Optional[list[str]], split: str) -> tuple[pa.Array, dict]:
        col = ds.data.column(column).combine_chunks()
        if kind == "single":
            rows = [[] if v is None else [v] for v in col.to_pylist()]
        else:
            rows = [v or [] for v in col.to_pylist()]
        dropped: dict[str, int] = {}
        unknown: set = set()
        out = []
        for row in rows:
            ids = set()
            for v in row:
                if kind in ("classlabel", "single"):
                    key = own[v]
                elif kind == "int":
                    key = str(v) if given is None else (names[v] if 0 <= v < len(names) else str(v))
                else:
                    key = str(v)
                i = index.get(key)
                if i is None:
                    if drop_unlisted_labels:
                        dropped[key] = dropped.get(key, 0) + 1
                    else:
                        unknown.add(key)
                    continue
                ids.add(i)
            out.append(sorted(ids))
        if unknown:
            raise unknown_names_error(f"hub split {split!r} column {column!r}", unknown, names,
                                      " Pass drop_unlisted_labels=True to drop them.")
        return pa.array(out, type=pa.list_(pa.int64())), dropped

    result = {}
    for ours, theirs in chosen.items():
        ds = available[theirs]
        kind, own = kinds[ours]
        labels, dropped = convert(ds, label_column, kind, own, theirs)
        unknown_arr = None
        if unknown_label_column:
            ukind, uown = _label_kind(ds.features[unknown_label_column], unknown_label_column, theirs)
            unknown_arr, _ = convert(ds, unknown_label_column, ukind, uown, theirs)
        keep_cols = [image_column]
        ds = ds.select_columns(keep_cols)
        if image_column != "image":
            ds = ds.rename_column(image_column, "image")
        if not isinstance(ds.features["image"], datasets.Image):
            ds = ds.cast_column("image", datasets.Image())
        ds = ds.add_column("labels", labels, feature=label_feature)
        if unknown_arr is not None:
            ds = ds.add_column("unknown_labels", unknown_arr, feature=label_feature)
        skipped: dict = {"total": 0}
        examples = []
        if verify_images:
            ds, skipped, examples = _verify_hub_images(ds, ours, strict)
        report = {
            "dataset": "hub", "split": ours, "source": f"{data_dir}:{theirs}", "num_rows": len(ds),
            "num_classes": len(names), "verify_images": "decode" if verify_images else "none",
            "skipped": skipped, "skipped_examples": examples,
            "options": {"image_column": image_column, "label_column": label_column,
                        "unknown_label_column": unknown_label_column, "drop_unlisted_labels": drop_unlisted_labels},
            "dropped_labels": dict(sorted(dropped.items())),
        }
        ds.info.description = json.dumps({REPORT_KEY: report}, sort_keys=True)
        result[ours] = ds
    return merge_dict(result)


def _verify_hub_images(ds: datasets.Dataset, split: str, strict: bool):
    from collections import Counter

    from .core import InvalidImageError
    from .images import ImageOpenError, open_rgb

    raw = ds.cast_column("image", datasets.Image(decode=False))
    bad, reasons = [], Counter()
    examples = []
    for i, item in enumerate(raw.select_columns(["image"])):
        src = item["image"]
        try:
            if src is None:
                raise ImageOpenError("no image")
            open_rgb(src)
        except ImageOpenError as exc:
            bad.append(i)
            reason = "missing" if src is None or (src.get("bytes") is None and src.get("path") and not os.path.exists(src["path"])) else "corrupt"
            reasons[reason] += 1
            if len(examples) < 20:
                examples.append({"path": (src or {}).get("path") or f"row {i}", "reason": f"{reason}: {exc}", "row": f"row {i}"})
    if bad and strict:
        raise InvalidImageError(f"hub split {split!r}: {len(bad)} bad image(s) with strict=True: {examples[:5]}")
    if bad:
        warn_skipped(f"hub split {split!r}: skipped {len(bad)} of {len(ds)} images ({dict(reasons)}); "
                     "counts are in the split's load report")
        keep = sorted(set(range(len(ds))) - set(bad))
        ds = ds.select(keep)
    return ds, {"total": len(bad), **dict(sorted(reasons.items()))}, examples
