"""MS-COCO 2014/2017 (and anything written in COCO's instances format, such as the
``demo`` set): an image's labels are the categories of its annotations."""

from __future__ import annotations

import operator
import os
import re
from typing import Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import pyarrow as pa

from .core import (
    DatasetLayoutError,
    SplitRows,
    build_dataset,
    is_valid_path_text,
    merge_dict,
    parse_json_bytes,
    read_bytes,
    read_json_file,
    require_file,
    resolve_image_path,
    resolve_splits,
)
from .class_names import normalise_class_name

__all__ = ["COCO_CLASSES", "load_coco", "parse_coco_instances"]

#: The 80 MS-COCO 2014/2017 detection classes in ascending category-id order (1 ... 90): the order of
#: ``load_coco``'s classes and of both official code bases' class indices.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

LAYOUT = """  <data_dir>/
    annotations/instances_train{year}.json
    annotations/instances_val{year}.json
    train{year}/<file_name of each image>
    val{year}/<file_name of each image>"""


# A polygon segmentation: "segmentation": [[x, y, ...], ...] (numbers only). Crowd
# annotations' RLE dicts do not match and are parsed as they are.
_POLYGONS = re.compile(rb'"segmentation"\s*:\s*\[\s*\[[-0-9.,eE+\s\[\]]*\]')


def read_instances(path: str) -> dict:
    """Parse an ``instances_*.json`` without materialising the polygons.

    Polygons are most of a COCO file (and most of the Python objects a plain parse
    makes) but carry nothing an image-level label needs, so each polygon array is
    replaced by ``0`` in the bytes before parsing: a regular-expression pass that only
    touches ``"segmentation": [[numbers]]`` values, which nothing here reads. On a
    syntax error the original bytes are parsed again so the line and column are those
    of the file on disk (a syntax error inside a polygon goes unnoticed: polygons are
    not read).
    """
    raw = read_bytes(path, "COCO annotations")
    stripped = _POLYGONS.sub(b'"segmentation":0', raw)
    if len(stripped) == len(raw):
        del stripped
        return parse_json_bytes(raw, path, "COCO annotations")
    del raw
    try:
        return parse_json_bytes(stripped, path, "COCO annotations")
    except DatasetLayoutError:
        del stripped
        return read_json_file(path, "COCO annotations")


def _categories(data: dict, path: str) -> tuple[list[int], list[str]]:
    cats = data.get("categories")
    if not isinstance(cats, list) or not cats:
        raise DatasetLayoutError(f"{path}: no 'categories' list; not a COCO instances file")
    ids, names = [], []
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or not _is_int64(cat.get("id")) or "name" not in cat:
            raise DatasetLayoutError(
                f"{path}: categories[{i}] needs an integer 'id' (a JSON number, not a string, float or boolean) "
                f"and a 'name', got {cat!r}"
            )
        ids.append(cat["id"])
        names.append(normalise_class_name(cat["name"], f"{path}: categories[{i}] (id {cat['id']})"))
    order = np.argsort(ids, kind="stable")
    ids = [ids[i] for i in order]
    names = [names[i] for i in order]
    dup_ids = sorted({a for a, b in zip(ids, ids[1:]) if a == b})
    if dup_ids:
        raise DatasetLayoutError(f"{path}: duplicated category id(s) {dup_ids}")
    if len(set(names)) != len(names):
        seen, dup = set(), set()
        for n in names:
            (dup if n in seen else seen).add(n)
        raise DatasetLayoutError(f"{path}: duplicated category name(s) {sorted(dup)}")
    return ids, names


def _is_int64(value) -> bool:
    """An integer that fits an int64 (the standard library's parser gives any size)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _int_column(items: list, key: str, path: str, section: str) -> np.ndarray:
    """The ``key`` of every item as int64. Only JSON integers count: ``3.0``, ``"3"`` and ``true``
    are refused, never converted."""
    try:
        values = list(map(operator.itemgetter(key), items))
        if set(map(type, values)) <= {int}:  # exactly int: bool, float and str are other types
            return np.fromiter(values, dtype=np.int64, count=len(values))
    except (KeyError, TypeError, IndexError, OverflowError):
        pass
    for i, item in enumerate(items):
        value = item.get(key) if isinstance(item, dict) else None
        if not _is_int64(value):
            ident = item.get("id") if isinstance(item, dict) else None
            kind = "missing" if not isinstance(item, dict) or key not in item else f"a {type(value).__name__}"
            raise DatasetLayoutError(
                f"{path}: {section}[{i}] (id {ident!r}) has no integer {key!r}: {value!r} ({kind}); "
                "write it as a JSON integer (no quotes, no decimals)"
            ) from None
    raise DatasetLayoutError(f"{path}: {section} holds an integer {key!r} that does not fit 64 bits")


def parse_coco_instances(
    path: str,
    image_dir: str,
    root: str,
    *,
    keep_empty: bool = True,
    include_crowd: bool = True,
) -> tuple[SplitRows, list[int], list[str]]:
    """Read one ``instances_*.json``; return the rows, category ids and names (id order)."""
    data = read_instances(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetLayoutError(f"{path}: no 'images' list; not a COCO instances file")
    if not isinstance(data.get("annotations"), list):
        raise DatasetLayoutError(
            f"{path}: no 'annotations' list (an image_info_* file has no labels; use instances_*.json)"
        )
    cat_ids, names = _categories(data, path)
    images, anns = data["images"], data["annotations"]
    del data

    image_ids = _int_column(images, "id", path, "images")
    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
        shown = sorted({int(sorted_ids[i]) for i in dup[:10]})
        raise DatasetLayoutError(f"{path}: duplicated image id(s) {shown}")

    ann_images = _int_column(anns, "image_id", path, "annotations")
    ann_cats = _int_column(anns, "category_id", path, "annotations")
    if not include_crowd and anns:
        flags = [a.get("iscrowd", 0) for a in anns]
        bad = next((i for i, v in enumerate(flags) if v not in (0, 1) or type(v) not in (int, bool)), None)
        if bad is not None:
            raise DatasetLayoutError(
                f"{path}: annotations[{bad}] (id {anns[bad].get('id')!r}) has 'iscrowd' {flags[bad]!r}; expected 0 or 1"
            )
        crowd = np.asarray(flags, dtype=bool)
        ann_images, ann_cats = ann_images[~crowd], ann_cats[~crowd]

    # image id -> row, category id -> class index, both by binary search
    pos = np.searchsorted(sorted_ids, ann_images)
    pos_c = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    bad = np.flatnonzero((pos >= len(sorted_ids)) | (sorted_ids[pos_c] != ann_images)) if len(sorted_ids) else np.arange(len(ann_images))
    if bad.size:
        i = int(bad[0])
        raise DatasetLayoutError(
            f"{path}: {bad.size} annotation(s) point to image ids not in 'images', e.g. image_id {int(ann_images[i])}"
        )
    rows = order[pos_c]
    cat_arr = np.asarray(cat_ids, dtype=np.int64)
    cpos = np.minimum(np.searchsorted(cat_arr, ann_cats), len(cat_arr) - 1)
    bad = np.flatnonzero(cat_arr[cpos] != ann_cats)
    if bad.size:
        unknown = sorted({int(c) for c in ann_cats[bad]})
        raise DatasetLayoutError(
            f"{path}: annotation(s) use category id(s) {unknown[:20]} not in 'categories' (known ids {cat_ids[:10]}...)"
        )

    # unique (row, class) pairs -> CSR lists, with no Python loop over annotations
    num_classes = len(cat_ids)
    keys = np.sort(rows.astype(np.int64) * num_classes + cpos)
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys
    pair_rows, pair_cls = keys // num_classes, keys % num_classes
    counts = np.bincount(pair_rows, minlength=len(images))
    keep = np.arange(len(images)) if keep_empty else np.flatnonzero(counts > 0)
    offsets = np.zeros(len(keep) + 1, dtype=np.int32)
    np.cumsum(counts[keep], out=offsets[1:])
    # rows without labels contribute no pairs, so dropping them leaves the values as they are
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(pair_cls, type=pa.int64()))

    paths = []
    sep_chars = ("/", "\\", os.sep)
    prefix = image_dir + os.sep
    for i in keep.tolist():
        name = images[i].get("file_name") if isinstance(images[i], dict) else None
        if not isinstance(name, str):
            raise DatasetLayoutError(f"{path}: image id {int(image_ids[i])} has no 'file_name' string")
        if name not in (".", "..") and is_valid_path_text(name) and not any(c in name for c in sep_chars):
            paths.append(prefix + name)  # a bare file name cannot leave image_dir
        else:
            paths.append(resolve_image_path(root, image_dir, name, f"{path}: image id {int(image_ids[i])}"))
    kept_ids = image_ids[keep]
    base = os.path.basename(path)
    split_rows = SplitRows(
        paths=paths,
        labels=labels,
        refs=lambda i: f"{base}: image id {int(kept_ids[i])}",
        source=path,
        image_roots=(root, image_dir),
        extra_report={
            "num_images_in_file": len(images),
            "num_annotations": len(anns),
            "dropped_empty": int(len(images) - len(keep)),
        },
    )
    return split_rows, cat_ids, names


def load_coco(
    data_dir: str,
    *,
    year: int = 2014,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    keep_empty: bool = True,
    include_crowd: bool = True,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    dataset_name: Optional[str] = None,
) -> datasets.DatasetDict:
    """Load COCO ``instances_{train,val}{year}.json`` into ``train`` / ``validation``.

    Args:
        data_dir: folder holding ``annotations/`` and the image folders.
        year: 2014 or 2017 (any value works for a COCO-format folder named that way).
        splits: ``None`` (train and validation, both required), a list of our split
            names, or a mapping ``{split: native}`` where ``native`` names both
            ``annotations/instances_{native}.json`` and the image folder ``{native}/``.
        keep_empty: keep images that have no annotation. ``True`` (default) is the
            Query2Label protocol (all 40,504 val2014 images); ``False`` is the
            ML-Decoder/ASL protocol (40,137 val2014 images with at least one object).
        include_crowd: count ``iscrowd`` annotations as labels (both official loaders do).
        verify_images / strict / num_threads: the load-time image check (see docs/datasets.md).
    """
    name = dataset_name or f"coco{year}"
    root = os.path.abspath(data_dir)
    layout = LAYOUT.format(year=year)
    require_file(root, name, layout, directory=True)
    native = {"train": f"train{year}", "validation": f"val{year}"}

    def ann_path(n: str) -> str:
        return os.path.join(root, "annotations", f"instances_{n}.json")

    chosen, required = resolve_splits(splits, native, ("train", "validation"), lambda n: os.path.isfile(ann_path(n)))
    options = {"keep_empty": keep_empty, "include_crowd": include_crowd, "year": year}
    out: dict[str, datasets.Dataset] = {}
    ref_names: Optional[list[str]] = None
    ref_source = ""
    for split, nat in chosen.items():
        path = require_file(ann_path(nat), f"{name} split {split!r}", layout)
        image_dir = os.path.join(root, nat)
        require_file(image_dir, f"{name} split {split!r} images", layout, directory=True)
        rows, _, names = parse_coco_instances(path, image_dir, root, keep_empty=keep_empty, include_crowd=include_crowd)
        if ref_names is None:
            ref_names, ref_source = names, path
        elif names != ref_names:
            raise DatasetLayoutError(f"{path}: categories differ from those of {ref_source}")
        out[split] = build_dataset(
            rows, names, dataset_name=name, split=split, verify_images=verify_images,
            strict=strict, options=options, num_threads=num_threads,
        )
    return merge_dict(out)
