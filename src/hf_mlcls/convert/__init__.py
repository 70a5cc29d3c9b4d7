"""Official Query2Label and ML-Decoder checkpoints -> Hugging Face model folders with the same outputs.

    from hf_mlcls.convert import convert_checkpoint
    convert_checkpoint("Q2L-R101-448/checkpoint.pkl", "q2l-r101-448-coco", preset="q2l-r101-448")

or `hf-mlcls convert CHECKPOINT --preset NAME OUTPUT_DIR` (also `python -m hf_mlcls.convert ...`).
`CHECKPOINTS` lists every published checkpoint with its preset, source and label set;
docs/conversion.md has the measured parity with the official code.
"""

import importlib
from typing import Any

# public name -> defining module; loaded on first use, so `hf-mlcls --help` (which lists the checkpoints)
# does not import torch and the model code.
_EXPORTS = {
    "CHECKPOINTS": "checkpoints",
    "OfficialCheckpoint": "checkpoints",
    "checkpoint_table": "checkpoints",
    "find_checkpoint": "checkpoints",
    "ConversionError": "common",
    "load_checkpoint": "common",
    "ConversionResult": "converter",
    "convert_checkpoint": "converter",
    "COCO_CLASSES": "..data.coco",
    "NUS_WIDE_CLASSES": "..data.nuswide",
    "read_label_file": "labels",
    "resolve_labels": "labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    value = getattr(importlib.import_module(module if module.startswith(".") else f".{module}", __name__), name)
    globals()[name] = value
    return value
