"""hf_mlcls: Query2Label and ML-Decoder multi-label image classification for the Hugging Face ecosystem.

Importing the package registers both model types with `AutoConfig`, `AutoModel`,
`AutoModelForImageClassification` and `AutoImageProcessor` (`MultiLabelImageProcessor`).
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .models import (
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
from .presets import create_model, describe_preset, list_presets, preset_config

__version__ = "0.1.0"


def _register() -> None:
    for config_class, base, classifier in (
        (Query2LabelConfig, Query2LabelModel, Query2LabelForImageClassification),
        (MLDecoderConfig, MLDecoderModel, MLDecoderForImageClassification),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, base, exist_ok=True)
        AutoModelForImageClassification.register(config_class, classifier, exist_ok=True)
        # one class whichever backend is asked for: it decodes and resizes with PIL itself
        processors = {"pil": MultiLabelImageProcessor, "torchvision": MultiLabelImageProcessor}
        AutoImageProcessor.register(config_class, image_processor_classes=processors, exist_ok=True)


_register()

__all__ = [
    "AsymmetricLoss",
    "MLDecoderConfig",
    "MLDecoderForImageClassification",
    "MLDecoderModel",
    "MultiLabelClassifierOutput",
    "MultiLabelImageProcessor",
    "MultiLabelModelOutput",
    "Query2LabelConfig",
    "Query2LabelForImageClassification",
    "Query2LabelModel",
    "create_model",
    "describe_preset",
    "list_presets",
    "preset_config",
]
