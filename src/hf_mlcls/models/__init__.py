"""Everything a Hub checkpoint needs; relative imports only, so it ships as remote code."""

from .configuration_ml_decoder import MLDecoderConfig
from .configuration_query2label import Query2LabelConfig
from .image_processing_multilabel import MultiLabelImageProcessor
from .losses import AsymmetricLoss
from .modeling_common import MultiLabelClassifierOutput, MultiLabelModelOutput
from .modeling_ml_decoder import MLDecoderForImageClassification, MLDecoderModel
from .modeling_query2label import Query2LabelForImageClassification, Query2LabelModel

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
]
