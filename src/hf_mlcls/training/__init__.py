"""Trainer glue for the official recipes: EMA, parameter groups, OneCycle, backbone freezing, crash safety.

Everything else (devices, processes, mixed precision, accumulation, checkpoints, logging,
pushing) is the `transformers.Trainer`'s own. One module per concern:

- `recipe`: `RecipeArguments` (checked when built), `check_recipe`, `LabelSet`, parameter groups, freezing.
- `ema`: the EMA callback and its file in each checkpoint.
- `checkpoints`: whole-or-marked checkpoints, the note that says where a run stopped, and the output
  folder's checks and lock (`check_output_dir`, `OutputDirLock`).
- `trainer`: `MultiLabelTrainer`, `WarnSkippedClasses`, `summary_line`.
- `arguments`: examples/train.py's model, data, zero-shot and output arguments; `reports`: the JSON reports it writes.
"""

from .checkpoints import (
    INCOMPLETE_MARKER,
    LOCK_NAME,
    OutputDirLock,
    check_output_dir,
    check_writable_folder,
    is_checkpoint,
    last_complete_checkpoint,
    stopped_note,
)
from .ema import EMA_WEIGHTS_NAME, EMACallback, load_ema, save_ema
from .recipe import LabelSet, RecipeArguments, check_recipe, decay_parameter_names, freeze_backbone_layers
from .trainer import SUMMARY_KEYS, MultiLabelTrainer, WarnSkippedClasses, summary_line

__all__ = [
    "EMACallback",
    "EMA_WEIGHTS_NAME",
    "INCOMPLETE_MARKER",
    "LOCK_NAME",
    "LabelSet",
    "MultiLabelTrainer",
    "OutputDirLock",
    "RecipeArguments",
    "SUMMARY_KEYS",
    "WarnSkippedClasses",
    "check_output_dir",
    "check_recipe",
    "check_writable_folder",
    "decay_parameter_names",
    "freeze_backbone_layers",
    "is_checkpoint",
    "last_complete_checkpoint",
    "load_ema",
    "save_ema",
    "stopped_note",
    "summary_line",
]
