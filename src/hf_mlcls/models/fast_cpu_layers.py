"""The modules of the fast CPU inference path (:mod:`hf_mlcls.models.fast_cpu` rewrites a model into
them): convolutions with their batch norms folded in, run by oneDNN on weights reordered per input
size, directly or as Winograd products; linears and attention projections by oneDNN; timm's
squeeze-and-excitation as two small matrix products; residual blocks that write over tensors
nothing else holds."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

from .layers import MultiheadAttention

_CL = torch.channels_last
_PACKS_KEPT = 2  # reordered weights kept per convolution, one per input size (a batch and a last, smaller one)


def _act_attr(act: nn.Module | None) -> tuple[str, list] | None:
    """oneDNN's name and scalars for an activation it can fuse; None if it cannot."""
    if act is None or isinstance(act, nn.Identity):
        return "none", []
    if isinstance(act, nn.ReLU):
        return "relu", []
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [act.negative_slope]
    return None


def _bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(scale, shift) of a batch norm in inference (``x * scale + shift``), None for anything else."""
    if isinstance(bn, nn.BatchNorm2d):
        if bn.training or bn.running_mean is None:
            return None
        eps = bn.eps
    elif type(bn).__name__ == "FrozenBatchNorm2d" and hasattr(bn, "running_var"):
        eps = float(bn.eps)
    else:
        return None
    var, mean = bn.running_var.detach().double(), bn.running_mean.detach().double()
    weight = torch.ones_like(var) if getattr(bn, "weight", None) is None else bn.weight.detach().double()
    bias = torch.zeros_like(var) if getattr(bn, "bias", None) is None else bn.bias.detach().double()
    scale = weight * (var + eps).rsqrt()
    return scale, bias - mean * scale


class _Packs:
    """Reordered copies of one weight, one per input size, made the second time a size comes (a size
    seen once runs on the plain weight, so a one-off call pays no reorder); at most ``_PACKS_KEPT``."""

    def __init__(self, make):
        self.make, self.packed, self.seen = make, {}, set()

    def get(self, key):
        """The reordered weight for ``key``, or None where the plain weight should run this time."""
        packed = self.packed.get(key)
        if packed is None:
            if key not in self.seen:
                if len(self.seen) > 64:  # many one-off sizes: forget them rather than grow
                    self.seen.clear()
                self.seen.add(key)
                return None
            if len(self.packed) >= _PACKS_KEPT:
                self.packed.pop(next(iter(self.packed)), None)
            packed = self.packed[key] = self.make(key)
        return packed


# Winograd F(2x2, 3x3) (Lavin & Gray, 2016): the weight and output transforms, exact in binary
_WINOGRAD_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
_WINOGRAD_MAX_PIXELS = 56 * 56  # larger maps: the transforms' memory traffic outweighs the saved products
_WINOGRAD_MIN_CHANNELS = 256  # fewer: the 16 products are too small to run near the CPU's peak


def _winograd_on() -> bool:
    """``HF_MLCLS_FAST_CPU_WINOGRAD=0`` keeps every convolution on oneDNN's direct kernel."""
    return os.environ.get("HF_MLCLS_FAST_CPU_WINOGRAD", "1").strip() != "0"


class _Winograd:
    """A 3x3, stride-1, padding-1 convolution as Winograd's F(2x2, 3x3): each 2x2 output tile from a
    4x4 input tile with 16 products of 4/9 the multiply-adds of the direct convolution. The input
    and output transforms add and subtract (no rounding beyond fp32 sums); the weights' transform is
    computed in float64. Logits move about as much as with the direct kernel (tests/test_fast_cpu.py)."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight  # (Cout, Cin, 3, 3), batch norm folded in
        self.matrices = None  # (16, Cout, Cin): G g G^T, made with the first reordered copy
        self.packs = _Packs(self._reorder)

    def _reorder(self, rows: int) -> list[torch.Tensor]:
        if self.matrices is None:
            u = torch.einsum("ka,ocab,lb->kloc", _WINOGRAD_G, self.weight.double(), _WINOGRAD_G)
            self.matrices = u.reshape(16, *self.weight.shape[:2]).float().contiguous()
        return [torch.ops.mkldnn._reorder_linear_weight(m, rows) for m in self.matrices]

    def __call__(self, x: torch.Tensor, weights: list[torch.Tensor], bias: torch.Tensor | None = None) -> torch.Tensor:
        """(N, H, W, Cout) for a channels-last (N, Cin, H, W) ``x``, plus ``bias``; ``weights`` from ``packs``."""
        n, c, h, w = x.shape
        th, tw = (h + 1) // 2, (w + 1) // 2
        padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1 + 2 * tw - w, 1, 1 + 2 * th - h))
        r = [padded[:, i : i + 2 * th : 2] for i in range(4)]  # the rows of every tile, 4 at a time
        rows = (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3])  # B^T d
        tiles = torch.empty(4, 4, n, th, tw, c)
        for i, row in enumerate(rows):  # (B^T d) B
            q = [row[:, :, j : j + 2 * tw : 2] for j in range(4)]
            torch.sub(q[0], q[2], out=tiles[i, 0])
            torch.add(q[1], q[2], out=tiles[i, 1])
            torch.sub(q[2], q[1], out=tiles[i, 2])
            torch.sub(q[1], q[3], out=tiles[i, 3])
        tiles = tiles.view(16, n * th * tw, c)
        # product 5 (row 1, column 1) enters every output of a tile with sign +: the bias goes there
        m = [torch.ops.mkldnn._linear_pointwise(tiles[k], weight, bias if k == 5 else None, "none", [], "")
             for k, weight in enumerate(weights)]
        for i in range(4):  # M A, in place: column 0 of row i into m[4i], column 1 into m[4i + 1]
            m[4 * i].add_(m[4 * i + 1]).add_(m[4 * i + 2])
            m[4 * i + 1].sub_(m[4 * i + 2]).sub_(m[4 * i + 3])
        out = torch.empty(n, th, 2, tw, 2, m[0].shape[-1])
        for b in range(2):  # A^T (M A)
            col = [m[4 * i + b].view(n, th, tw, -1) for i in range(4)]
            torch.add(col[0], col[1], out=out[:, :, 0, :, b]).add_(col[2])
            torch.sub(col[1], col[2], out=out[:, :, 1, :, b]).sub_(col[3])
        return out.view(n, 2 * th, 2 * tw, -1)[:, :h, :w]


class FusedConv2d(nn.Module):
    """A convolution with its batch norm folded in, run by oneDNN on weights reordered per input size
    (or as Winograd products, see ``_Winograd``), followed by a fused activation; with ``residual``,
    the residual is added before the activation (which must then be ReLU or none: :func:`_fuse`)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module | None = None, act: nn.Module | None = None):
        super().__init__()
        weight, bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
        if bn is not None:  # the scale and shift in float64, the products rounded once to float32
            scale, shift = _bn_affine(bn)
            weight = weight * scale.float().reshape(-1, 1, 1, 1)
            bias = shift if bias is None else bias.double() * scale + shift
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr = _act_attr(act)
        self.register_buffer("folded_weight", weight.contiguous(), persistent=False)
        self.winograd = _Winograd(weight) if (
            tuple(conv.kernel_size) == (3, 3) and self.geometry[:3] == ([1, 1], [1, 1], [1, 1]) and conv.groups == 1
            and conv.in_channels >= _WINOGRAD_MIN_CHANNELS and _winograd_on()) else None
        self.register_buffer("bias", None if bias is None else bias.float(), persistent=False)
        # oneDNN picks the weights' layout by input size; a layout picked for another size can run
        # several times slower, so each size gets its own reordered copy
        self.packs = _Packs(lambda size: torch.ops.mkldnn._reorder_convolution_weight(
            self.folded_weight, *self.geometry, list(size)))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, into_residual: bool = False) -> torch.Tensor:
        """With ``into_residual``, the result is written over ``residual`` (a tensor no one else holds)
        instead of a new tensor: one large allocation and one read of the residual fewer."""
        x = x.contiguous(memory_format=_CL)
        if self.winograd is not None and x.shape[2] * x.shape[3] <= _WINOGRAD_MAX_PIXELS:
            weights = self.winograd.packs.get(x.shape[0] * ((x.shape[2] + 1) // 2) * ((x.shape[3] + 1) // 2))
            if weights is not None:
                return self._winograd_forward(x, residual, weights)
            weight = self.folded_weight  # a size seen once: the direct kernel on the plain weight
        else:
            weight = self.packs.get(tuple(x.shape))
            weight = self.folded_weight if weight is None else weight
        if residual is None:
            return torch.ops.mkldnn._convolution_pointwise(x, weight, self.bias, *self.geometry,
                                                           self.attr[0], self.attr[1], "")
        residual = residual.contiguous(memory_format=_CL)
        unary = None if self.attr[0] == "none" else self.attr[0]  # the activation after the add
        if into_residual:
            return torch.ops.mkldnn._convolution_pointwise_.binary(residual, x, weight, self.bias, *self.geometry,
                                                                   "add", None, unary, self.attr[1], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(x, residual, weight, self.bias, *self.geometry,
                                                              "add", None, unary, self.attr[1], "")

    def _winograd_forward(self, x: torch.Tensor, residual: torch.Tensor | None, weights: list) -> torch.Tensor:
        y = self.winograd(x, weights, self.bias)  # (N, H, W, C), the channels-last layout's own order
        if residual is not None:
            y.add_(residual.permute(0, 2, 3, 1))
        if self.attr[0] == "relu":
            y.relu_()
        elif self.attr[0] == "leaky_relu":
            F.leaky_relu_(y, self.attr[1][0])
        return y.permute(0, 3, 1, 2)


class OneDNNLinear(nn.Module):
    """``nn.Linear`` run by oneDNN on weights reordered for the number of rows of its input (a few kept).
    PyTorch's ``F.linear`` goes to a slower GEMM on some CPUs."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight, self.bias = weight, bias  # plain attributes: the model's own tensors, not copies
        self.packs = _Packs(lambda rows: torch.ops.mkldnn._reorder_linear_weight(self.weight.detach().contiguous(), rows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        weight = self.packs.get(rows.shape[0])
        y = torch.ops.mkldnn._linear_pointwise(rows, self.weight if weight is None else weight, self.bias, "none", [], "")
        return y.reshape(*x.shape[:-1], self.out_features)


class OneDNNMultiheadAttention(nn.Module):
    """Our ``MultiheadAttention`` with its projections run by oneDNN; asked for its weights, it runs the
    layer's own forward (kept as ``original``)."""

    def __init__(self, attention: MultiheadAttention):
        super().__init__()
        self.original = attention
        self.num_heads, self.head_dim, self.embed_dim = attention.num_heads, attention.head_dim, attention.embed_dim
        self.projections = nn.ModuleList(OneDNNLinear(w, b) for w, b in zip(attention.in_proj_weight.chunk(3),
                                                                              attention.in_proj_bias.chunk(3)))
        self.out_proj = OneDNNLinear(attention.out_proj.weight, attention.out_proj.bias)

    def forward(self, query, key, value, need_weights: bool = False):
        if need_weights:
            return self.original(query, key, value, need_weights=True)
        q, k, v = (proj(x) for proj, x in zip(self.projections, (query, key, value)))
        q, k, v = (t.view(t.shape[0], t.shape[1], self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.embed_dim)), None


class FusedSqueezeExcite(nn.Module):
    """timm's ``SEModule`` (mean, 1x1 convolution, ReLU, 1x1 convolution, sigmoid gate) with its two
    convolutions on a 1 x 1 map run as matrix products: the same arithmetic without a oneDNN
    convolution call's set-up (about 160 us each, measured, for at most tens of thousands of multiply-adds)."""

    def __init__(self, se: nn.Module, in_place: bool = False):
        super().__init__()
        self.in_place = in_place  # gate the input in place: only where the input is a tensor nothing else holds
        # plain attributes: views of the model's own tensors, not copies
        self.w1, self.b1 = se.fc1.weight.detach().flatten(1).t(), se.fc1.bias.detach()
        self.w2, self.b2 = se.fc2.weight.detach().flatten(1).t(), se.fc2.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = torch.addmm(self.b1, x.mean((2, 3)), self.w1).relu_()
        gate = torch.addmm(self.b2, squeezed, self.w2).sigmoid_()
        return x.mul_(gate[:, :, None, None]) if self.in_place else x * gate[:, :, None, None]


class FusedResidualBlock(nn.Module):
    """A residual block as ``steps`` (applied in order), then either ``last`` (a fused convolution
    taking the shortcut and the block's activation) or an add and ``act``.

    ``last`` writes its result over the shortcut where that tensor is the block's own: made by a
    shortcut ending in a fused convolution, or the block's input when ``owns_input`` (set by
    ``fast_cpu._rewrite`` for every block but the first of a stage, whose input is the previous block's
    output and held by nothing else; the first block's input may be the caller's tensor)."""

    def __init__(self, steps: list[nn.Module], shortcut: nn.Module | None, last: FusedConv2d | None = None,
                 act: nn.Module | None = None):
        super().__init__()
        self.steps = nn.Sequential(*steps)
        self.shortcut = shortcut
        self.last = last
        self.act = act
        self.owns_input = False
        tail = shortcut
        while isinstance(tail, nn.Sequential):  # the module that makes the shortcut's tensor
            tail = next((child for child in reversed(tail) if not isinstance(child, nn.Identity)), None)
        self.owns_shortcut = isinstance(tail, FusedConv2d)  # a new tensor from oneDNN on every call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out = self.steps(x)
        if self.last is not None:
            return self.last(out, shortcut, into_residual=self.owns_input if self.shortcut is None else self.owns_shortcut)
        out = out + shortcut
        return out if self.act is None else self.act(out)
