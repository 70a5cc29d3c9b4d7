"""Published configurations by name, and `create_model`, the one door to every model.

The numbers are the official recipes': Query2Label's README/training commands and
ML-Decoder's training scripts and model zoo.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from typing import Any

from transformers import PretrainedConfig

from .models import (
    MLDecoderConfig,
    MLDecoderForImageClassification,
    Query2LabelConfig,
    Query2LabelForImageClassification,
)
from .models.configuration_common import IMAGENET_MEAN, IMAGENET_STD

# CvT-w24 as Query2Label builds it (cvt-w24-384x384.yaml), in transformers' CvtConfig terms.
CVT_W24 = {
    "model_type": "cvt",
    "num_channels": 3,
    "patch_sizes": [7, 3, 3],
    "patch_stride": [4, 2, 2],
    "patch_padding": [2, 1, 1],
    "embed_dim": [192, 768, 1024],
    "num_heads": [3, 12, 16],
    "depth": [2, 2, 20],
    "mlp_ratio": [4.0, 4.0, 4.0],
    "attention_drop_rate": [0.0, 0.0, 0.0],
    "drop_rate": [0.0, 0.0, 0.0],
    "drop_path_rate": [0.0, 0.0, 0.3],
    "qkv_bias": [True, True, True],
    "cls_token": [False, False, True],
    "qkv_projection_method": ["dw_bn", "dw_bn", "dw_bn"],
    "kernel_qkv": [3, 3, 3],
    "padding_kv": [1, 1, 1],
    "stride_kv": [2, 2, 2],
    "padding_q": [1, 1, 1],
    "stride_q": [1, 1, 1],
    # the original CvT's activation and final norm (transformers' port has neither)
    "quick_gelu": True,
    "final_layer_norm": True,
}

_Q2L = dict(num_encoder_layers=1, num_decoder_layers=2, num_heads=4, dim_feedforward=8192, dropout=0.1)
_NO_NORM = dict(image_mean=None, image_std=None)
_IMAGENET = dict(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)

PRESETS: dict[str, tuple[type, dict[str, Any], str]] = {
    "q2l-r101-448": (
        Query2LabelConfig,
        dict(_Q2L, backbone="resnet101.tv_in1k", hidden_dim=2048, image_size=448, freeze_batch_norm=True, **_IMAGENET),
        "Query2Label, ResNet-101 (torchvision ImageNet weights, frozen BatchNorm), 448 px: 84.9 mAP on MS-COCO",
    ),
    "q2l-r101-576": (
        Query2LabelConfig,
        dict(_Q2L, backbone="resnet101.tv_in1k", hidden_dim=2048, image_size=576, freeze_batch_norm=True, **_IMAGENET),
        "Query2Label, ResNet-101, 576 px: 86.5 mAP on MS-COCO",
    ),
    "q2l-tresnetl-448": (
        Query2LabelConfig,
        dict(_Q2L, backbone="tresnet_l.miil_in1k_448", hidden_dim=2432, image_size=448, **_NO_NORM),
        "Query2Label, TResNet-L (ImageNet-1k, 448), 448 px: 87.3 mAP on MS-COCO",
    ),
    "q2l-tresnetl22k-448": (
        Query2LabelConfig,
        dict(_Q2L, backbone="tresnet_v2_l.miil_in21k", hidden_dim=2048, image_size=448, **_NO_NORM),
        "Query2Label, TResNet-L v2 (ImageNet-21k), 448 px: 89.2 mAP on MS-COCO",
    ),
    "q2l-tresnetl22k-640": (
        Query2LabelConfig,
        dict(_Q2L, backbone="tresnet_v2_l.miil_in21k", hidden_dim=2048, image_size=640, **_NO_NORM),
        "Query2Label, TResNet-L v2 (ImageNet-21k), 640 px: 90.3 mAP on MS-COCO",
    ),
    "q2l-swinl-384": (
        Query2LabelConfig,
        dict(_Q2L, backbone="swin_large_patch4_window12_384.ms_in22k", hidden_dim=1536, image_size=384, **_IMAGENET),
        "Query2Label, Swin-L (ImageNet-22k), 384 px: 90.5 mAP on MS-COCO",
    ),
    "q2l-cvt-w24-384": (
        Query2LabelConfig,
        dict(
            _Q2L,
            backbone="microsoft/cvt-w24-384-22k",
            backbone_source="transformers",
            backbone_config=CVT_W24,
            hidden_dim=1024,
            image_size=384,
            **_IMAGENET,
        ),
        "Query2Label, CvT-w24 (ImageNet-22k), 384 px: 91.3 mAP on MS-COCO",
    ),
    "mldecoder-r50-224": (
        MLDecoderConfig,
        dict(backbone="resnet50", image_size=224, **_IMAGENET),
        "ML-Decoder on ResNet-50, 224 px (ImageNet normalisation)",
    ),
    "mldecoder-tresnetm-224": (
        MLDecoderConfig,
        dict(backbone="tresnet_m", image_size=224, **_NO_NORM),
        "ML-Decoder, TResNet-M, 224 px: 84.2 mAP on MS-COCO",
    ),
    "mldecoder-tresnetl-448": (
        MLDecoderConfig,
        # ML-Decoder's TResNet-L is the Bottleneck-first ("v2") TResNet-L
        dict(backbone="tresnet_v2_l", image_size=448, **_NO_NORM),
        "ML-Decoder, TResNet-L, 448 px: 90.1 mAP on MS-COCO",
    ),
    "mldecoder-tresnetl-640": (
        MLDecoderConfig,
        dict(backbone="tresnet_v2_l", image_size=640, **_NO_NORM),
        "ML-Decoder, TResNet-L, 640 px: 91.1 mAP on MS-COCO",
    ),
    "mldecoder-swinl-384": (
        MLDecoderConfig,
        dict(backbone="swin_large_patch4_window12_384.ms_in22k", image_size=384, **_IMAGENET),
        "ML-Decoder on Swin-L (ImageNet-22k), 384 px: the CIFAR-100 single-label result (95.1% top-1)",
    ),
    "mldecoder-tresnetxl-640": (
        MLDecoderConfig,
        # ML-Decoder's TResNet-XL: the Bottleneck-first TResNet with layers [3, 8, 34, 5]
        dict(backbone="tresnet_v2_l", backbone_kwargs={"layers": [3, 8, 34, 5]}, image_size=640, **_NO_NORM),
        "ML-Decoder, TResNet-XL, 640 px: 91.4 mAP on MS-COCO",
    ),
    "mldecoder-tresnetm-zsl-224": (
        MLDecoderConfig,
        # 384: the width of the default text encoder (all-MiniLM-L6-v2), so set_label_names works out of the box;
        # the paper's NUS-WIDE model reads 300-d word vectors (its recipe and the converter take the width from
        # the encoder or the checkpoint).
        dict(backbone="tresnet_m", image_size=224, zero_shot=True, label_embedding_dim=384, num_labels=81, **_NO_NORM),
        "Zero-shot ML-Decoder, TResNet-M, 224 px, label-name queries (default all-MiniLM-L6-v2, 384-d; the paper's "
        "300-d NUS-WIDE word vectors give 31.1 ZSL mAP)",
    ),
}

_MODEL_CLASSES = {
    Query2LabelConfig: Query2LabelForImageClassification,
    MLDecoderConfig: MLDecoderForImageClassification,
}


def list_presets() -> list[str]:
    """Names accepted by `create_model`."""
    return sorted(PRESETS)


def describe_preset(name: str) -> str:
    return PRESETS[_check_name(name)][2]


def _check_name(name: str) -> str:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Valid presets (see hf_mlcls.list_presets()): {', '.join(list_presets())}")
    return name


def preset_config(name: str, **overrides) -> PretrainedConfig:
    """The config of a preset, with `overrides` applied (any config field, e.g. num_labels, backbone)."""
    config_class, kwargs, _ = PRESETS[_check_name(name)]
    kwargs = copy.deepcopy(kwargs)
    if "id2label" in overrides:
        kwargs.pop("num_labels", None)
    if overrides.get("backbone") and "backbone_config" not in overrides:
        kwargs.pop("backbone_config", None)
    kwargs.update(overrides)
    return config_class(**kwargs)


def config_fields(config_class: type) -> set[str]:
    """The keyword arguments a config class understands: its own and its bases' parameters and stored fields."""
    fields = {"num_labels"}
    for klass in config_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            fields.update(
                p.name for p in inspect.signature(init).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
            )
    fields.update(config_class().to_dict())
    return fields


def _check_overrides(config_class: type, overrides: dict) -> None:
    unknown = sorted(set(overrides) - config_fields(config_class))
    if not unknown:
        return
    known = config_fields(config_class)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise TypeError(
        f"create_model: {config_class.__name__} has no field {', '.join(hints)}; "
        "see the config class's docstring for the fields it takes"
    )


def create_model(name: str | PretrainedConfig, pretrained_backbone: bool = False, pretrained: bool = False, **overrides):
    """Build a classification model from a preset name or a config, like `timm.create_model`.

    Args:
        name: a preset (`list_presets()`) or a `Query2LabelConfig` / `MLDecoderConfig`.
        pretrained_backbone: fetch the backbone's pretrained weights (needs the Hub, or set
            `backbone_weights_file` to a local file).
        pretrained: timm's keyword, kept so that code written for timm fails clearly: presets have no
            whole-model weights to download, so `pretrained=True` is refused (use `pretrained_backbone=True`
            for the backbone's weights, or `from_pretrained` / `hf-mlcls convert` for a trained model).
        **overrides: config fields to change, e.g. `num_labels=20`, `id2label={...}`, `backbone="resnet50"`,
            `backbone_kwargs={...}`. A keyword that is no field of the config is refused by name.
    """
    if pretrained:
        raise ValueError(
            "create_model(pretrained=True): a preset has no whole-model weights to download; "
            "pass pretrained_backbone=True for the backbone's ImageNet weights, or load a trained model with "
            "AutoModelForImageClassification.from_pretrained(folder_or_hub_id) (official checkpoints: hf-mlcls convert)"
        )
    if isinstance(name, PretrainedConfig):
        _check_overrides(type(name), overrides)
        config = copy.deepcopy(name)
        for key, value in overrides.items():
            setattr(config, key, value)
    elif isinstance(name, str):
        _check_overrides(PRESETS[_check_name(name)][0], overrides)
        config = preset_config(name, **overrides)
    else:
        raise ValueError(f"create_model takes a preset name or a config, got {type(name).__name__}")
    config.use_pretrained_backbone = bool(pretrained_backbone or config.use_pretrained_backbone)
    model_class = _MODEL_CLASSES.get(type(config))
    if model_class is None:
        raise ValueError(f"no model for config type {type(config).__name__}; expected Query2LabelConfig or MLDecoderConfig")
    model = model_class(config)
    # The weights are in the model now; a later from_pretrained must not fetch them again.
    model.config.use_pretrained_backbone = False
    return model
