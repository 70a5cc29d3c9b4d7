"""hf_mlcls: Query2Label and ML-Decoder multi-label image classification for the Hugging Face ecosystem.

Importing the package is cheap: it imports neither torch nor transformers. It registers both model types
with `AutoConfig`, `AutoModel`, `AutoModelForImageClassification` and `AutoImageProcessor` the moment
transformers' Auto classes are first imported (see `_auto.py`). Sub-modules (`hf_mlcls.metrics`,
`hf_mlcls.data`, `hf_mlcls.training`, ...) and the public names below load on first use.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from . import _auto

__version__ = "0.1.0"

#: the `evaluate` metric module shipped with the package: ``evaluate.load(hf_mlcls.EVALUATE_METRIC)``
#: works offline from any working directory; its values are in percent like every metric here.
EVALUATE_METRIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evaluate_modules", "multilabel_map")

# public name -> the sub-module that defines it
_EXPORTS = {
    "AsymmetricLoss": "models",
    "MLDecoderConfig": "models",
    "MLDecoderForImageClassification": "models",
    "MLDecoderModel": "models",
    "MultiLabelClassifierOutput": "models",
    "MultiLabelImageProcessor": "models",
    "MultiLabelModelOutput": "models",
    "Query2LabelConfig": "models",
    "Query2LabelForImageClassification": "models",
    "Query2LabelModel": "models",
    "create_model": "presets",
    "describe_preset": "presets",
    "list_presets": "presets",
    "preset_config": "presets",
}
_SUBMODULES = (
    "cli", "commands", "convert", "data", "errors", "hub", "inference", "metrics", "models", "presets", "space",
    "training",
)

__all__ = sorted([*_EXPORTS, "EVALUATE_METRIC"])

if TYPE_CHECKING:  # pragma: no cover
    from . import convert, data, inference, metrics, models, presets, training  # noqa: F401
    from .models import (  # noqa: F401
        AsymmetricLoss,
        MLDecoderConfig,
        MLDecoderForImageClassification,
        MLDecoderModel,
        MultiLabelClassifierOutput,
        MultiLabelImageProcessor,
        MultiLabelModelOutput,
        Query2LabelConfig,
        Query2LabelForImageClassification,
        Query2LabelModel,
    )
    from .presets import create_model, describe_preset, list_presets, preset_config  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'hf_mlcls' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))


_auto.install()
