"""The ``hub`` loader: any ``datasets`` dataset (a ``save_to_disk`` folder, a Hub repo id, a local data
folder ``load_dataset`` opens) with an image column and a label column of names or indices."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional, Sequence, Union

import datasets
import pyarrow as pa

from .core import (
    REPORT_KEY,
    DatasetLayoutError,
    MissingDatasetFileError,
    check_class_names,
    merge_dict,
    unknown_names_error,
    warn_skipped,
)
from .class_names import normalise_class_name
from .label_names import _class_option

__all__ = ["load_hub"]

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
            where = f"hub {data_dir} column {label_column!r}"
            names = sorted({normalise_class_name(v, where) for v in values})
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
        where = f"hub split {split!r} column {column!r}"
        for row in rows:
            ids = set()
            for v in row:
                if kind in ("classlabel", "single"):
                    key = own[v]
                elif kind == "int":
                    key = str(v) if given is None else (names[v] if 0 <= v < len(names) else str(v))
                else:
                    key = normalise_class_name(v, where)
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
            raise unknown_names_error(where, unknown, names,
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
