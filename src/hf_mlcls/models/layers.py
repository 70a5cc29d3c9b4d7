"""Building blocks shared by the Query2Label and ML-Decoder heads.

Everything here runs batch-first (B, L, E). Attention goes through
``torch.nn.functional.scaled_dot_product_attention`` unless the caller asks for the
attention maps, in which case the softmax is computed explicitly (SDPA cannot return it).
Parameter names follow ``torch.nn.MultiheadAttention`` and the official implementations,
so official checkpoints map onto these modules key for key.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configuration_ml_decoder import labels_per_query


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters, batch-first, on SDPA.

    Returns ``(output, weights)`` where ``weights`` is the head-averaged attention
    (B, L, S) when ``need_weights`` is true, else ``None``.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same initialisation as torch.nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        self.out_proj.reset_parameters()
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(key, w_k, b_k))
        v = self._split_heads(F.linear(value, w_v, b_v))
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            attn = torch.softmax((q * self.head_dim**-0.5) @ k.transpose(-2, -1), dim=-1)
            out = F.dropout(attn, p=dropout_p, training=self.training) @ v
            weights = attn.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
            weights = None
        b, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(b, n, self.embed_dim)
        return self.out_proj(out), weights


def sine_position_encoding(
    height: int,
    width: int,
    num_pos_feats: int,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    device: torch.device | None = None,
) -> Tensor:
    """DETR's normalised sine encoding for an ``height`` x ``width`` map, as Query2Label uses it.

    Computed for the actual feature-map size (Query2Label precomputes one fixed size, so
    other input resolutions fail there). Returns (2 * num_pos_feats, H, W), y features
    first. Positions are 1..H (no half-pixel offset) divided by (H + 1e-6), as in the
    official code.
    """
    eps = 1e-6
    y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y_embed = y_embed / (height + eps) * scale
    x_embed = x_embed / (width + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos_x = x_embed[:, None] / dim_t  # (W, F)
    pos_y = y_embed[:, None] / dim_t  # (H, F)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat(
        (pos_y[:, None, :].expand(height, width, num_pos_feats), pos_x[None, :, :].expand(height, width, num_pos_feats)),
        dim=2,
    )
    return pos.permute(2, 0, 1)


def _without_autocast(hidden_states: Tensor, weight: Tensor):
    """Autocast switched off on ``hidden_states``' device, and the states cast to ``weight``'s dtype.

    The final classifiers compute in their parameters' dtype (fp32 in mixed-precision training) rather than
    autocast's bf16/fp16: Query2Label's official ``GroupWiseLinear`` is an elementwise product and a sum, which
    autocast leaves in fp32, and logits rounded to bf16 (8 bits of mantissa) would tie many scores.
    """
    device = hidden_states.device.type
    # e.g. the meta device: no autocast to switch off. Not asked while torch.compile traces (only devices with
    # autocast compile, and torch 2.11 cannot trace the question (2.14 can): a graph break, then recompiles)
    if not torch.compiler.is_compiling() and not torch.amp.is_autocast_available(device):
        return contextlib.nullcontext(), hidden_states.to(weight.dtype)
    return torch.autocast(device, enabled=False), hidden_states.to(weight.dtype)


class GroupWiseLinear(nn.Module):
    """Query2Label's classifier: one weight vector and bias per label, applied to that label's state."""

    def __init__(self, num_labels: int, hidden_dim: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(1, num_labels, hidden_dim))
        self.b = nn.Parameter(torch.empty(1, num_labels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.W.shape[-1])
        nn.init.uniform_(self.W, -bound, bound)
        nn.init.uniform_(self.b, -bound, bound)

    def forward(self, hidden_states: Tensor) -> Tensor:
        # (B, C, D) -> (B, C): one dot product per label. The official ``(W * h).sum(-1)``
        # builds a (B, C, D) temporary first (164 MB per image at 20,000 labels); the einsum
        # does not, and is about 2x faster (bench/bench_scale.py). In fp32 under autocast, as the official one.
        no_autocast, hidden_states = _without_autocast(hidden_states, self.W)
        with no_autocast:
            return torch.einsum("bcd,cd->bc", hidden_states, self.W[0]) + self.b


class GroupFullyConnected(nn.Module):
    """ML-Decoder's group fully-connected output.

    Each of the K query states emits ``group_size`` logits through its own (D, group_size)
    matrix; the K * group_size outputs are cut to ``num_labels``. One batched einsum
    replaces the official Python loop over groups. In zero-shot mode there is one shared
    (D, 1) vector and a single bias, and every query is one label.
    """

    def __init__(self, num_queries: int, hidden_dim: int, num_labels: int, zero_shot: bool = False) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.zero_shot = zero_shot
        if zero_shot:
            self.weight = nn.Parameter(torch.empty(hidden_dim, 1))
            self.bias = nn.Parameter(torch.empty(1))
        else:
            self.group_size = labels_per_query(num_labels, num_queries)
            self.weight = nn.Parameter(torch.empty(num_queries, hidden_dim, self.group_size))
            self.bias = nn.Parameter(torch.empty(num_labels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, hidden_states: Tensor) -> Tensor:
        # hidden_states: (B, K, D). In the parameters' dtype (fp32) under autocast, where the official
        # GroupFC multiplies in autocast's fp16 (see docs/recipes.md).
        no_autocast, hidden_states = _without_autocast(hidden_states, self.weight)
        with no_autocast:
            if self.zero_shot:
                return (hidden_states @ self.weight).squeeze(-1) + self.bias
            logits = torch.einsum("bkd,kdg->bkg", hidden_states, self.weight).flatten(1)
            return logits[:, : self.num_labels] + self.bias


def _feed_forward(layer: nn.Module, x: Tensor) -> Tensor:
    return layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def get_activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


class Query2LabelEncoderLayer(nn.Module):
    """DETR encoder layer: self-attention with the position added to queries and keys, then FFN."""

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, activation: str, pre_norm: bool):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation(activation)
        self.pre_norm = pre_norm

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        if self.pre_norm:
            src2 = self.norm1(src)
            q = src2 + pos
            src = src + self.dropout1(self.self_attn(q, q, src2)[0])
            return src + self.dropout2(_feed_forward(self, self.norm2(src)))
        q = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, q, src)[0]))
        return self.norm2(src + self.dropout2(_feed_forward(self, src)))


class Query2LabelDecoderLayer(nn.Module):
    """DETR decoder layer whose self-attention can be removed (Query2Label removes it by default).

    Label embeddings enter as ``query_pos``; the decoder state starts at zero.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dim_feedforward: int,
        dropout: float,
        activation: str,
        pre_norm: bool,
        self_attention: bool,
    ):
        super().__init__()
        self.has_self_attn = self_attention
        if self_attention:
            self.self_attn = MultiheadAttention(d_model, num_heads, dropout=dropout)
            self.norm1 = nn.LayerNorm(d_model)
            self.dropout1 = nn.Dropout(dropout)
        self.multihead_attn = MultiheadAttention(d_model, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = get_activation(activation)
        self.pre_norm = pre_norm

    def forward(
        self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        key = memory + pos
        if self.pre_norm:
            # The official pre-norm path always runs self-attention; it has no branch for a removed one.
            if self.has_self_attn:
                t = self.norm1(tgt)
                q = t + query_pos
                tgt = tgt + self.dropout1(self.self_attn(q, q, t)[0])
            t = self.norm2(tgt)
            attn_out, weights = self.multihead_attn(t + query_pos, key, memory, need_weights=need_weights)
            tgt = tgt + self.dropout2(attn_out)
            tgt = tgt + self.dropout3(_feed_forward(self, self.norm3(tgt)))
            return tgt, weights
        if self.has_self_attn:
            q = tgt + query_pos
            tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt)[0]))
        attn_out, weights = self.multihead_attn(tgt + query_pos, key, memory, need_weights=need_weights)
        tgt = self.norm2(tgt + self.dropout2(attn_out))
        tgt = self.norm3(tgt + self.dropout3(_feed_forward(self, tgt)))
        return tgt, weights


class MLDecoderLayer(nn.Module):
    """ML-Decoder's decoder layer: no self-attention, one cross-attention, FFN.

    The official layer keeps ``tgt = norm1(tgt + dropout1(tgt))`` where the self-attention
    used to be; it is kept so that official weights give official outputs.
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.multihead_attn = MultiheadAttention(d_model, num_heads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.activation = F.relu

    def forward(self, tgt: Tensor, memory: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        tgt = self.norm1(tgt + self.dropout1(tgt))
        attn_out, weights = self.multihead_attn(tgt, memory, memory, need_weights=need_weights)
        tgt = self.norm2(tgt + self.dropout2(attn_out))
        tgt = self.norm3(tgt + self.dropout3(_feed_forward(self, tgt)))
        return tgt, weights
