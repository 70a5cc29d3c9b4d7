"""CIFAR-100 from its binary release (``cifar-100-binary.tar.gz``): no pickles.

Each record of ``train.bin`` / ``test.bin`` is 3,074 bytes: the coarse label (1 byte),
the fine label (1 byte), then the 32×32 image as 1,024 red, 1,024 green and 1,024 blue
bytes, row by row (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version").
Class names are the lines of ``fine_label_names.txt`` (``coarse_label_names.txt``).
"""

from __future__ import annotations

import io
import os
from typing import Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import PIL.Image

from .core import DatasetLayoutError, check_class_names, merge_dict, require_file, resolve_splits, utf8_text
from .single_label import build_single_label_dataset

__all__ = ["RECORD_BYTES", "load_cifar100", "read_cifar_binary"]

RECORD_BYTES = 2 + 32 * 32 * 3

LAYOUT = """  <data_dir>/                       (cifar-100-binary/ from cifar-100-binary.tar.gz, or its parent)
    train.bin   test.bin             50,000 and 10,000 records of 3,074 bytes
    fine_label_names.txt             100 names, one a line
    coarse_label_names.txt           20 names (label="coarse")"""


def _find_root(data_dir: str) -> str:
    for candidate in (data_dir, os.path.join(data_dir, "cifar-100-binary")):
        if os.path.isfile(os.path.join(candidate, "fine_label_names.txt")):
            return candidate
    return data_dir


def read_label_names(path: str, expected: int) -> list[str]:
    """The non-empty lines of a label-names file; there must be ``expected`` of them."""
    names = []
    with open(path, encoding="utf-8-sig") as fh, utf8_text(path):
        for lineno, line in enumerate(fh, 1):
            name = line.strip()
            if name:
                names.append(name)
    if len(names) != expected:
        raise DatasetLayoutError(f"{path}: {len(names)} class names, expected {expected}")
    return check_class_names(names, path)


def read_cifar_binary(path: str, num_fine: int = 100, num_coarse: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coarse labels (N,), fine labels (N,), images (N, 32, 32, 3) uint8) of a CIFAR-100 ``.bin``
    file. A size that is not a whole number of records, or a label byte out of range, is a
    :class:`DatasetLayoutError` naming the file and the record."""
    size = os.path.getsize(path)
    if size == 0 or size % RECORD_BYTES:
        raise DatasetLayoutError(
            f"{path}: {size} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-100 records "
            f"({size // RECORD_BYTES} records and {size % RECORD_BYTES} bytes left over); is it the binary release, "
            "not the python (pickle) one?"
        )
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    coarse, fine = raw[:, 0], raw[:, 1]
    for what, labels, limit in (("fine", fine, num_fine), ("coarse", coarse, num_coarse)):
        bad = np.flatnonzero(labels >= limit)
        if bad.size:
            i = int(bad[0])
            raise DatasetLayoutError(
                f"{path}: record {i} (byte {i * RECORD_BYTES}) has {what} label {int(labels[i])}, outside 0..{limit - 1}"
                + (f"; {bad.size} records in all" if bad.size > 1 else "")
            )
    images = raw[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return coarse.astype(np.int64), fine.astype(np.int64), images


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def load_cifar100(
    data_dir: str,
    *,
    label: str = "fine",
    splits: Union[None, str, Sequence[str], Mapping[str, str]] = None,
    dataset_name: str = "cifar100",
) -> datasets.DatasetDict:
    """``train`` (``train.bin``, 50,000 images) and ``validation`` (``test.bin``, 10,000: CIFAR
    has no other held-out set, and the published numbers are on it) with 100 fine classes
    (``label="coarse"``: the 20 superclasses). Images are stored as PNG bytes in the rows
    (32×32, about 3 KB each), so the dataset does not depend on the ``.bin`` files after loading."""
    if label not in ("fine", "coarse"):
        raise ValueError(f"cifar100: label must be 'fine' or 'coarse', got {label!r}")
    root = _find_root(os.path.abspath(os.path.expanduser(str(data_dir))))
    require_file(root, dataset_name, LAYOUT, directory=True)
    count = 100 if label == "fine" else 20
    names_file = require_file(os.path.join(root, f"{label}_label_names.txt"), dataset_name, LAYOUT)
    class_names = read_label_names(names_file, count)
    chosen, _ = resolve_splits(
        splits, {"train": "train", "validation": "test"}, ("train", "validation"),
        lambda native: os.path.isfile(os.path.join(root, f"{native}.bin")),
    )
    out = {}
    for name, native in chosen.items():
        path = require_file(os.path.join(root, f"{native}.bin"), f"{dataset_name} split {name!r}", LAYOUT)
        coarse, fine, images = read_cifar_binary(path)
        labels = fine if label == "fine" else coarse
        out[name] = build_single_label_dataset(
            labels.tolist(), class_names, dataset_name=dataset_name, split=name,
            image_bytes=[_png(im) for im in images], source=path, options={"label": label},
        )
    return merge_dict(out)
