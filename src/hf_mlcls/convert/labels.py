"""Label names for converted checkpoints: built-in sets, label files, and the LABEL_i fallback.

The official checkpoints carry no class names, only class indices. Both official code bases
index MS-COCO by ascending category id (Query2Label's `category_map`, ML-Decoder's `cat2cat`),
which is the order of `hf_mlcls.data.coco.COCO_CLASSES`. The built-in sets are those of the
dataset registry (`hf_mlcls.data.registry`). Open Images (9,605 classes) and Stanford Cars
(196) names are not shipped here: pass a label file, or the labels become LABEL_0, LABEL_1, ...
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter

from ..errors import UserError
from ..data.registry import find_label_set, label_set_names

logger = logging.getLogger(__name__)


def canonical_label_set(name: str) -> str | None:
    """The built-in label set a name (or the official `dataname`) refers to, else None.

    The names are those of the dataset registry (`hf_mlcls.data.registry`): a label set (`coco`)
    or any name or alias of a dataset that has one (`coco2014`, `coco14`, `voc2007`, `nus`).
    """
    found = find_label_set(name)
    return None if found is None else found[0]


def read_label_file(path: str) -> list[str]:
    """Class names from a file, in class-index order.

    - `.json`: a list of names, or an object `{index: name}` (e.g. a config's id2label);
    - `.csv`: one row per class, the name in the last column (Open Images' class-descriptions
      file `LabelName,DisplayName` works as it is); a header row is skipped if its first cell
      is `LabelName`, `id`, `index` or `name`;
    - anything else: one name per non-empty line.
    """
    if not os.path.isfile(path):
        raise UserError(f"label file {path!r} does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read label file {path!r}: {err}") from err
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"label file {path!r} is not valid JSON: {err}") from err
        if isinstance(data, dict) and "id2label" in data:
            data = data["id2label"]
        if isinstance(data, list) and all(isinstance(n, str) for n in data):
            names = list(data)
        elif isinstance(data, dict):
            try:
                items = sorted((int(k), v) for k, v in data.items())
            except ValueError as err:
                raise UserError(f"label file {path!r}: keys of the JSON object must be class indices") from err
            if [i for i, _ in items] != list(range(len(items))):
                raise UserError(f"label file {path!r}: class indices must be 0..{len(items) - 1} without gaps")
            names = [str(v) for _, v in items]
        else:
            raise UserError(f"label file {path!r} must hold a JSON list of names or an {{index: name}} object")
    elif path.lower().endswith(".csv"):
        rows = [row for row in csv.reader(text.splitlines()) if row and any(cell.strip() for cell in row)]
        if rows and rows[0][0].strip().lower() in ("labelname", "id", "index", "name"):
            rows = rows[1:]
        names = [row[-1].strip() for row in rows]
        counts = Counter(names)
        if any(c > 1 for c in counts.values()) and all(len(row) >= 2 for row in rows):
            # Open Images repeats some display names; tell them apart by their LabelName, as the data loader does
            names = [n if counts[n] == 1 else f"{n} ({row[0].strip()})" for n, row in zip(names, rows)]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"label file {path!r} holds no class names")
    if any(not n for n in names):
        raise UserError(f"label file {path!r} has an empty class name at index {names.index('')}")
    return names


def resolve_labels(spec: str | None, num_labels: int, *, default: str | None = None, where: str = "checkpoint") -> list[str]:
    """`num_labels` class names from `spec` (a built-in set name or a file), else from `default`.

    A built-in set without shipped names (Open Images, Stanford Cars), or no set at all, gives
    LABEL_0 ... LABEL_{n-1} with a warning. A wrong count is an error that names both counts.
    """
    chosen = spec if spec is not None else default
    if chosen is None:
        logger.warning("no label names given for the %d classes of the %s: using LABEL_0 ... LABEL_%d "
                       "(pass --labels coco|voc|nus-wide|FILE)", num_labels, where, num_labels - 1)
        return [f"LABEL_{i}" for i in range(num_labels)]
    found = find_label_set(chosen)
    if found is not None:
        builtin, shipped = found
        if shipped is None:
            logger.warning("the %s class names are not shipped with hf_mlcls: using LABEL_0 ... LABEL_%d; "
                           "pass --labels FILE (one name per line, in class-index order) to name them",
                           builtin, num_labels - 1)
            return [f"LABEL_{i}" for i in range(num_labels)]
        names = list(shipped)
        source = f"the built-in {builtin} label set"
    elif os.path.exists(chosen) or os.sep in chosen or "." in os.path.basename(chosen):
        names = read_label_file(chosen)
        source = f"label file {chosen!r}"
    else:
        known = ", ".join(label_set_names())
        raise UserError(f"--labels {chosen!r} is neither a known label set ({known}) nor an existing file")
    if len(names) != num_labels:
        raise UserError(f"{source} has {len(names)} names but the {where} has {num_labels} classes")
    counts = Counter(names)
    if len(counts) != len(names):
        dup = sorted(n for n, c in counts.items() if c > 1)
        raise UserError(f"{source} repeats class names: {', '.join(dup[:10])}")
    return names
