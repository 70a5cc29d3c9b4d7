"""ML-Decoder (Ridnik et al., 2021) as a transformers model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .backbone import FeatureBackbone
from .configuration_ml_decoder import MLDecoderConfig
from .layers import GroupFullyConnected, MLDecoderLayer
from .modeling_common import (
    ClassifierForwardMixin,
    MultiLabelClassifierOutput,
    MultiLabelModelOutput,
    MultiLabelPreTrainedModel,
    attention_to_grid,
    build_loss,
    check_labels,
    check_pixel_values,
)
from .text_encoding import LabelEncoder, check_label_names, encode_label_names, get_text_encoder


class MLDecoderPreTrainedModel(MultiLabelPreTrainedModel):
    config_class = MLDecoderConfig
    _remote_code_map = {
        "AutoConfig": "configuration_ml_decoder.MLDecoderConfig",
        "AutoModel": "modeling_ml_decoder.MLDecoderModel",
        "AutoModelForImageClassification": "modeling_ml_decoder.MLDecoderForImageClassification",
        "AutoImageProcessor": "image_processing_multilabel.MultiLabelImageProcessor",
    }


class MLDecoderModel(MLDecoderPreTrainedModel):
    """Backbone + ML-Decoder: returns one decoder state per query, (B, K, decoder_embedding).

    In zero-shot mode the queries are the projected label embeddings held in the
    `label_embeddings` buffer (num_labels, label_embedding_dim), which is saved with the weights.
    """

    def __init__(self, config: MLDecoderConfig) -> None:
        super().__init__(config)
        self.backbone = FeatureBackbone(config)
        d = config.decoder_embedding
        self.input_proj = nn.Linear(self.backbone.num_channels, d)
        if config.zero_shot:
            self.query_embed = None
            self.label_embedding_proj = (
                nn.Identity() if config.label_embedding_dim == d else nn.Linear(config.label_embedding_dim, d)
            )
            # NaN marks "not set yet"; set_label_embeddings fills it.
            self.register_buffer(
                "label_embeddings", torch.full((config.num_labels, config.label_embedding_dim), float("nan"))
            )
        else:
            self.query_embed = nn.Embedding(config.num_queries, d)
            self.query_embed.requires_grad_(False)  # ML-Decoder's queries are fixed, not learned
        self.decoder_layer = MLDecoderLayer(d, config.num_heads, config.dim_feedforward, config.dropout)
        self.gradient_checkpointing = False
        self.post_init()

    @torch.no_grad()
    def set_label_embeddings(self, embeddings: Tensor, label_names: list[str] | None = None) -> None:
        """Set the zero-shot label embeddings (num_labels, label_embedding_dim) and, optionally, their names.

        The model keeps its own copy, in the dtype and on the device of the embeddings it replaces.
        """
        if not self.config.zero_shot:
            raise ValueError("set_label_embeddings needs a zero-shot model (zero_shot=True)")
        current = self.label_embeddings
        embeddings = torch.as_tensor(embeddings).detach().to(dtype=current.dtype)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.config.label_embedding_dim:
            raise ValueError(
                f"label embeddings must have shape (num_labels, {self.config.label_embedding_dim}), "
                f"got {tuple(embeddings.shape)}"
            )
        if label_names is not None and len(label_names) != embeddings.shape[0]:
            raise ValueError(f"got {len(label_names)} label names for {embeddings.shape[0]} embeddings")
        self.label_embeddings = embeddings.to(device=current.device).clone(memory_format=torch.contiguous_format)
        names = list(label_names) if label_names is not None else [f"LABEL_{i}" for i in range(embeddings.shape[0])]
        self.config.id2label = dict(enumerate(names))
        self.config.label2id = {name: i for i, name in enumerate(names)}

    def set_label_names(self, names: Sequence[str], text_encoder: str | LabelEncoder | None = None) -> None:
        """Zero-shot: make ``names`` the label set; outputs then follow their number and order.

        Args:
            names: distinct label names, e.g. ``["dog", "beach umbrella"]``.
            text_encoder: what turns names into label embeddings (see ``text_encoding``): a
                word-vector file (GloVe text or ``wordvec_array.pth``), a transformers folder or
                Hub id (sentence-transformers or CLIP-like), or a ``LabelEncoder``. Default: the
                model's ``config.text_encoder``, else all-MiniLM-L6-v2 (the packaged offline copy).

        The embeddings are cached per (encoder, label list); the encoder's name is recorded in
        ``config.text_encoder`` so that a saved model remembers it.
        """
        if not self.config.zero_shot:
            raise ValueError("set_label_names needs a zero-shot model (zero_shot=True)")
        names = check_label_names(names)
        encoder = get_text_encoder(text_encoder if text_encoder is not None else self.config.text_encoder)
        if encoder.dim != self.config.label_embedding_dim:
            raise ValueError(
                f"set_label_names: the text encoder {encoder.name!r} gives {encoder.dim}-wide label embeddings, but "
                f"this model's label_embedding_dim is {self.config.label_embedding_dim}; use an encoder of that width "
                "(the one it was trained with), or train a model with label_embedding_dim="
                f"{encoder.dim}"
            )
        self.set_label_embeddings(encode_label_names(names, encoder), names)
        self.config.text_encoder = encoder.name

    @contextmanager
    def use_label_names(
        self,
        names: Sequence[str],
        text_encoder: str | LabelEncoder | None = None,
        embeddings: Tensor | None = None,
    ) -> Iterator[MLDecoderModel]:
        """Zero-shot: score ``names`` inside the ``with`` block only; the label set in use before comes back after.

        Args:
            names: distinct label names; outputs follow their number and order inside the block.
            text_encoder: embeds ``names`` (as in `set_label_names`); default ``config.text_encoder``.
            embeddings: (len(names), label_embedding_dim) label embeddings to use as they are, instead of
                encoding ``names`` (then give no ``text_encoder``).

        On exit, also when the block raises, the model gets back the very embeddings tensor it had (so a
        wrapper holding its buffers, such as DDP, stays valid), ``id2label``/``label2id`` and
        ``config.text_encoder``. `set_label_names` is the permanent change.
        """
        if not self.config.zero_shot:
            raise ValueError("use_label_names needs a zero-shot model (zero_shot=True)")
        if embeddings is not None and text_encoder is not None:
            raise ValueError("use_label_names: give text_encoder (to embed the names) or embeddings, not both")
        config = self.config
        saved = (self.label_embeddings, dict(config.id2label), dict(config.label2id), config.text_encoder)
        try:
            if embeddings is None:
                self.set_label_names(names, text_encoder)
            else:
                self.set_label_embeddings(embeddings, check_label_names(names))
            yield self
        finally:
            self.label_embeddings, config.id2label, config.label2id, config.text_encoder = saved

    def _queries(self, extra: int = 0) -> Tensor:
        if not self.config.zero_shot:
            if extra:
                raise ValueError("extra_queries is a zero-shot training augmentation (zero_shot=True)")
            return self.query_embed.weight
        embeddings = self.label_embeddings
        # checked once per value of the buffer, not every step (reading the result back would stall an
        # accelerator): the tensor remembers the version it was checked at; an in-place write bumps the
        # version, and a new tensor (set_label_embeddings, .to(device), loading) has no mark
        # (tensors made under inference_mode have no version: they are checked every time)
        version = None if embeddings.is_inference() else embeddings._version
        if not torch.compiler.is_compiling() and (version is None or getattr(embeddings, "_checked_version", None) != version):
            if torch.isnan(embeddings).any():
                raise ValueError(
                    "this zero-shot ML-Decoder has no label embeddings; call set_label_embeddings(...) "
                    "or set_label_names(...) first"
                )
            if version is not None:
                embeddings._checked_version = version
        if self.training and self.config.query_noise_std > 0:
            # the paper's additive query noise: Gaussian noise on the label embeddings
            embeddings = embeddings + torch.randn_like(embeddings) * self.config.query_noise_std
        if extra > 0:
            # the paper's random-query additions: random vectors with the label embeddings' mean and spread;
            # the classifier scores them as negatives (see MLDecoderForImageClassification.forward)
            base = self.label_embeddings
            noise = torch.randn(extra, base.shape[1], device=base.device, dtype=base.dtype)
            embeddings = torch.cat([embeddings, base.mean(0) + noise * base.std(unbiased=False)])
        return F.relu(self.label_embedding_proj(embeddings))

    def forward(
        self,
        pixel_values: Tensor,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        extra_queries: int = 0,
        **kwargs,
    ) -> MultiLabelModelOutput | tuple:
        r"""
        Args:
            extra_queries (`int`, defaults to 0): zero-shot training only: append this many random queries
                (their states come last in `last_hidden_state`); `MLDecoderForImageClassification` asks for
                `config.query_extra` of them in training and scores them as negative labels.
        """
        check_pixel_values(pixel_values)
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        features = self.backbone(pixel_values)
        tokens = features.flatten(2).transpose(1, 2) if features.ndim == 4 else features
        memory = F.relu(self.input_proj(tokens))
        queries = self._queries(extra_queries).to(memory.dtype)
        tgt = queries.unsqueeze(0).expand(memory.shape[0], -1, -1)
        if self.gradient_checkpointing and self.training:
            hidden, weights = checkpoint(self.decoder_layer, tgt, memory, output_attentions, use_reentrant=False)
        else:
            hidden, weights = self.decoder_layer(tgt, memory, need_weights=output_attentions)
        cross = None
        if output_attentions:
            cross = (attention_to_grid(weights, features, self.backbone, pixel_values.shape[-2:]),)
        if not return_dict:
            return (hidden, features) + ((cross,) if cross is not None else ())
        return MultiLabelModelOutput(last_hidden_state=hidden, feature_map=features, cross_attentions=cross)


class MLDecoderForImageClassification(ClassifierForwardMixin, MLDecoderPreTrainedModel):
    """ML-Decoder with its group fully-connected classifier and the asymmetric loss."""

    def __init__(self, config: MLDecoderConfig) -> None:
        super().__init__(config)
        self.model = MLDecoderModel(config)
        self.classifier = GroupFullyConnected(
            config.num_queries, config.decoder_embedding, config.num_labels, zero_shot=config.zero_shot
        )
        self.loss_fct = build_loss(config)
        self.post_init()

    def set_label_embeddings(self, embeddings: Tensor, label_names: list[str] | None = None) -> None:
        """Zero-shot: replace the label set. Output count and order follow the given embeddings."""
        self.model.set_label_embeddings(embeddings, label_names)
        self.classifier.num_labels = self.config.num_labels

    def set_label_names(self, names: Sequence[str], text_encoder: str | LabelEncoder | None = None) -> None:
        """Zero-shot: make ``names`` the label set, embedded by ``text_encoder`` (see `MLDecoderModel.set_label_names`).

        ``model(pixel_values).logits[:, i]`` then scores ``names[i]``; `save_pretrained` keeps the names, their
        embeddings and ``config.text_encoder``, and `pipeline("image-classification")` reports these names.
        """
        self.model.set_label_names(names, text_encoder)
        self.classifier.num_labels = self.config.num_labels

    @contextmanager
    def use_label_names(
        self,
        names: Sequence[str],
        text_encoder: str | LabelEncoder | None = None,
        embeddings: Tensor | None = None,
    ) -> Iterator[MLDecoderForImageClassification]:
        """Zero-shot: score ``names`` inside the ``with`` block only (see `MLDecoderModel.use_label_names`)::

            with model.use_label_names(["dog", "beach umbrella"]):
                scores = model(pixel_values).logits.sigmoid()  # (batch, 2), in that order

        Everything the label set decides (embeddings, ``id2label``, ``label2id``, ``config.text_encoder``, the
        classifier's output count) is restored on exit, also when the block raises.
        """
        num_labels = self.classifier.num_labels
        try:
            with self.model.use_label_names(names, text_encoder, embeddings):
                self.classifier.num_labels = self.config.num_labels
                yield self
        finally:
            self.classifier.num_labels = num_labels

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: Tensor | int | None = None,
        **kwargs,
    ) -> MultiLabelClassifierOutput | tuple:
        extra = self.config.query_extra if self.config.zero_shot and self.training and labels is not None else 0
        if not extra:
            return super().forward(pixel_values, labels, output_attentions, return_dict, num_items_in_batch, **kwargs)
        # Zero-shot training with random-query additions: the extra queries join the loss as labels that are
        # absent from every image, then are cut from every output. (Without self-attention a query's state does not
        # depend on the other queries, so extra queries left out of the loss would change nothing.)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.model(pixel_values, output_attentions=output_attentions, return_dict=True, extra_queries=extra)
        c = self.config.num_labels
        all_logits = self.classifier(outputs.last_hidden_state)
        logits = all_logits[:, :c]
        check_labels(labels, logits)
        targets = torch.cat([labels.to(all_logits.dtype), all_logits.new_zeros(labels.shape[0], extra)], dim=1)
        # a mean reduction divides by every entry it saw, the extra columns included
        count = None if num_items_in_batch is None else num_items_in_batch * (c + extra) / c
        loss = self.loss_fct(all_logits, targets, count)
        hidden = outputs.last_hidden_state[:, :c]
        cross = tuple(a[:, :c] for a in outputs.cross_attentions) if outputs.cross_attentions is not None else None
        if not return_dict:
            return (loss, logits, hidden) + ((cross,) if cross is not None else ())
        return MultiLabelClassifierOutput(loss=loss, logits=logits, hidden_states=hidden, cross_attentions=cross)



MLDecoderConfig.register_for_auto_class()
MLDecoderModel.register_for_auto_class("AutoModel")
MLDecoderForImageClassification.register_for_auto_class("AutoModelForImageClassification")
