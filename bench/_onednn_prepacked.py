"""A bench-only inference candidate: every linear and convolution of a model run by oneDNN on
weights reordered once ("prepacked"), everything else left as it is.

On this machine's CPU, ``torch.nn.functional.linear`` in fp32 goes to MKL's GEMM, and a 1x1
convolution with a small batch on one thread goes to an im2col + GEMM path; oneDNN's kernels
on prepacked weights run the same products faster. Batch norms, activations and residual adds
are untouched (no folding, no fusion), so the numbers stay within float rounding of the eager
forward. Not used by the library: docs/benchmarks.md ("Inference fast path") says why.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from hf_mlcls.models.layers import MultiheadAttention


class PackedLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows_hint: int = 256):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint), persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, self.in_features), self.weight, self.bias, "none", [], "")
        return y.reshape(*x.shape[:-1], self.out_features)


class PackedConv2d(nn.Module):
    def __init__(self, conv: nn.Conv2d, input_size: list[int]):
        super().__init__()
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        weight = torch.ops.mkldnn._reorder_convolution_weight(conv.weight.detach(), *self.geometry, input_size)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.geometry, "none", [], "")


def _attention_forward(self, query, key, value, need_weights=False):
    if need_weights:  # the averaged weights: the layer's own forward (its parameters are untouched)
        return MultiheadAttention.forward(self, query, key, value, need_weights=True)
    q, k, v = (self._split_heads(proj(x)) for proj, x in zip(self.packed_in_proj, (query, key, value)))
    out = F.scaled_dot_product_attention(q, k, v)
    b, _, n, _ = out.shape
    return self.out_proj(out.transpose(1, 2).reshape(b, n, self.embed_dim)), None


def prepacked_copy(model: nn.Module, pixel_values: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (eval, fp32, CPU) with its linears and zero-padded convolutions on
    prepacked oneDNN weights; one forward on ``pixel_values`` records each convolution's input size."""
    model = copy.deepcopy(model).eval()
    sizes = {}

    def record(name):
        def hook(module, args):  # returns None: the inputs go on unchanged
            sizes.setdefault(name, list(args[0].shape))
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(pixel_values=pixel_values)
    for hook in hooks:
        hook.remove()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear):
                setattr(module, child_name, PackedLinear(child.weight, child.bias))
            elif (isinstance(child, nn.Conv2d) and child.padding_mode == "zeros" and not isinstance(child.padding, str)
                  and full in sizes):
                setattr(module, child_name, PackedConv2d(child, sizes[full]))
        if isinstance(module, MultiheadAttention):
            module.packed_in_proj = [PackedLinear(w, b) for w, b in zip(module.in_proj_weight.chunk(3), module.in_proj_bias.chunk(3))]
            module.forward = _attention_forward.__get__(module)
    return model


class _FusedBackbone(nn.Module):
    """A traced, frozen backbone run with oneDNN Graph fusion on (the flag is global: on only
    while this graph runs)."""

    def __init__(self, scripted):
        super().__init__()
        self.scripted = scripted

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        torch.jit.enable_onednn_fusion(True)
        try:
            return self.scripted(pixel_values)
        finally:
            torch.jit.enable_onednn_fusion(False)


def fused_backbone_copy(model: nn.Module, pixel_values: torch.Tensor) -> nn.Module:
    """:func:`prepacked_copy` with its backbone replaced by a ``torch.jit.trace`` + ``freeze`` of
    the original backbone run under oneDNN Graph fusion (convolutions fused with their batch
    norms, activations and residual adds); a few warm-up calls let the profiling executor fuse."""
    backbone = copy.deepcopy(model.model.backbone).eval()
    with torch.no_grad():
        fused = _FusedBackbone(torch.jit.freeze(torch.jit.trace(backbone, pixel_values, check_trace=False)))
        for _ in range(3):
            fused(pixel_values)
    packed = prepacked_copy(model, pixel_values)
    packed.model.backbone = fused
    return packed
