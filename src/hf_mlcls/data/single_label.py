"""Single-label splits: rows ``{"image": Image(), "label": ClassLabel(names=[...])}``.

The single-label loaders (``imagefolder``, ``cifar100``, ``stanford-cars``) parse their
layout into paths (or encoded image bytes) and one class index per row; this module
checks the images the way the multi-label loaders do (same ``verify_images`` levels,
same skipped-image warning and load report) and builds the ``datasets.Dataset``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Optional, Sequence, Union

import datasets
import pyarrow as pa

from .core import REPORT_KEY, DatasetLayoutError, _verify_level, screen_images

__all__ = ["single_label_features", "build_single_label_dataset", "is_single_label", "to_single_label"]


def single_label_features(class_names: Sequence[str]) -> datasets.Features:
    return datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(class_names))})


def is_single_label(dataset: Union[datasets.Dataset, datasets.DatasetDict]) -> bool:
    """True when the rows carry one ``label`` (ClassLabel) rather than a ``labels`` list."""
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    feature = dataset.features.get("label")
    return isinstance(feature, datasets.ClassLabel) and "labels" not in dataset.features


def build_single_label_dataset(
    labels: Sequence[int],
    class_names: Sequence[str],
    *,
    dataset_name: str,
    split: str,
    paths: Optional[Sequence[str]] = None,
    image_bytes: Optional[Sequence[bytes]] = None,
    refs: Optional[Sequence[str]] = None,
    source: str = "",
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    options: Optional[dict] = None,
    extra_report: Optional[dict] = None,
    num_threads: int = 8,
) -> datasets.Dataset:
    """Build one split from image ``paths`` (checked at ``verify_images``) or already
    encoded ``image_bytes`` (checked by the loader that made them), with one class index
    per row. ``refs`` names each row (``file:line``) in the report's examples."""
    if (paths is None) == (image_bytes is None):
        raise ValueError("pass exactly one of paths= and image_bytes=")
    n = len(labels)
    if n == 0:
        raise DatasetLayoutError(f"{dataset_name} split {split!r} is empty ({source or 'no rows'})")
    counts: Counter = Counter()
    examples: list[dict] = []
    keep = list(range(n))
    level = "none"
    if paths is not None:
        level = _verify_level(verify_images, n)
        screened, _, counts, examples = screen_images(
            list(paths), level, refs.__getitem__ if refs is not None else None,
            dataset_name=dataset_name, split=split, strict=strict, num_threads=num_threads,
        )
        keep = keep if screened is None else screened
    kept = len(keep)
    if paths is not None:
        image_column = pa.StructArray.from_arrays(
            [pa.nulls(kept, type=pa.binary()), pa.array([str(paths[i]) for i in keep], type=pa.string())], names=["bytes", "path"]
        )
    else:
        image_column = pa.StructArray.from_arrays(
            [pa.array([image_bytes[i] for i in keep], type=pa.binary()), pa.nulls(kept, type=pa.string())], names=["bytes", "path"]
        )
    features = single_label_features(class_names)
    table = pa.Table.from_pydict(
        {"image": image_column, "label": pa.array([int(labels[i]) for i in keep], type=pa.int64())},
        schema=features.arrow_schema,
    )
    report: dict[str, Any] = {
        "dataset": dataset_name,
        "split": split,
        "source": source,
        "num_rows": kept,
        "num_classes": len(class_names),
        "verify_images": level,
        "skipped": {"total": n - kept, **dict(sorted(counts.items()))},
        "skipped_examples": examples,
        "options": options or {},
        **(extra_report or {}),
    }
    info = datasets.DatasetInfo(
        description=json.dumps({REPORT_KEY: report}, sort_keys=True), features=features, dataset_name=dataset_name
    )
    return datasets.Dataset(table, info=info, split=datasets.NamedSplit(split))


def to_single_label(dataset: Union[datasets.Dataset, datasets.DatasetDict]) -> Union[datasets.Dataset, datasets.DatasetDict]:
    """A multi-label split whose every row has exactly one positive, as single-label rows
    (``labels: [k]`` becomes ``label: k``; other columns are dropped). A row with no or
    several labels is a :class:`DatasetLayoutError` naming the split and row."""
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict({name: to_single_label(ds) for name, ds in dataset.items()})
    if "labels" not in dataset.features:
        raise DatasetLayoutError(f"split {dataset.split!s}: no 'labels' column to turn into a single label")
    names = dataset.features["labels"].feature.names
    column = dataset.data.column("labels").to_pylist()
    bad = [i for i, row in enumerate(column) if len(row) != 1]
    if bad:
        raise DatasetLayoutError(
            f"split {dataset.split!s}: row {bad[0]} has {len(column[bad[0]])} labels, a single-label row needs exactly one"
            + (f" ({len(bad)} such rows)" if len(bad) > 1 else "")
        )
    table = pa.Table.from_pydict(
        {"image": dataset.data.column("image"), "label": pa.array([row[0] for row in column], type=pa.int64())},
        schema=single_label_features(names).arrow_schema,
    )
    info = datasets.DatasetInfo(description=dataset.info.description, features=single_label_features(names),
                                dataset_name=dataset.info.dataset_name)
    return datasets.Dataset(table, info=info, split=dataset.split)
