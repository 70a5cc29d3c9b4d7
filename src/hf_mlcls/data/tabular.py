"""Per-split annotation files (CSV, JSON lines, NUS-WIDE's data.csv) into a ``DatasetDict``: the
rows of each split with their labels still as tokens, the split files of a folder, and one build
that resolves every split's labels against one class list."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

import datasets

from .core import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SplitRows,
    build_dataset,
    first_repeat,
    merge_dict,
    resolve_splits,
)
from .label_names import _LabelResolver

@dataclass
class _RawSplit:
    """Rows of one split with their labels still as tokens."""

    source: str
    paths: list[str] = field(default_factory=list)
    tokens: list[list] = field(default_factory=list)
    unknown_tokens: Optional[list[list]] = None
    refs: list[str] = field(default_factory=list)
    image_roots: tuple = ()



def _check_duplicate_paths(raw: _RawSplit) -> None:
    repeat = first_repeat(raw.paths)
    if repeat is not None:
        j, i, p = repeat
        raise DatasetLayoutError(f"{raw.refs[i]}: image {p} is listed again (first at {raw.refs[j]}); give each image one row")


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
            paths=paths, labels=labels, unknown_labels=unknown, refs=refs, source=raw.source, image_roots=raw.image_roots,
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
