"""Multi-label datasets in their published on-disk layouts, loaded into ``datasets``.

>>> from hf_mlcls.data import load_multilabel_dataset, build_train_transform, build_eval_transform
>>> from hf_mlcls.data import apply_transforms, MultiLabelCollator
>>> ds = load_multilabel_dataset("demo")                      # or "coco2014", "/data/coco", ...
>>> ds = apply_transforms(ds, build_train_transform(64), build_eval_transform(64))
>>> batch = MultiLabelCollator()([ds["train"][0], ds["train"][1]])

See docs/datasets.md for every layout, protocol choice and option.
"""

from .collate import MultiLabelCollator
from .core import (
    DatasetLayoutError,
    InvalidImageError,
    MissingDatasetFileError,
    SkippedImagesWarning,
    load_report,
    skipped_count,
)
from .demo import DEMO_CLASSES, default_demo_dir, generate_demo_dataset
from .images import ImageOpenError, check_image_file, open_rgb, to_rgb
from .loading import list_datasets, load_multilabel_dataset
from .transforms import (
    Cutout,
    ImageTransform,
    MultiLabelBatchTransform,
    apply_transforms,
    build_eval_transform,
    build_randaugment,
    build_train_transform,
    label_vector,
    transforms_from_image_processor,
)
from .voc import VOC_CLASSES

__all__ = [
    "DEMO_CLASSES",
    "VOC_CLASSES",
    "Cutout",
    "DatasetLayoutError",
    "ImageOpenError",
    "ImageTransform",
    "InvalidImageError",
    "MissingDatasetFileError",
    "MultiLabelBatchTransform",
    "MultiLabelCollator",
    "SkippedImagesWarning",
    "apply_transforms",
    "build_eval_transform",
    "build_randaugment",
    "build_train_transform",
    "check_image_file",
    "default_demo_dir",
    "generate_demo_dataset",
    "label_vector",
    "list_datasets",
    "load_multilabel_dataset",
    "load_report",
    "open_rgb",
    "skipped_count",
    "to_rgb",
    "transforms_from_image_processor",
]
