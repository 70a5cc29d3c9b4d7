"""Everything a Hub checkpoint needs; relative imports only, so it ships as remote code.

The names below load on first use, so that importing one configuration class does not build every
model class (and so that registering the configurations with transformers stays cheap).
"""

import importlib
from typing import Any

_EXPORTS = {
    "AsymmetricLoss": "losses",
    "CheckpointWeightsError": "modeling_common",
    "MLDecoderConfig": "configuration_ml_decoder",
    "MLDecoderForImageClassification": "modeling_ml_decoder",
    "MLDecoderModel": "modeling_ml_decoder",
    "MultiLabelClassifierOutput": "modeling_common",
    "MultiLabelImageProcessor": "image_processing_multilabel",
    "MultiLabelModelOutput": "modeling_common",
    "Query2LabelConfig": "configuration_query2label",
    "Query2LabelForImageClassification": "modeling_query2label",
    "Query2LabelModel": "modeling_query2label",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))
