"""The ``jsonl`` layout: one JSON-lines file per split, an object with an image path and labels per line."""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence, Union

import datasets

from .core import DatasetLayoutError, require_file, resolve_image_path, utf8_text
from .label_names import _class_option, _LabelResolver, parse_label_cell
from .tabular import _build_splits, _file_splits, _RawSplit

__all__ = ["JSONL_LAYOUT", "load_jsonl"]

JSONL_LAYOUT = """  <data_dir>/
    train.jsonl, validation.jsonl (or val.jsonl), optional test.jsonl
        one object per line: {{"{image}": "images/001.jpg", "{labels}": ["cat", "dog"]}}
    optional classes.txt (one class name per line: fixes the class order)
    the images, at the paths the files give (relative to <data_dir>)"""



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
        raw = _RawSplit(source=path, image_roots=(root,))
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
