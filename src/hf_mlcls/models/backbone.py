"""Feature-map backbones from timm or transformers, described entirely by the model config.

``FeatureBackbone(config)`` returns either a feature map (B, C, H, W) (CNNs, Swin, CvT)
or a token sequence (B, N, D) (ViT-style models, ``output_kind == "tokens"``).
Pretrained backbone weights are fetched only when a model is built for training with
``use_pretrained_backbone=True`` (or read from ``backbone_weights_file``); while a
checkpoint is being loaded they never are, because the checkpoint holds them.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Any

import torch
from torch import Tensor, nn

_LOADING_CHECKPOINT: contextvars.ContextVar[bool] = contextvars.ContextVar("hf_mlcls_loading_checkpoint", default=False)


@contextlib.contextmanager
def loading_checkpoint():
    """Inside this context backbones are built without fetching any pretrained weights."""
    token = _LOADING_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _LOADING_CHECKPOINT.reset(token)


def _load_state_dict_file(path: str) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone_weights_file {path!r} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def _timm_backbone(config) -> tuple[nn.Module, int, str, int]:
    import timm

    name = config.backbone
    if not timm.is_model(name):
        raise ValueError(
            f"Unknown timm backbone {name!r}. List valid names with `timm.list_models()` "
            "(or `timm.list_models('*resnet*')`), or set backbone_source='transformers'."
        )
    pretrained = config.use_pretrained_backbone and not _LOADING_CHECKPOINT.get()
    kwargs: dict[str, Any] = dict(config.backbone_kwargs or {})
    weights_file = config.backbone_weights_file if not _LOADING_CHECKPOINT.get() else None
    if weights_file:
        if not os.path.isfile(weights_file):
            raise FileNotFoundError(f"backbone_weights_file {weights_file!r} does not exist")
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = dict(file=weights_file)
    if config.out_index != -1:
        try:
            model = timm.create_model(
                name, pretrained=pretrained, features_only=True, out_indices=(config.out_index,), **kwargs
            )
        except IndexError as err:
            kwargs.pop("pretrained_cfg_overlay", None)
            stages = len(timm.create_model(name, pretrained=False, features_only=True, **kwargs).feature_info)
            raise ValueError(
                f"out_index {config.out_index} is not a feature stage of timm backbone {name!r}, which has {stages} "
                f"(valid: {-stages} .. {stages - 1}; -1 is the last)"
            ) from err
        return model, model.feature_info.channels()[-1], "features", 0
    model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="", **kwargs)
    kind = "nhwc" if getattr(model, "output_fmt", "NCHW") == "NHWC" else "timm"
    return model, model.num_features, kind, int(getattr(model, "num_prefix_tokens", 0) or 0)


def _resolve_transformers_backbone_config(config) -> dict:
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if config.backbone_config is not None:
        return dict(config.backbone_config)
    kwargs = dict(config.backbone_kwargs or {})
    if config.backbone in CONFIG_MAPPING:
        hf_config = AutoConfig.for_model(config.backbone, **kwargs)
    else:
        if _LOADING_CHECKPOINT.get():
            raise ValueError("A checkpoint with a transformers backbone must carry `backbone_config`.")
        hf_config = AutoConfig.from_pretrained(config.backbone, **kwargs)
    return hf_config.to_dict()


def _transformers_backbone(config) -> tuple[nn.Module, int, str, int]:
    from transformers import AutoBackbone, AutoConfig, CvtModel

    # The full backbone config is stored so that from_pretrained rebuilds it offline.
    config.backbone_config = _resolve_transformers_backbone_config(config)
    backbone_dict = dict(config.backbone_config)
    model_type = backbone_dict.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **backbone_dict)
    pretrained = config.use_pretrained_backbone and not _LOADING_CHECKPOINT.get() and model_type != config.backbone
    if model_type == "cvt":
        # CvT has no AutoBackbone; its last stage output is already (B, C, H, W).
        model = (
            CvtModel.from_pretrained(config.backbone, config=hf_config, add_pooling_layer=False)
            if pretrained
            else CvtModel(hf_config, add_pooling_layer=False)
        )
        channels = hf_config.embed_dim[-1]
        model = OfficialCvt(model, channels, getattr(hf_config, "quick_gelu", False), getattr(hf_config, "final_layer_norm", False))
    else:
        if not getattr(hf_config, "stage_names", None):
            raise ValueError(
                f"transformers model type {model_type!r} is not a backbone; use a model with an AutoBackbone "
                "class (e.g. 'resnet', 'convnext', 'swin', 'dinov2') or 'cvt'."
            )
        if config.out_index == -1:
            hf_config.out_features = [hf_config.stage_names[-1]]
            hf_config.out_indices = [len(hf_config.stage_names) - 1]
        else:
            stages = len(hf_config.stage_names)
            if not -stages <= config.out_index < stages:
                raise ValueError(
                    f"out_index {config.out_index} is not a stage of transformers backbone {model_type!r}, whose stages "
                    f"are {hf_config.stage_names} (valid: {-stages} .. {stages - 1}; -1 is the last)"
                )
            hf_config.out_indices = [config.out_index]
            hf_config.out_features = [hf_config.stage_names[config.out_index]]
        model = AutoBackbone.from_pretrained(config.backbone, config=hf_config) if pretrained else AutoBackbone.from_config(hf_config)
        channels = model.channels[-1]
    if config.backbone_weights_file and not _LOADING_CHECKPOINT.get():
        model.load_state_dict(_load_state_dict_file(config.backbone_weights_file), strict=False)
    return model, channels, "cvt" if model_type == "cvt" else "hf_backbone", 0


class OfficialCvt(nn.Module):
    """transformers' CvtModel, optionally made to compute what Microsoft's CvT (and Query2Label) computes.

    The original CvT uses QuickGELU (x * sigmoid(1.702 x)) in its MLPs and ends with a
    LayerNorm over channels; transformers' port uses exact GELU and has no final norm.
    Both are switched on by `quick_gelu` / `final_layer_norm` in the backbone config
    (the `q2l-cvt-w24-384` preset does), so official weights give official features.
    """

    def __init__(self, cvt: nn.Module, channels: int, quick_gelu: bool, final_layer_norm: bool) -> None:
        super().__init__()
        self.cvt = cvt
        if quick_gelu:
            from timm.layers import QuickGELU

            for module in cvt.modules():
                if type(module).__name__ == "CvtIntermediate":
                    module.activation = QuickGELU()
        self.norm = nn.LayerNorm(channels, eps=1e-5) if final_layer_norm else None

    def forward(self, pixel_values: Tensor) -> Tensor:
        features = self.cvt(pixel_values).last_hidden_state
        if self.norm is not None:
            features = self.norm(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return features


class FeatureBackbone(nn.Module):
    """A timm or transformers model that returns its last (or ``out_index``) features.

    The output is (B, C, H, W) for convolutional and hierarchical models and (B, N, D),
    prefix tokens included, for ViT-style models; callers tell them apart by rank.
    """

    def __init__(self, config) -> None:
        super().__init__()
        if config.backbone_source == "timm":
            model, channels, kind, prefix = _timm_backbone(config)
        elif config.backbone_source == "transformers":
            model, channels, kind, prefix = _transformers_backbone(config)
        else:
            raise ValueError(f"backbone_source must be 'timm' or 'transformers', got {config.backbone_source!r}")
        if config.freeze_batch_norm:
            from timm.layers import freeze_batch_norm_2d

            model = freeze_batch_norm_2d(model)
        self.model = model
        self.num_channels = int(channels)
        self._kind = kind
        self.num_prefix_tokens = prefix
        # Non-persistent buffers (e.g. relative-position indices) become persistent so that
        # they travel in the checkpoint: a model materialised from the meta device gets them back.
        for module in self.modules():
            module._non_persistent_buffers_set.clear()
            module._hf_mlcls_backbone = True

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self.model, "set_grad_checkpointing"):
            self.model.set_grad_checkpointing(enable)
        elif hasattr(self.model, "gradient_checkpointing_enable"):
            if enable:
                self.model.gradient_checkpointing_enable()
            else:
                self.model.gradient_checkpointing_disable()

    def forward(self, pixel_values: Tensor) -> Tensor:
        if self._kind == "features":
            return self.model(pixel_values)[-1]
        if self._kind == "hf_backbone":
            return self.model(pixel_values).feature_maps[-1]
        if self._kind == "cvt":
            return self.model(pixel_values)
        features = self.model.forward_features(pixel_values)
        if self._kind == "nhwc" and features.ndim == 4:
            features = features.permute(0, 3, 1, 2)
        return features

    def token_grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w): the patch grid a token backbone lays over ``image_size`` inputs."""
        patch = self.model.patch_embed.patch_size
        return image_size[0] // patch[0], image_size[1] // patch[1]

    def tokens_to_map(self, tokens: Tensor, image_size: tuple[int, int]) -> Tensor:
        """(B, N, D) patch tokens (with prefix tokens) -> (B, D, h, w) map for ``image_size`` inputs."""
        tokens = tokens[:, self.num_prefix_tokens :]
        h, w = self.token_grid(image_size)
        if h * w != tokens.shape[1]:
            raise ValueError(f"cannot arrange {tokens.shape[1]} tokens on a {h}x{w} grid for input {image_size}")
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)
