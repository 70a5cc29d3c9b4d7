"""Any multi-label folder: a CSV or JSON-lines file per split (image path relative to
``data_dir`` + a label list), or any ``datasets`` repo / saved dataset (``hub``).

The code lives by concern in :mod:`.csv_folder`, :mod:`.jsonl_folder`, :mod:`.hub`, :mod:`.label_names`
(class-name normalisation and label tokens) and :mod:`.tabular` (per-split files into a ``DatasetDict``);
this module keeps their names importable from where they have always been."""

from __future__ import annotations

from .csv_folder import CSV_LAYOUT, load_csv, read_csv_rows  # noqa: F401
from .hub import _empty_saved_splits, _label_kind, _verify_hub_images, load_hub  # noqa: F401
from .jsonl_folder import JSONL_LAYOUT, load_jsonl  # noqa: F401
from .label_names import MAX_INDEX_CLASSES, _class_option, _is_int_token, _LabelResolver, parse_label_cell, read_class_list  # noqa: F401
from .tabular import _build_splits, _check_duplicate_paths, _default_file_splits, _file_splits, _RawSplit  # noqa: F401

__all__ = ["load_csv", "load_jsonl", "load_hub", "parse_label_cell", "read_class_list"]
