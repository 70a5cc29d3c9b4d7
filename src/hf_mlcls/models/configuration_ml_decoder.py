"""ML-Decoder configuration."""

from __future__ import annotations

import math

from .configuration_common import MultiLabelConfig


def labels_per_query(num_labels: int, num_queries: int) -> int:
    """ML-Decoder's group size: each of the K queries emits ceil(C / K) logits, the last ones cut away.

    The official code writes ``int(C / K + 0.999)`` (Alibaba-MIIL/ML_Decoder
    ``src_files/ml_decoder/ml_decoder.py`` line 142, ``duplicate_factor``), which differs only when
    C / K is within 0.001 above an integer."""
    return math.ceil(num_labels / num_queries)


class MLDecoderConfig(MultiLabelConfig):
    r"""Configuration of an ML-Decoder model (Ridnik et al., 2021).

    Spatial tokens of a backbone (a CNN map flattened, or ViT tokens) are projected to
    `decoder_embedding` and attended by K fixed queries in one decoder layer without
    self-attention; a group fully-connected layer turns each query state into ceil(C / K) logits.

    Args:
        num_groups (`int`, defaults to -1): number of queries K. -1 means min(num_labels, 100); K = num_labels
            is full decoding. Must not exceed num_labels.
        decoder_embedding (`int`, defaults to 768): decoder width.
        num_heads (`int`, defaults to 8): attention heads of the decoder layer.
        dim_feedforward (`int`, defaults to 2048): feed-forward width of the decoder layer.
        dropout (`float`, defaults to 0.1): decoder dropout.
        zero_shot (`bool`, defaults to `False`): queries are projected label (text or word) embeddings, one per
            label, and one shared classifier vector scores every query. The embeddings are set with
            `set_label_names` (names embedded by `text_encoder`) or `set_label_embeddings`, and saved in the
            checkpoint.
        label_embedding_dim (`int`, defaults to 300): width of the label embeddings in zero-shot mode (300 for
            the ML-Decoder authors' NUS-WIDE word vectors, 384 for all-MiniLM-L6-v2).
        text_encoder (`str`, *optional*): the text encoder that produced the label embeddings, as
            `set_label_names` takes it: a word-vector file, a transformers folder or Hub id; `None` means
            all-MiniLM-L6-v2. `set_label_names` records it and uses it by default.
        query_noise_std (`float`, defaults to 0): zero-shot training augmentation (the paper's additive query
            noise): std of Gaussian noise added to the label embeddings in training. It is absolute, so it
            depends on the encoder's scale (L2-normalised MiniLM vectors: about 0.05 per dimension).
        query_extra (`int`, defaults to 0): zero-shot training augmentation (the paper's random-query
            additions): this many random queries, drawn with the label embeddings' mean and spread, join each
            training batch as labels absent from every image (negatives in the loss); they never reach the
            outputs.

    Plus the backbone, input and loss fields of `MultiLabelConfig`. The loss defaults are
    ML-Decoder's: gamma_neg 4, gamma_pos 0, clip 0.05, eps 1e-8, `sum` reduction.
    """

    model_type = "ml_decoder"

    def __init__(
        self,
        num_groups: int = -1,
        decoder_embedding: int = 768,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        zero_shot: bool = False,
        label_embedding_dim: int = 300,
        text_encoder: str | None = None,
        query_noise_std: float = 0.0,
        query_extra: int = 0,
        **kwargs,
    ):
        kwargs.setdefault("backbone", "tresnet_l")
        self.num_groups = num_groups
        self.decoder_embedding = decoder_embedding
        self.num_heads = num_heads
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.zero_shot = zero_shot
        self.label_embedding_dim = label_embedding_dim
        self.text_encoder = text_encoder
        self.query_noise_std = query_noise_std
        self.query_extra = query_extra
        super().__init__(**kwargs)
        self._check_integers("num_groups", "decoder_embedding", "num_heads", "dim_feedforward", "label_embedding_dim",
                             "query_extra")
        self._check_finite("query_noise_std")
        self._check_bools("zero_shot")
        if text_encoder is not None and not isinstance(text_encoder, str):
            raise ValueError(f"text_encoder must be a name or path (or None), got {text_encoder!r}")
        if num_groups == 0 or num_groups < -1:
            raise ValueError(f"num_groups must be -1 (min(num_labels, 100)) or a positive number, got {num_groups}")
        if num_groups > self.num_labels and not zero_shot:
            raise ValueError(f"num_groups ({num_groups}) must not exceed the number of labels ({self.num_labels})")
        if num_heads < 1:
            raise ValueError(f"num_heads must be >= 1, got {num_heads}")
        if dim_feedforward < 1:
            raise ValueError(f"dim_feedforward must be >= 1, got {dim_feedforward}")
        if decoder_embedding <= 0 or decoder_embedding % num_heads:
            raise ValueError(f"decoder_embedding ({decoder_embedding}) must be divisible by num_heads ({num_heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if label_embedding_dim < 1:
            raise ValueError(f"label_embedding_dim must be >= 1, got {label_embedding_dim}")
        if query_noise_std < 0 or query_extra < 0:
            raise ValueError("query_noise_std and query_extra must be >= 0")

    @property
    def num_queries(self) -> int:
        """K: the number of decoder queries."""
        if self.zero_shot:
            return self.num_labels
        return min(self.num_labels, 100) if self.num_groups == -1 else self.num_groups

    @property
    def group_size(self) -> int:
        """Labels per query: ceil(C / K); 1 in zero-shot mode, where every query is one label."""
        return 1 if self.zero_shot else labels_per_query(self.num_labels, self.num_queries)
