"""PASCAL VOC 2007/2012: labels from ``Annotations/<id>.xml``, split membership from
``ImageSets/Main/<split>.txt``; a class whose every object in an image is marked
``difficult`` is an unknown label of that image (VOC's own ``0`` entries)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Mapping, Optional, Sequence, Union

import datasets

from .core import (
    DatasetLayoutError,
    MissingDatasetFileError,
    SplitRows,
    build_dataset,
    merge_dict,
    resolve_image_path,
    resolve_splits,
    unknown_names_error,
    utf8_text,
)
from .class_names import normalise_class_name

__all__ = ["VOC_CLASSES", "load_voc"]

#: The 20 VOC classes in the standard (alphabetical) order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

LAYOUT = """  <data_dir>/VOCdevkit/VOC{year}/   (<data_dir> may also be VOCdevkit/ or VOC{year}/ itself)
    Annotations/<image id>.xml
    ImageSets/Main/train.txt, val.txt, trainval.txt (test.txt with the test set)
    JPEGImages/<image id>.jpg"""


def _find_voc_root(data_dir: str, year: int) -> str:
    candidates = [
        os.path.join(data_dir, "VOCdevkit", f"VOC{year}"),
        os.path.join(data_dir, f"VOC{year}"),
        data_dir,
    ]
    for c in candidates:
        if os.path.isdir(os.path.join(c, "Annotations")) and os.path.isdir(os.path.join(c, "ImageSets", "Main")):
            return c
    tried = "\n".join(f"  {os.path.join(c, 'Annotations')}" for c in candidates)
    raise MissingDatasetFileError(
        f"voc{year}: no VOC folder with Annotations/ and ImageSets/Main/ found; looked for\n{tried}\n"
        f"Expected layout:\n{LAYOUT.format(year=year)}"
    )


def _read_image_set(path: str) -> list[tuple[str, int]]:
    ids, seen = [], {}
    with open(path, encoding="utf-8-sig") as fh, utf8_text(path):
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            image_id = parts[0]
            if image_id in seen:
                raise DatasetLayoutError(f"{path}:{lineno}: duplicated image id {image_id!r} (first on line {seen[image_id]})")
            seen[image_id] = lineno
            ids.append((image_id, lineno))
    return ids


def _parse_xml(path: str) -> list[tuple[str, bool]]:
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise MissingDatasetFileError(f"VOC annotation {path} does not exist") from None
    except ET.ParseError as exc:
        line, col = exc.position
        raise DatasetLayoutError(f"{path}: malformed XML at line {line}, column {col}: {exc}") from None
    objects = []
    for k, obj in enumerate(tree.getroot().iter("object"), 1):
        name = normalise_class_name(obj.findtext("name") or "", f"{path}: object {k} <name>")
        text = (obj.findtext("difficult") or "0").strip()
        if text not in ("0", "1"):
            raise DatasetLayoutError(f"{path}: object {k} ({name!r}) has <difficult> {text!r}; expected 0 or 1")
        objects.append((name, text == "1"))
    return objects


def load_voc(
    data_dir: str,
    *,
    year: int = 2007,
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    difficult_as_positive: bool = False,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    dataset_name: Optional[str] = None,
) -> datasets.DatasetDict:
    """Load VOC into ``train`` / ``validation`` (VOC ``train`` / ``val``), plus ``test``
    for VOC2007 when ``ImageSets/Main/test.txt`` is there.

    Args:
        splits: a list of our split names, or a mapping ``{split: image set}``, e.g.
            the usual VOC2007 protocol ``{"train": "trainval", "validation": "test"}``.
        difficult_as_positive: count ``difficult`` objects as ordinary positives
            (rows then have no ``unknown_labels``). By default a class present only
            through difficult objects is in ``unknown_labels`` (-1 in the label vector).
    """
    name = dataset_name or f"voc{year}"
    root_dir = os.path.abspath(data_dir)
    voc = _find_voc_root(root_dir, year)
    layout = LAYOUT.format(year=year)
    main = os.path.join(voc, "ImageSets", "Main")
    native = {"train": "train", "validation": "val"}
    if year == 2007:
        native["test"] = "test"

    def set_path(n: str) -> str:
        return os.path.join(main, f"{n}.txt")

    chosen, _ = resolve_splits(splits, native, ("train", "validation"), lambda n: os.path.isfile(set_path(n)))
    index = {c: i for i, c in enumerate(VOC_CLASSES)}
    ann_dir = os.path.join(voc, "Annotations")
    img_dir = os.path.join(voc, "JPEGImages")
    out = {}
    for split, nat in chosen.items():
        path = set_path(nat)
        if not os.path.isfile(path):
            raise MissingDatasetFileError(f"{name} split {split!r}: image set {path} does not exist.\nExpected layout:\n{layout}")
        rows = SplitRows(unknown_labels=None if difficult_as_positive else [], refs=[], source=path,
                         image_roots=(root_dir, img_dir))
        unknown_names: dict[str, str] = {}
        for image_id, lineno in _read_image_set(path):
            where = f"{path}:{lineno}"
            xml_path = resolve_image_path(root_dir, ann_dir, image_id + ".xml", where)
            if not os.path.isfile(xml_path):
                raise MissingDatasetFileError(
                    f"{name} split {split!r}: annotation {xml_path} (listed at {where}) does not exist.\n"
                    f"Expected layout:\n{layout}"
                )
            positive, hard = set(), set()
            for obj_name, difficult in _parse_xml(xml_path):
                cls = index.get(obj_name)
                if cls is None:
                    unknown_names.setdefault(obj_name, xml_path)
                    continue
                (hard if difficult and not difficult_as_positive else positive).add(cls)
            rows.paths.append(resolve_image_path(root_dir, img_dir, image_id + ".jpg", where))
            rows.labels.append(sorted(positive))
            if rows.unknown_labels is not None:
                rows.unknown_labels.append(sorted(hard - positive))
            rows.refs.append(f"{os.path.basename(path)}:{lineno} (id {image_id})")
        if unknown_names:
            files = "; ".join(f"{n!r} in {p}" for n, p in list(unknown_names.items())[:5])
            raise unknown_names_error(f"{name} split {split!r}", unknown_names, list(VOC_CLASSES), f" First seen: {files}")
        out[split] = build_dataset(
            rows, VOC_CLASSES, dataset_name=name, split=split, verify_images=verify_images, strict=strict,
            options={"difficult_as_positive": difficult_as_positive, "image_set": nat, "year": year},
            num_threads=num_threads,
        )
    return merge_dict(out)
