"""One door to every loader: ``load_multilabel_dataset(name, data_dir, **options)``."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import datasets

__all__ = ["list_datasets", "load_multilabel_dataset"]


def _registry() -> dict[str, tuple[Callable[..., datasets.DatasetDict], dict, str]]:
    from .coco import load_coco
    from .demo import load_demo
    from .generic import load_csv, load_hub, load_jsonl
    from .nuswide import load_nus_wide
    from .nuswide_zsl import load_nus_wide_zsl
    from .openimages import load_openimages
    from .voc import load_voc
    from .cifar100 import load_cifar100
    from .imagefolder import load_imagefolder
    from .stanford_cars import load_stanford_cars
    from .visual_genome import load_visual_genome

    return {
        "coco2014": (load_coco, {"year": 2014}, "MS-COCO 2014, 80 classes (annotations/instances_*2014.json)"),
        "coco2017": (load_coco, {"year": 2017}, "MS-COCO 2017, 80 classes (annotations/instances_*2017.json)"),
        "voc2007": (load_voc, {"year": 2007}, "PASCAL VOC 2007, 20 classes (VOCdevkit/VOC2007)"),
        "voc2012": (load_voc, {"year": 2012}, "PASCAL VOC 2012, 20 classes (VOCdevkit/VOC2012)"),
        "nus-wide": (load_nus_wide, {}, "NUS-WIDE 81 concepts (official release layout or data.csv)"),
        "nus-wide-zsl": (load_nus_wide_zsl, {}, "NUS-WIDE zero-shot: train on 925 seen labels, test on 81 unseen (zsl) / all 1,006 (gzsl)"),
        "openimages-v6": (load_openimages, {}, "Open Images v6 human-verified image labels (9,605 trainable classes)"),
        "csv": (load_csv, {}, "one CSV per split: image path + label list"),
        "jsonl": (load_jsonl, {}, "one JSON-lines file per split: image path + label list"),
        "hub": (load_hub, {}, "any datasets repo or save_to_disk folder with an image and a multi-label column"),
        "demo": (load_demo, {}, "built-in 2x2 digit mosaics, 10 classes, generated offline in COCO format"),
        "visual-genome": (load_visual_genome, {}, "Visual Genome VG-500, 500 classes (C-Tran's lists and label index)"),
        "imagefolder": (load_imagefolder, {}, "single-label: one folder per class (ImageNet's train/ and val/)"),
        "cifar100": (load_cifar100, {}, "single-label: CIFAR-100 binary release (train.bin, test.bin), 100 classes"),
        "stanford-cars": (load_stanford_cars, {}, "single-label: Stanford Cars devkit .mat files, 196 classes"),
    }


_ALIASES = {"nuswide": "nus-wide", "nus_wide": "nus-wide", "openimages": "openimages-v6", "open-images-v6": "openimages-v6",
            "openimages_v6": "openimages-v6", "nuswide-zsl": "nus-wide-zsl", "nus_wide_zsl": "nus-wide-zsl",
            "vg500": "visual-genome", "vg-500": "visual-genome", "visual_genome": "visual-genome",
            "cifar-100": "cifar100", "stanford_cars": "stanford-cars", "cars": "stanford-cars"}


def list_datasets(with_descriptions: bool = False):
    """Names accepted by :func:`load_multilabel_dataset` (``{name: description}`` with
    ``with_descriptions=True``)."""
    reg = _registry()
    if with_descriptions:
        return {name: desc for name, (_, _, desc) in reg.items()}
    return list(reg)


def load_multilabel_dataset(name: str, data_dir: Optional[str] = None, **options: Any) -> datasets.DatasetDict:
    """Load a multi-label dataset from its own on-disk layout.

    Returns a ``DatasetDict`` (``train``, ``validation``, and ``test`` where the layout
    has one) whose rows are ``{"image": Image(), "labels": List(ClassLabel(names))}``
    plus ``unknown_labels`` (VOC difficult-only classes, csv/jsonl/hub when given) or
    ``negative_labels`` (Open Images verified negatives: everything else is unknown).
    Images are stored as paths and decoded only by the transforms. Each split's load
    report (skipped images, options) is in ``info.description``: read it with
    :func:`hf_mlcls.data.load_report`.

    ``data_dir`` is the dataset folder (``hub``: a repo id or ``save_to_disk`` folder;
    ``demo``: optional, default ``~/.cache/hf_mlcls/demo``). ``options`` are those of
    the loader (see docs/datasets.md); an unknown option is a ``TypeError`` listing
    the valid ones.
    """
    reg = _registry()
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in reg:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(reg)}")
    loader, fixed, _ = reg[key]
    params = inspect.signature(loader).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [p for p in params if p not in ("data_dir",) and p not in fixed and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    bad = [k for k in options if (k not in params or k in fixed or k == "data_dir") and not accepts_any]
    clash = [k for k in options if k in fixed]
    if bad or clash:
        raise TypeError(f"{key}: unknown option(s) {sorted(set(bad) | set(clash))}; valid options: {', '.join(valid)}")
    if data_dir is None and key != "demo":
        raise TypeError(f"{key}: data_dir is required (the dataset folder{'; or a repo id' if key == 'hub' else ''})")
    return loader(data_dir, **fixed, **options)
