"""Query2Label (Liu et al., 2021) as a transformers model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .backbone import FeatureBackbone
from .configuration_query2label import Query2LabelConfig
from .layers import GroupWiseLinear, Query2LabelDecoderLayer, Query2LabelEncoderLayer, sine_position_encoding
from .modeling_common import (
    ClassifierForwardMixin,
    MultiLabelModelOutput,
    MultiLabelPreTrainedModel,
    attention_to_grid,
    build_loss,
    check_pixel_values,
)


class Query2LabelTransformer(nn.Module):
    """Encoder over the feature map, then a decoder whose queries are the label embeddings."""

    _xavier_init = True

    def __init__(self, config: Query2LabelConfig) -> None:
        super().__init__()
        d = config.hidden_dim
        args = (d, config.num_heads, config.dim_feedforward, config.dropout, config.activation, config.pre_norm)
        self.encoder_layers = nn.ModuleList(Query2LabelEncoderLayer(*args) for _ in range(config.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(d) if config.pre_norm and config.num_encoder_layers > 0 else None
        self.decoder_layers = nn.ModuleList(
            Query2LabelDecoderLayer(
                *args,
                self_attention=config.keep_first_self_attn_dec if i == 0 else config.keep_other_self_attn_dec,
            )
            for i in range(config.num_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.gradient_checkpointing = False

    def _run(self, layer: nn.Module, *args):
        if self.gradient_checkpointing and self.training:
            return checkpoint(layer, *args, use_reentrant=False)
        return layer(*args)

    def forward(
        self, src: Tensor, pos: Tensor, query_embed: Tensor, output_attentions: bool = False
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        # src, pos: (B, HW, D); query_embed: (C, D)
        memory = src
        for layer in self.encoder_layers:
            memory = self._run(layer, memory, pos)
        if self.encoder_norm is not None:
            memory = self.encoder_norm(memory)
        query_pos = query_embed.unsqueeze(0).expand(src.shape[0], -1, -1)
        tgt = torch.zeros_like(query_pos)
        attentions = []
        for layer in self.decoder_layers:
            tgt, weights = self._run(layer, tgt, memory, pos, query_pos, output_attentions)
            if output_attentions:
                attentions.append(weights)
        return self.decoder_norm(tgt), tuple(attentions)


class Query2LabelPreTrainedModel(MultiLabelPreTrainedModel):
    config_class = Query2LabelConfig
    _remote_code_map = {
        "AutoConfig": "configuration_query2label.Query2LabelConfig",
        "AutoModel": "modeling_query2label.Query2LabelModel",
        "AutoModelForImageClassification": "modeling_query2label.Query2LabelForImageClassification",
        "AutoImageProcessor": "image_processing_multilabel.MultiLabelImageProcessor",
    }


class Query2LabelModel(Query2LabelPreTrainedModel):
    """Backbone + Transformer: returns one decoder state per label, (B, num_labels, hidden_dim)."""

    def __init__(self, config: Query2LabelConfig) -> None:
        super().__init__(config)
        self.backbone = FeatureBackbone(config)
        channels = self.backbone.num_channels
        if config.keep_input_proj:
            self.input_proj = nn.Conv2d(channels, config.hidden_dim, kernel_size=1)
        elif channels != config.hidden_dim:
            raise ValueError(
                f"hidden_dim ({config.hidden_dim}) must equal the backbone's channel count ({channels}) "
                "when keep_input_proj=False; set hidden_dim or keep_input_proj=True"
            )
        else:
            self.input_proj = nn.Identity()
        self.transformer = Query2LabelTransformer(config)
        self.query_embed = nn.Embedding(config.num_labels, config.hidden_dim)
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MultiLabelModelOutput | tuple:
        check_pixel_values(pixel_values)
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.backbone(pixel_values)
        feature_map = features if features.ndim == 4 else self.backbone.tokens_to_map(features, pixel_values.shape[-2:])
        src = self.input_proj(feature_map)
        b, d, h, w = src.shape
        pos = sine_position_encoding(
            h, w, d // 2, temperature=self.config.position_temperature, device=src.device
        ).to(src.dtype)
        src = src.flatten(2).transpose(1, 2)
        pos = pos.flatten(1).transpose(0, 1).unsqueeze(0)
        hidden, attentions = self.transformer(src, pos, self.query_embed.weight, output_attentions)
        cross = tuple(attention_to_grid(a, feature_map, self.backbone, pixel_values.shape[-2:]) for a in attentions)
        if not return_dict:
            return (hidden, features) + ((cross,) if output_attentions else ())
        return MultiLabelModelOutput(
            last_hidden_state=hidden, feature_map=features, cross_attentions=cross if output_attentions else None
        )


class Query2LabelForImageClassification(ClassifierForwardMixin, Query2LabelPreTrainedModel):
    """Query2Label with its per-label linear classifier and the asymmetric loss."""

    def __init__(self, config: Query2LabelConfig) -> None:
        super().__init__(config)
        self.model = Query2LabelModel(config)
        self.classifier = GroupWiseLinear(config.num_labels, config.hidden_dim)
        self.loss_fct = build_loss(config)
        self.post_init()



Query2LabelConfig.register_for_auto_class()
Query2LabelModel.register_for_auto_class("AutoModel")
Query2LabelForImageClassification.register_for_auto_class("AutoModelForImageClassification")
