"""Configuration fields shared by both heads: the backbone, the input pipeline and the loss."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import ClassVar

from transformers import PretrainedConfig

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# The pipeline a saved folder offers as remote code (`pipeline(model=folder, trust_remote_code=True)`):
# pipeline_multilabel.py ships beside the model's code (docs/preprocessing.md).
CUSTOM_PIPELINES = {
    "image-classification": {
        "impl": "pipeline_multilabel.MultiLabelImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "type": "image",
    }
}


class MultiLabelConfig(PretrainedConfig):
    r"""Base configuration of the multi-label models.

    Args:
        backbone (`str`, defaults to `"resnet101"`):
            For `backbone_source="timm"`, any `timm` model name (`timm.list_models()` lists them).
            For `"transformers"`, a model type (`"cvt"`, `"resnet"`, `"convnext"`, ...) or a Hub id.
        backbone_source (`str`, defaults to `"timm"`): `"timm"` or `"transformers"`.
        backbone_kwargs (`dict`, *optional*): extra arguments for `timm.create_model` or the transformers
            backbone config (e.g. `{"layers": [1, 1, 1, 1]}`).
        backbone_config (`dict`, *optional*): the complete transformers backbone config. Filled in when the
            model is first built so that `from_pretrained` rebuilds the backbone offline.
        out_index (`int`, defaults to -1): which stage's features to use; -1 is the final feature map.
        use_pretrained_backbone (`bool`, defaults to `False`): fetch ImageNet weights for the backbone when the
            model is created for training. Never honoured while loading a checkpoint.
        backbone_weights_file (`str`, *optional*): a local `.safetensors`/`.pth` file with backbone weights, for
            offline training starts.
        freeze_batch_norm (`bool`, defaults to `False`): replace the backbone's BatchNorm2d layers by frozen ones
            (Query2Label's ResNet recipe).
        image_size (`int`, defaults to 448): square input resolution of the published recipe. Any other size works
            at inference; the image processor resizes to this one.
        image_mean / image_std (`list[float]`, *optional*): input normalisation; `None` means inputs stay in
            [0, 1] (TResNet models are trained that way).
        asl_gamma_neg, asl_gamma_pos, asl_clip, asl_eps, asl_focal_grad, asl_reduction: the asymmetric loss,
            see `hf_mlcls.models.losses.AsymmetricLoss`.
        num_labels / id2label: the label set; defaults to 80 labels (MS-COCO's size).
    """

    # Large per-query outputs the Trainer must not gather during evaluation.
    keys_to_ignore_at_inference = ["hidden_states", "cross_attentions"]
    # Set where the installed package has registered its pipeline with transformers (hf_mlcls._auto); never
    # in a copy loaded as remote code.
    pipeline_registered: ClassVar[bool] = False

    def __init__(
        self,
        backbone: str = "resnet101",
        backbone_source: str = "timm",
        backbone_kwargs: dict | None = None,
        backbone_config: dict | None = None,
        out_index: int = -1,
        use_pretrained_backbone: bool = False,
        backbone_weights_file: str | None = None,
        freeze_batch_norm: bool = False,
        image_size: int = 448,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        asl_gamma_neg: float = 4.0,
        asl_gamma_pos: float = 0.0,
        asl_clip: float = 0.05,
        asl_eps: float = 1e-8,
        asl_focal_grad: bool = False,
        asl_reduction: str = "sum",
        **kwargs,
    ):
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["num_labels"] = 80
        kwargs.setdefault("problem_type", "multi_label_classification")
        if backbone_kwargs is not None and not isinstance(backbone_kwargs, Mapping):
            raise ValueError(f"backbone_kwargs must be a dict of keyword arguments, got {backbone_kwargs!r}")
        self.backbone = backbone
        self.backbone_source = backbone_source
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.backbone_config = backbone_config
        self.out_index = out_index
        self.use_pretrained_backbone = use_pretrained_backbone
        self.backbone_weights_file = backbone_weights_file
        self.freeze_batch_norm = freeze_batch_norm
        self.image_size = image_size
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        self.asl_gamma_neg = asl_gamma_neg
        self.asl_gamma_pos = asl_gamma_pos
        self.asl_clip = asl_clip
        self.asl_eps = asl_eps
        self.asl_focal_grad = asl_focal_grad
        self.asl_reduction = asl_reduction
        super().__init__(**kwargs)
        self._validate_common()

    @property
    def custom_pipelines(self) -> dict:
        """config.json's `custom_pipelines` (always saved) as transformers' `pipeline()` should see it.

        Empty where the installed package has registered the pipeline itself: transformers demands
        `trust_remote_code=True` for any task a config lists, even when the pipeline needs no remote code.
        """
        return {} if type(self).pipeline_registered else copy.deepcopy(CUSTOM_PIPELINES)

    @custom_pipelines.setter
    def custom_pipelines(self, value) -> None:
        """Ignored (the value read from a config.json, or set by `Pipeline.save_pretrained`): it is fixed."""

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["custom_pipelines"] = copy.deepcopy(CUSTOM_PIPELINES)
        return out

    def _check_integers(self, *names: str) -> None:
        """Integer fields must be ints (not floats, not booleans): each is a count or a size."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")

    def _check_bools(self, *names: str) -> None:
        """Switches must be booleans: the string "false" from a YAML or JSON override would read as True."""
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")

    def _check_finite(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")

    def _validate_common(self) -> None:
        if self.backbone_source not in ("timm", "transformers"):
            raise ValueError(f"backbone_source must be 'timm' or 'transformers', got {self.backbone_source!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        self._check_integers("out_index")
        self._check_bools("use_pretrained_backbone", "freeze_batch_norm", "asl_focal_grad")
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise ValueError(f"backbone must be a model name, got {self.backbone!r}")
        if self.backbone_weights_file is not None and not isinstance(self.backbone_weights_file, (str, os.PathLike)):
            raise ValueError(f"backbone_weights_file must be a path or None, got {self.backbone_weights_file!r}")
        if self.backbone_config is not None and not isinstance(self.backbone_config, Mapping):
            raise ValueError(f"backbone_config must be a dict (a transformers config's to_dict()) or None, got {self.backbone_config!r}")
        if (self.image_mean is None) != (self.image_std is None):
            raise ValueError("image_mean and image_std must be given together (or both left None)")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                raise ValueError(f"{name} must have 3 values (RGB), got {value!r}")
            if value is not None and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
            ):
                raise ValueError(f"{name} must hold 3 finite numbers, got {value!r}")
        if self.image_std is not None and any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std!r}")
        if self.asl_reduction not in ("sum", "scaled_mean"):
            raise ValueError(f"asl_reduction must be 'sum' or 'scaled_mean', got {self.asl_reduction!r}")
        self._check_finite("asl_gamma_neg", "asl_gamma_pos", "asl_eps")
        if self.asl_gamma_neg < 0 or self.asl_gamma_pos < 0:
            raise ValueError("asl_gamma_neg and asl_gamma_pos must be >= 0")
        if not 0 <= self.asl_clip < 1:
            raise ValueError(f"asl_clip must be in [0, 1), got {self.asl_clip!r}")
        if not 0 < self.asl_eps < 1:
            raise ValueError(f"asl_eps must be in (0, 1) (it bounds the probabilities inside log), got {self.asl_eps!r}")
        if self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels}")
        if sorted(self.id2label) != list(range(self.num_labels)):
            raise ValueError(f"id2label keys must be 0 .. num_labels - 1, got {sorted(self.id2label)[:10]!r}")
        if self.problem_type not in (None, "multi_label_classification", "single_label_classification"):
            raise ValueError(
                f"problem_type must be 'multi_label_classification' or 'single_label_classification', "
                f"got {self.problem_type!r}"
            )
