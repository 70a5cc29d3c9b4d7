"""One door to every loader: ``load_multilabel_dataset(name, data_dir, **options)``; the names are
those of :mod:`hf_mlcls.data.registry`."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import datasets

from .registry import dataset_spec, list_datasets

__all__ = ["list_datasets", "load_multilabel_dataset"]


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
    spec = dataset_spec(name)
    key, loader, fixed = spec.name, spec.load_function(), spec.options
    params = inspect.signature(loader).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [p for p in params if p not in ("data_dir",) and p not in fixed and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    bad = [k for k in options if (k not in params or k in fixed or k == "data_dir") and not accepts_any]
    clash = [k for k in options if k in fixed]
    if bad or clash:
        raise TypeError(f"{key}: unknown option(s) {sorted(set(bad) | set(clash))}; valid options: {', '.join(valid)}")
    if data_dir is None and spec.needs_data_dir:
        raise TypeError(f"{key}: data_dir is required (the dataset folder{'; or a repo id' if key == 'hub' else ''})")
    return loader(data_dir, **fixed, **options)
