"""The one table of dataset names.

Every name the package accepts for a dataset (``load_multilabel_dataset``, ``examples/train.py
--dataset``, the model card's dataset, ``hf-mlcls convert --labels``) is looked up here. A new
dataset is one :class:`DatasetSpec` in ``_SPECS``: its loader, the options that name fixes, a
description, the title a model card shows, other spellings, and, where the package ships them,
its class names.

Loaders and class-name lists are named as ``"module:attribute"`` inside ``hf_mlcls.data`` and
imported only when asked for, so reading the table costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

__all__ = ["DatasetSpec", "dataset_spec", "find_dataset", "find_label_set", "label_set_names", "list_datasets"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset name and everything the package decides from it.

    Attributes:
        name: the canonical name (lower case, ``-`` between words).
        loader: ``"module:function"`` in ``hf_mlcls.data`` called as ``function(data_dir, **options)``;
            None for a name known only for its label set (no loader in this package).
        description: one line for ``list_datasets(with_descriptions=True)``.
        title: how a model card names the dataset (None: the name as given).
        options: loader options this name fixes (``coco2014`` is ``load_coco`` with ``year=2014``).
        aliases: other spellings accepted for ``name``.
        label_set: the class-name list this dataset shares with others (``coco`` for both COCO
            years), as ``hf-mlcls convert --labels`` names it; None when its classes come from the data.
        class_names: ``"module:ATTRIBUTE"`` of the names in class-index order; None when the package
            does not ship them (they are read from the data, or from a label file).
        needs_data_dir: False when the loader has a default folder (the generated demo set).
        zero_shot: the dataset holds out labels itself (train on seen, evaluate on unseen), so
            training is zero-shot by default.
        word_vectors: a file in the dataset folder holding the benchmark's own label embeddings,
            used as the text encoder unless another is given.
    """

    name: str
    loader: Optional[str]
    description: str
    title: Optional[str] = None
    options: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    label_set: Optional[str] = None
    class_names: Optional[str] = None
    needs_data_dir: bool = True
    zero_shot: bool = False
    word_vectors: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def load_function(self) -> Callable[..., Any]:
        if self.loader is None:
            raise ValueError(f"{self.name}: this package has no loader for it (it is known for its label set only)")
        return _resolve(self.loader)

    def names(self) -> Optional[tuple[str, ...]]:
        """The shipped class names in class-index order, or None when they are not shipped."""
        return None if self.class_names is None else tuple(_resolve(self.class_names))


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), attribute)


_SPECS = (
    DatasetSpec("coco2014", "coco:load_coco", "MS-COCO 2014, 80 classes (annotations/instances_*2014.json)",
                title="MS-COCO 2014", options={"year": 2014}, aliases=("coco14", "mscoco"), label_set="coco",
                class_names="coco:COCO_CLASSES"),
    DatasetSpec("coco2017", "coco:load_coco", "MS-COCO 2017, 80 classes (annotations/instances_*2017.json)",
                title="MS-COCO 2017", options={"year": 2017}, aliases=("coco17",), label_set="coco",
                class_names="coco:COCO_CLASSES"),
    DatasetSpec("voc2007", "voc:load_voc", "PASCAL VOC 2007, 20 classes (VOCdevkit/VOC2007)",
                title="PASCAL VOC 2007", options={"year": 2007}, label_set="voc", class_names="voc:VOC_CLASSES"),
    DatasetSpec("voc2012", "voc:load_voc", "PASCAL VOC 2012, 20 classes (VOCdevkit/VOC2012)",
                title="PASCAL VOC 2012", options={"year": 2012}, label_set="voc", class_names="voc:VOC_CLASSES"),
    DatasetSpec("nus-wide", "nuswide:load_nus_wide", "NUS-WIDE 81 concepts (official release layout or data.csv)",
                title="NUS-WIDE", aliases=("nuswide", "nus"), label_set="nus-wide",
                class_names="nuswide:NUS_WIDE_CLASSES"),
    DatasetSpec("nus-wide-zsl", "nuswide_zsl:load_nus_wide_zsl",
                "NUS-WIDE zero-shot: train on 925 seen labels, test on 81 unseen (zsl) / all 1,006 (gzsl)",
                title="NUS-WIDE (zero-shot: 925 seen, 81 unseen labels)", aliases=("nuswide-zsl",),
                zero_shot=True, word_vectors="wordvec_array.pth"),
    DatasetSpec("openimages-v6", "openimages:load_openimages",
                "Open Images v6 human-verified image labels (9,605 trainable classes)",
                title="Open Images v6", aliases=("openimages", "open-images-v6", "open-images"), label_set="openimages"),
    DatasetSpec("stanford-cars", "stanford_cars:load_stanford_cars",
                "single-label: Stanford Cars devkit .mat files, 196 classes", title="Stanford Cars",
                aliases=("cars", "stanford_cars"), label_set="stanford-cars"),
    DatasetSpec("visual-genome", "visual_genome:load_visual_genome",
                "Visual Genome VG-500, 500 classes (C-Tran's lists and label index)", title="Visual Genome (VG-500)",
                aliases=("vg500", "vg-500")),
    DatasetSpec("imagefolder", "imagefolder:load_imagefolder",
                "single-label: one folder per class (ImageNet's train/ and val/)", title="an image-folder dataset"),
    DatasetSpec("cifar100", "cifar100:load_cifar100",
                "single-label: CIFAR-100 binary release (train.bin, test.bin), 100 classes", title="CIFAR-100",
                aliases=("cifar-100",)),
    DatasetSpec("csv", "generic:load_csv", "one CSV per split: image path + label list"),
    DatasetSpec("jsonl", "generic:load_jsonl", "one JSON-lines file per split: image path + label list"),
    DatasetSpec("hub", "generic:load_hub",
                "any datasets repo or save_to_disk folder with an image and a multi-label column"),
    DatasetSpec("demo", "demo:load_demo", "built-in 2x2 digit mosaics, 10 classes, generated offline in COCO format",
                title="the hf_mlcls demo set (generated digit mosaics)", needs_data_dir=False),
    DatasetSpec("shapes", "shapes:load_shapes",
                "built-in coloured shapes, 30 classes named 'colour shape' (zero-shot demo), generated offline in COCO format",
                title="the hf_mlcls shapes set (generated coloured shapes)", needs_data_dir=False),
)

_BY_NAME = {spec.name: spec for spec in _SPECS}
_BY_SPELLING = {**{alias: spec for spec in _SPECS for alias in spec.aliases}, **_BY_NAME}
assert len(_BY_NAME) == len(_SPECS), "two datasets with one name"
assert len(_BY_SPELLING) == len(_BY_NAME) + sum(len(s.aliases) for s in _SPECS), "an alias is used twice"


def _key(name: Any) -> str:
    return str(name).strip().lower().replace("_", "-")


def find_dataset(name: Any) -> Optional[DatasetSpec]:
    """The dataset a name or alias (any case, ``_`` or ``-``) refers to, else None."""
    return _BY_SPELLING.get(_key(name))


def list_datasets(with_descriptions: bool = False):
    """Names accepted by :func:`hf_mlcls.data.load_multilabel_dataset` (``{name: description}``
    with ``with_descriptions=True``)."""
    loadable = [spec for spec in _SPECS if spec.loader is not None]
    if with_descriptions:
        return {spec.name: spec.description for spec in loadable}
    return [spec.name for spec in loadable]


def dataset_spec(name: Any) -> DatasetSpec:
    """The loadable dataset ``name`` refers to; a ``ValueError`` listing the available ones otherwise."""
    spec = find_dataset(name)
    if spec is None or spec.loader is None:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return spec


def label_set_names() -> list[str]:
    """Names of the label sets (``coco``, ``voc``, ...), sorted."""
    return sorted({spec.label_set for spec in _SPECS if spec.label_set})


def find_label_set(name: Any) -> Optional[tuple[str, Optional[tuple[str, ...]]]]:
    """``(label set, class names or None when not shipped)`` for a label-set name (``coco``) or the
    name of a dataset that has one (``coco2014``, ``mscoco``); None for anything else."""
    key = _key(name)
    spec = next((s for s in _SPECS if s.label_set == key), None) or find_dataset(key)
    if spec is None or spec.label_set is None:
        return None
    return spec.label_set, spec.names()
