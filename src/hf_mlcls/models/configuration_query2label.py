"""Query2Label configuration."""

from __future__ import annotations

from .configuration_common import MultiLabelConfig


class Query2LabelConfig(MultiLabelConfig):
    r"""Configuration of a Query2Label model (Liu et al., 2021).

    A backbone feature map goes through an optional 1x1 input projection and a Transformer
    encoder; a Transformer decoder whose queries are learned label embeddings pools one state
    per label, and a per-label linear classifier (`GroupWiseLinear`) scores it.

    Args:
        hidden_dim (`int`, defaults to 2048): width of the Transformer. With `keep_input_proj=False` (the
            official default) it must equal the backbone's channel count.
        num_encoder_layers (`int`, defaults to 1): Transformer encoder layers over the feature map.
        num_decoder_layers (`int`, defaults to 2): decoder layers.
        num_heads (`int`, defaults to 4): attention heads; must divide `hidden_dim`.
        dim_feedforward (`int`, defaults to 8192): width of the feed-forward blocks.
        dropout (`float`, defaults to 0.1): dropout in attention and feed-forward blocks.
        activation (`str`, defaults to `"relu"`): feed-forward activation, `"relu"` or `"gelu"`.
        pre_norm (`bool`, defaults to `False`): LayerNorm before (True) or after (False) each sub-block.
        keep_input_proj (`bool`, defaults to `False`): keep the 1x1 convolution from backbone channels to
            `hidden_dim`; when False the feature map enters the Transformer as it is.
        keep_first_self_attn_dec (`bool`, defaults to `False`): keep the self-attention of the first decoder layer.
        keep_other_self_attn_dec (`bool`, defaults to `False`): keep the self-attention of the other decoder layers.
        position_temperature (`float`, defaults to 10000): temperature of the sine position encoding.

    Plus the backbone, input and loss fields of `MultiLabelConfig`. The loss defaults are
    Query2Label's: gamma_neg 2, gamma_pos 0, clip 0, eps 1e-5, `scaled_mean` reduction.
    """

    model_type = "query2label"

    def __init__(
        self,
        hidden_dim: int = 2048,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 2,
        num_heads: int = 4,
        dim_feedforward: int = 8192,
        dropout: float = 0.1,
        activation: str = "relu",
        pre_norm: bool = False,
        keep_input_proj: bool = False,
        keep_first_self_attn_dec: bool = False,
        keep_other_self_attn_dec: bool = False,
        position_temperature: float = 10000.0,
        **kwargs,
    ):
        kwargs.setdefault("image_mean", [0.485, 0.456, 0.406])
        kwargs.setdefault("image_std", [0.229, 0.224, 0.225])
        kwargs.setdefault("asl_gamma_neg", 2.0)
        kwargs.setdefault("asl_gamma_pos", 0.0)
        kwargs.setdefault("asl_clip", 0.0)
        kwargs.setdefault("asl_eps", 1e-5)
        kwargs.setdefault("asl_reduction", "scaled_mean")
        self.hidden_dim = hidden_dim
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.num_heads = num_heads
        self.dim_feedforward = dim_feedforward
        self.dropout = dropout
        self.activation = activation
        self.pre_norm = pre_norm
        self.keep_input_proj = keep_input_proj
        self.keep_first_self_attn_dec = keep_first_self_attn_dec
        self.keep_other_self_attn_dec = keep_other_self_attn_dec
        self.position_temperature = position_temperature
        super().__init__(**kwargs)
        self._check_integers("hidden_dim", "num_encoder_layers", "num_decoder_layers", "num_heads", "dim_feedforward")
        self._check_finite("position_temperature")
        self._check_bools("pre_norm", "keep_input_proj", "keep_first_self_attn_dec", "keep_other_self_attn_dec")
        if hidden_dim <= 0 or hidden_dim % 4:
            raise ValueError(
                f"hidden_dim must be a positive multiple of 4 (the sine encoding gives half of it to each axis "
                f"as sin/cos pairs), got {hidden_dim}"
            )
        if num_heads <= 0 or hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        if num_encoder_layers < 0:
            raise ValueError(f"num_encoder_layers must be >= 0, got {num_encoder_layers}")
        if num_decoder_layers < 1:
            raise ValueError(f"num_decoder_layers must be >= 1, got {num_decoder_layers}")
        if dim_feedforward < 1:
            raise ValueError(f"dim_feedforward must be >= 1, got {dim_feedforward}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if position_temperature <= 0:
            raise ValueError(f"position_temperature must be > 0, got {position_temperature}")
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
