"""Zero-shot splits: NUS-WIDE's seen/unseen benchmark, and the same protocol on any dataset.

The NUS-WIDE zero-shot benchmark (LESA, CVPR 2020; ML-Decoder's 31.1 ZSL mAP) trains on
925 *seen* labels and tests on 81 *unseen* ones (ZSL) or on all 1,006 (GZSL). The
ML-Decoder authors distribute it as three files in the dataset folder:

``data.csv``
    ``<image path>,"['label a', 'label b']",<train|val>``; the classes are the sorted
    union of the labels (1,006), the order the authors' code gives them.
``benchmark_81_v0.json``
    ``{"train class": [925 names], "test class": [81 names]}`` (without ``"train class"``
    every label that is not a test class is seen).
``wordvec_array.pth``
    the (300, 1,006) word vectors, column j for class j.

The protocol: the training set is the ``train`` rows labelled with the seen labels only;
the test set is the ``val`` rows labelled with the unseen labels (ZSL), or with every label
(GZSL) on the same images. By default a row with no label of its split's label set is left
out (an image with no seen label teaches nothing but negatives; an image with no unseen label
is only a negative for every ZSL class) and counted in the load report
(``dropped_rows_without_label``). The authors' ``get_datasets_from_csv`` keeps every
``train`` / ``val`` row of ``data.csv`` as it is: ``keep_rows_without_label=True`` does the
same. The two agree whenever every row of the file has a label of its split (a report
showing ``dropped_rows_without_label: 0``).

:func:`zero_shot_splits` applies the protocol to any ``DatasetDict`` and a list of unseen
class names (the demo's held-out digits, for instance); :func:`load_nus_wide_zsl_protocol`
reads the three files; :func:`load_nus_wide_zsl` is the ``load_multilabel_dataset("nus-wide-zsl")``
entry (the splits only).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import datasets
import numpy as np
import pyarrow as pa
import torch

from .core import REPORT_KEY, DatasetLayoutError, MissingDatasetFileError, build_features, load_report, read_json_file
from .nuswide import load_nus_wide

__all__ = ["NusWideZSL", "load_nus_wide_zsl", "load_nus_wide_zsl_protocol", "zero_shot_splits"]

ZSL_LAYOUT = """  <data_dir>/
    data.csv               header + rows: <image path>,"['label a', 'label b']",<train|val>
    benchmark_81_v0.json   {"train class": [925 seen labels], "test class": [81 unseen labels]}
    wordvec_array.pth      (300, 1006) word vectors, column j = class j of the sorted labels of data.csv
    the images at the paths of data.csv"""

#: split names of the zero-shot DatasetDict
TRAIN, ZSL, GZSL = "train", "zsl", "gzsl"


def _names(dataset: datasets.Dataset) -> list[str]:
    return list(dataset.features["labels"].feature.names)


def _relabel(
    ds: datasets.Dataset,
    keep: Sequence[int],
    rows: Optional[np.ndarray],
    *,
    dataset_name: str,
    split: str,
    report: dict,
) -> tuple[datasets.Dataset, np.ndarray]:
    """``ds`` restricted to the classes ``keep`` (old indices, new order) and to ``rows``
    (None: the rows with at least one kept positive; "all": every row). Returns the split and the rows taken."""
    names = _names(ds)
    table = ds.with_format("arrow")[:]
    old_to_new = np.full(len(names), -1, dtype=np.int64)
    old_to_new[np.asarray(keep, dtype=np.int64)] = np.arange(len(keep))

    def remap(column: str) -> list[list[int]]:
        out = []
        for labels in table.column(column).to_pylist():
            mapped = [int(old_to_new[i]) for i in labels or []]
            out.append(sorted(m for m in mapped if m >= 0))
        return out

    labels = remap("labels")
    if isinstance(rows, str):  # "all"
        rows = np.arange(len(labels))
    elif rows is None:
        rows = np.flatnonzero([len(x) > 0 for x in labels])
    unknown = remap("unknown_labels") if "unknown_labels" in table.column_names else None
    if "negative_labels" in table.column_names:
        raise DatasetLayoutError(
            f"{dataset_name}: zero-shot splits of a dataset with verified negatives (Open Images) are not supported"
        )
    if len(rows) == 0:
        raise DatasetLayoutError(f"{dataset_name} split {split!r}: no image has a label of this split's label set")
    take = pa.array(rows, type=pa.int64())
    new_names = [names[i] for i in keep]
    features = build_features(new_names, unknown=unknown is not None)
    columns = {"image": table.column("image").take(take), "labels": pa.array([labels[i] for i in rows], type=pa.list_(pa.int64()))}
    if unknown is not None:
        columns["unknown_labels"] = pa.array([unknown[i] for i in rows], type=pa.list_(pa.int64()))
    parent = load_report(ds)
    full_report = {
        "dataset": dataset_name,
        "split": split,
        "source": parent.get("source", ""),
        "num_rows": int(len(rows)),
        "num_classes": len(new_names),
        "verify_images": parent.get("verify_images"),
        "skipped": parent.get("skipped", {"total": 0}),
        "skipped_examples": parent.get("skipped_examples", []),
        "options": parent.get("options", {}),
        "parent_split": str(ds.split) if ds.split is not None else None,
        "dropped_rows_without_label": int(len(table) - len(rows)),
        **report,
    }
    info = datasets.DatasetInfo(
        description=json.dumps({REPORT_KEY: full_report}, sort_keys=True), features=features, dataset_name=dataset_name
    )
    out = datasets.Dataset(pa.Table.from_pydict(columns, schema=features.arrow_schema), info=info, split=datasets.NamedSplit(split))
    return out, rows


def zero_shot_splits(
    dataset: datasets.DatasetDict,
    unseen: Sequence[str],
    seen: Optional[Sequence[str]] = None,
    *,
    train_split: str = "train",
    eval_split: str = "validation",
    dataset_name: Optional[str] = None,
    report: Optional[dict] = None,
    keep_rows_without_label: bool = False,
) -> datasets.DatasetDict:
    """The zero-shot protocol on any multi-label ``DatasetDict``.

    Args:
        dataset: rows ``{"image", "labels"}`` (plus optional ``unknown_labels``) as every loader gives them.
        unseen: class names held out of training.
        seen: class names to train on; default every class that is not unseen.
        train_split / eval_split: where the training and test images come from.
        report: extra entries for each split's load report.
        keep_rows_without_label: keep the rows that have no label of their split's label set
            (as the ML-Decoder authors' loader does) instead of leaving them out.

    Returns:
        ``train``: the ``train_split`` rows with at least one seen label, labelled with the seen
        classes only (their unseen labels are dropped: the images stay, as in the official protocol);
        ``zsl``: the ``eval_split`` rows with at least one unseen label, labelled with the unseen classes
        (with ``keep_rows_without_label``: every row of each split);
        ``gzsl``: the same rows labelled with seen + unseen classes. Every label list keeps the dataset's
        class order. Each split's load report (``load_report``) records the protocol.
    """
    for split in (train_split, eval_split):
        if split not in dataset:
            raise DatasetLayoutError(f"zero-shot splits: split {split!r} not in the dataset (it has {list(dataset)})")
    names = _names(dataset[train_split])
    if _names(dataset[eval_split]) != names:
        raise DatasetLayoutError(f"zero-shot splits: {train_split!r} and {eval_split!r} have different class lists")
    name = dataset_name or load_report(dataset[train_split]).get("dataset") or "dataset"
    if isinstance(unseen, str) or (seen is not None and isinstance(seen, str)):
        raise ValueError("unseen / seen must be lists of class names, not a single string")
    index = {n: i for i, n in enumerate(names)}
    unseen_set, seen_set = set(unseen), set(seen) if seen is not None else None
    missing = sorted((unseen_set | (seen_set or set())) - set(index))
    if missing:
        raise DatasetLayoutError(f"zero-shot splits: class name(s) not in the dataset's {len(names)} classes: {missing[:20]}")
    if seen_set is None:
        seen_set = set(names) - unseen_set
    both = sorted(unseen_set & seen_set)
    if both:
        raise DatasetLayoutError(f"zero-shot splits: class(es) both seen and unseen: {both[:20]}")
    if not unseen_set or not seen_set:
        raise DatasetLayoutError(f"zero-shot splits: need at least one seen and one unseen class (got {len(seen_set)} seen, {len(unseen_set)} unseen)")
    seen_ids = [i for i, n in enumerate(names) if n in seen_set]
    unseen_ids = [i for i, n in enumerate(names) if n in unseen_set]
    all_ids = sorted(seen_ids + unseen_ids)
    protocol = {
        **(report or {}),
        "zero_shot": {"seen": len(seen_ids), "unseen": len(unseen_ids), "train_split": train_split, "eval_split": eval_split},
    }
    if keep_rows_without_label:
        protocol["zero_shot"]["keep_rows_without_label"] = True
    rows_wanted = "all" if keep_rows_without_label else None
    train, _ = _relabel(dataset[train_split], seen_ids, rows_wanted, dataset_name=name, split=TRAIN,
                        report={**protocol, "labels": "seen"})
    zsl, rows = _relabel(dataset[eval_split], unseen_ids, rows_wanted, dataset_name=name, split=ZSL,
                         report={**protocol, "labels": "unseen"})
    gzsl, _ = _relabel(dataset[eval_split], all_ids, rows, dataset_name=name, split=GZSL,
                       report={**protocol, "labels": "seen+unseen"})
    return datasets.DatasetDict({TRAIN: train, ZSL: zsl, GZSL: gzsl})


@dataclass
class NusWideZSL:
    """The NUS-WIDE zero-shot benchmark as loaded by :func:`load_nus_wide_zsl_protocol`.

    ``dataset`` has ``train`` (seen labels), ``zsl`` (unseen labels) and ``gzsl`` (all labels);
    ``embeddings[split]`` holds the word vectors of that split's labels, row i for label i
    (empty when no word-vector file was read); ``word_vectors`` is that file's path, which
    ``set_label_names(names, text_encoder=word_vectors)`` and ``examples/train.py`` accept.
    """

    dataset: datasets.DatasetDict
    seen: list[str]
    unseen: list[str]
    word_vectors: Optional[str] = None
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    not_in_data: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Every label of the benchmark (GZSL's label set), in class order."""
        return _names(self.dataset[GZSL])


def _read_benchmark(path: str) -> tuple[Optional[list[str]], list[str]]:
    data = read_json_file(path, "nus-wide-zsl")
    if not isinstance(data, dict) or "test class" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetLayoutError(f"{path}: expected an object with a 'test class' list (and 'train class'), got {keys}")

    def names(key: str) -> list[str]:
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DatasetLayoutError(f"{path}: '{key}' must be a list of label names")
        out = [v.strip() for v in value]
        dupes = sorted({v for v in out if out.count(v) > 1})
        if dupes:
            raise DatasetLayoutError(f"{path}: '{key}' lists label(s) twice: {dupes[:20]}")
        return out

    return (names("train class") if "train class" in data else None), names("test class")


def load_nus_wide_zsl_protocol(
    data_dir: str,
    *,
    benchmark_file: str = "benchmark_81_v0.json",
    csv_file: str = "data.csv",
    word_vectors: Optional[str] = "wordvec_array.pth",
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    keep_rows_without_label: bool = False,
) -> NusWideZSL:
    """Read the NUS-WIDE zero-shot benchmark (see the module docstring for the files and the protocol).

    Args:
        word_vectors: the word-vector file, relative to ``data_dir`` or absolute (``None``: skip the
            embeddings). Its columns are the classes of ``data.csv`` in sorted order.
        verify_images / strict / num_threads: as for every loader; missing images are skipped and counted.
        keep_rows_without_label: keep every ``train`` / ``val`` row, as the authors' loader does, even one
            with no label of its split (see the module docstring).
    """
    root = os.path.abspath(data_dir)
    bench_path = os.path.join(root, benchmark_file)
    if not os.path.isfile(bench_path):
        raise MissingDatasetFileError(f"nus-wide-zsl: expected file {bench_path} does not exist.\nExpected layout:\n{ZSL_LAYOUT}")
    vec_path = None
    if word_vectors is not None:
        vec_path = word_vectors if os.path.isabs(word_vectors) else os.path.join(root, word_vectors)
        if not os.path.isfile(vec_path):
            raise MissingDatasetFileError(f"nus-wide-zsl: expected file {vec_path} does not exist.\nExpected layout:\n{ZSL_LAYOUT}")
    seen, unseen = _read_benchmark(bench_path)
    base = load_nus_wide(root, layout="csv", csv_file=csv_file, keep_empty=True, verify_images=verify_images,
                         strict=strict, num_threads=num_threads)
    names = _names(base["train"])
    present = set(names)
    absent = sorted({n for n in (seen or []) + unseen if n not in present})
    if absent:
        warnings.warn(
            f"{bench_path}: {len(absent)} benchmark label(s) never occur in {csv_file} and are left out "
            f"(as the official code does): {absent[:10]}",
            UserWarning,
            stacklevel=2,
        )
    unseen_kept = [n for n in unseen if n in present]
    seen_kept = [n for n in seen if n in present] if seen is not None else None
    dataset = zero_shot_splits(base, unseen_kept, seen_kept, train_split="train", eval_split="validation",
                               dataset_name="nus-wide-zsl", keep_rows_without_label=keep_rows_without_label,
                               report={"benchmark": bench_path, "benchmark_labels_not_in_data": absent})
    result = NusWideZSL(dataset=dataset, seen=_names(dataset[TRAIN]), unseen=_names(dataset[ZSL]), word_vectors=vec_path,
                        not_in_data=absent)
    if vec_path is not None:
        from ..models.text_encoding import WordVectorEncoder

        encoder = WordVectorEncoder(vec_path, vocabulary=names)
        for split, ds in dataset.items():
            result.embeddings[split] = encoder.encode(_names(ds))
    return result


def load_nus_wide_zsl(
    data_dir: str,
    *,
    benchmark_file: str = "benchmark_81_v0.json",
    csv_file: str = "data.csv",
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    num_threads: int = 8,
    keep_rows_without_label: bool = False,
) -> datasets.DatasetDict:
    """NUS-WIDE zero-shot splits: ``train`` (925 seen labels), ``zsl`` (81 unseen), ``gzsl`` (all 1,006).

    The label embeddings are not read here: give ``<data_dir>/wordvec_array.pth`` as the text
    encoder (``examples/train.py`` does by default), or use :func:`load_nus_wide_zsl_protocol`.
    """
    return load_nus_wide_zsl_protocol(data_dir, benchmark_file=benchmark_file, csv_file=csv_file, word_vectors=None,
                                      verify_images=verify_images, strict=strict, num_threads=num_threads,
                                      keep_rows_without_label=keep_rows_without_label).dataset
