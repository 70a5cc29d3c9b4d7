"""Official Query2Label and ML-Decoder checkpoints -> Hugging Face model folders with the same outputs.

    from hf_mlcls.convert import convert_checkpoint
    convert_checkpoint("Q2L-R101-448/checkpoint.pkl", "q2l-r101-448-coco", preset="q2l-r101-448")

or `hf-mlcls convert CHECKPOINT --preset NAME OUTPUT_DIR` (also `python -m hf_mlcls.convert ...`).
`CHECKPOINTS` lists every published checkpoint with its preset, source and label set;
docs/conversion.md has the measured parity with the official code.
"""

from .checkpoints import CHECKPOINTS, OfficialCheckpoint, checkpoint_table, find_checkpoint
from .common import ConversionError, load_checkpoint
from .converter import ConversionResult, convert_checkpoint
from ..data.coco import COCO_CLASSES
from ..data.nuswide import NUS_WIDE_CLASSES
from .labels import read_label_file, resolve_labels

__all__ = [
    "CHECKPOINTS",
    "COCO_CLASSES",
    "NUS_WIDE_CLASSES",
    "ConversionError",
    "ConversionResult",
    "OfficialCheckpoint",
    "checkpoint_table",
    "convert_checkpoint",
    "find_checkpoint",
    "load_checkpoint",
    "read_label_file",
    "resolve_labels",
]
