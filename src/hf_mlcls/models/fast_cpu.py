"""The fast CPU inference path: a model's convolutions and linears run by oneDNN (convolution
weights reordered once per input size), with batch norms folded in and activations and residual
adds fused.

``fast_model(model)`` returns the module to run for inference: a rewritten copy of ``model``
when the fast path applies (CPU, fp32, eval mode, no gradients, no forward hooks, oneDNN
available, not switched off), else ``model`` itself. The copy is cached per model and rebuilt
when any parameter or buffer of the model changes (each tensor's in-place version counter and
storage are checked on every call), so training between two predictions, ``load_state_dict`` or
``model.to`` never leaves stale weights behind. Everything stays in fp32; batch norms folded into
the convolution weights and the Winograd products below change only the order of rounding, which
moves logits by about 2e-6 (docs/benchmarks.md, "Inference fast path").

What is rewritten (everything else runs as it is, on channels-last activations):

* ``timm`` ResNet and TResNet residual blocks: each convolution fused with its batch norm and
  activation; the block's last convolution also takes the residual add and the block's
  activation (oneDNN's add post-op) where nothing sits between them, and writes its result over
  the shortcut where no one else holds that tensor (every block of a stage but the first, whose
  input may be the caller's; a shortcut made by the block's own convolution);
* ``timm``'s ``SEModule``: its two 1x1 convolutions on the squeezed 1 x 1 map run as matrix
  products; inside a block it gates the block's own tensor in place;
* ``timm`` ``ConvNormAct`` and a ``Sequential`` of a convolution and a batch norm: fused;
* every other zero-padded ``Conv2d`` and every ``Linear``: run by oneDNN on weights reordered
  for the input size (a second copy of the weights, per input size, at most two sizes);
* our ``MultiheadAttention``: its projections by oneDNN and PyTorch's fused attention kernel;
* a 3x3, stride-1 convolution with at least 256 input channels, on a map of at most 56 x 56,
  runs as Winograd's F(2x2, 3x3): 16 matrix products of 4/9 the multiply-adds (one of them
  carrying the bias), the tile transforms by additions, the products combined in place (its
  error against float64 is of the direct kernel's size, tests/test_fast_cpu.py);
  ``HF_MLCLS_FAST_CPU_WINOGRAD=0`` keeps the direct kernel.

The modules the copy is made of are in :mod:`hf_mlcls.models.fast_cpu_layers`; this module decides
what replaces what, and keeps the copies. Switch it off with ``HF_MLCLS_FAST_CPU=0`` (or
``fast=False`` where a function offers it).
"""

from __future__ import annotations

import copy
import logging
import os
import weakref

import torch
from torch import nn

from .fast_cpu_layers import (FusedConv2d, FusedResidualBlock, FusedSqueezeExcite, OneDNNLinear,
                              OneDNNMultiheadAttention, _act_attr, _bn_affine)
from .layers import MultiheadAttention

logger = logging.getLogger(__name__)

_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _plain_conv(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.weight.dtype == torch.float32)


def _block_se(se: nn.Module) -> nn.Module:
    """A block's squeeze-and-excitation, rewritten; fused, it gates in place, as its input is the output of
    the block's convolution before it."""
    return _squeeze_excite(se, in_place=True) or _rewrite(se)


def _squeeze_excite(module: nn.Module, in_place: bool = False) -> FusedSqueezeExcite | None:
    """timm's SEModule in its plain form (biases, no norm, ReLU, sigmoid gate, no max pool), fused."""
    from timm.layers.activations import Sigmoid
    from timm.layers.squeeze_excite import SEModule

    if type(module) is not SEModule or module.add_maxpool or not _is_off(module.bn):
        return None
    if type(module.act) is not nn.ReLU or type(module.gate) not in (nn.Sigmoid, Sigmoid):
        return None
    if any(conv.bias is None or conv.kernel_size != (1, 1) or conv.groups != 1 or conv.weight.dtype != torch.float32
           for conv in (module.fc1, module.fc2)):
        return None
    return FusedSqueezeExcite(module, in_place)


def _is_off(module: nn.Module | None) -> bool:
    return module is None or isinstance(module, nn.Identity)


def _fuse(conv: nn.Module, bn: nn.Module | None, act: nn.Module | None, residual_act: bool = False) -> FusedConv2d | None:
    """The fused convolution, or None when one part cannot be fused."""
    attr = _act_attr(act)
    if not _plain_conv(conv) or (bn is not None and _bn_affine(bn) is None) or attr is None:
        return None
    if residual_act and attr[0] not in ("none", "relu"):  # oneDNN fuses only these after an add
        return None
    return FusedConv2d(conv, bn, act)


def _conv_norm_act(module: nn.Module, residual_act: nn.Module | None = None) -> FusedConv2d | None:
    """timm's ConvNormAct (convolution, BatchNormAct2d, optional anti-aliasing) fused; with
    ``residual_act``, as a block's last convolution (no activation or anti-aliasing of its own)."""
    from timm.layers import BatchNormAct2d, ConvNormAct

    if type(module) is not ConvNormAct or type(module.bn) is not BatchNormAct2d or not _is_off(getattr(module.bn, "drop", None)):
        return None
    act = getattr(module.bn, "act", None)
    if residual_act is not None:
        if not _is_off(act) or not _is_off(getattr(module, "aa", None)):
            return None
        return _fuse(module.conv, module.bn, residual_act, residual_act=True)
    return _fuse(module.conv, module.bn, act)


def _with_aa(fused: nn.Module, aa: nn.Module | None) -> list[nn.Module]:
    return [fused] if _is_off(aa) else [fused, _rewrite(aa)]


def _residual_block(block: nn.Module) -> FusedResidualBlock | None:
    """timm's ResNet and TResNet blocks, fused; None for any other module or an unexpected part."""
    from timm.models import resnet, tresnet

    kind = type(block)
    if kind in (resnet.Bottleneck, resnet.BasicBlock):
        if not (_is_off(block.drop_path) and _is_off(block.drop_block)):
            return None
        bottleneck = kind is resnet.Bottleneck
        first = [(block.conv1, block.bn1, block.act1)] + ([(block.conv2, block.bn2, block.act2)] if bottleneck else [])
        steps = [_fuse(conv, bn, act) for conv, bn, act in first]
        if any(step is None for step in steps):
            return None
        steps[-1:] = _with_aa(steps[-1], block.aa)  # the anti-aliasing follows the stride's convolution
        conv, bn, act = (block.conv3, block.bn3, block.act3) if bottleneck else (block.conv2, block.bn2, block.act2)
        shortcut = None if block.downsample is None else _rewrite(block.downsample)
        if block.se is None:
            last = _fuse(conv, bn, act, residual_act=True)
            if last is not None:
                return FusedResidualBlock(steps, shortcut, last)
        fused = _fuse(conv, bn, None)
        if fused is None:
            return None
        return FusedResidualBlock(steps + [fused] + ([] if block.se is None else [_block_se(block.se)]), shortcut, act=act)
    if kind in (tresnet.Bottleneck, tresnet.BasicBlock):
        if not _is_off(block.drop_path):
            return None
        convs = [block.conv1, block.conv2] if kind is tresnet.Bottleneck else [block.conv1]
        steps = []
        for module in convs:
            fused = _conv_norm_act(module)
            if fused is None:
                return None
            steps += _with_aa(fused, getattr(module, "aa", None))
        tail = block.conv3 if kind is tresnet.Bottleneck else block.conv2
        shortcut = None if block.downsample is None else _rewrite(block.downsample)
        if kind is tresnet.Bottleneck and block.se is not None:
            steps.append(_block_se(block.se))
        se_after_tail = kind is tresnet.BasicBlock and block.se is not None
        if not se_after_tail:
            last = _conv_norm_act(tail, residual_act=block.act)
            if last is not None:
                return FusedResidualBlock(steps, shortcut, last)
        fused = _conv_norm_act(tail)
        if fused is None:
            return None
        return FusedResidualBlock(steps + _with_aa(fused, getattr(tail, "aa", None)) + ([_block_se(block.se)] if se_after_tail else []),
                                  shortcut, act=block.act)
    return None


def _fuse_resnet_stem(model: nn.Module) -> None:
    """timm's ResNet runs ``conv1`` (a convolution, or a deep stem's Sequential ending in one), ``bn1``
    and ``act1`` in a row: that convolution, ``bn1`` and ``act1`` become one fused convolution."""
    from timm.models.resnet import ResNet

    if type(model) is not ResNet or _is_off(model.bn1):
        return
    holder, name = (model.conv1, str(len(model.conv1) - 1)) if isinstance(model.conv1, nn.Sequential) else (model, "conv1")
    fused = _fuse(getattr(holder, name), model.bn1, model.act1)
    if fused is not None:
        setattr(holder, name, fused)
        model.bn1, model.act1 = nn.Identity(), nn.Identity()


def _replacement(module: nn.Module) -> nn.Module | None:
    """What replaces ``module`` in the fast copy, or None to keep it (its children are visited)."""
    block = _residual_block(module)
    if block is not None:
        return block
    fused = _conv_norm_act(module)
    if fused is not None:
        return nn.Sequential(*_with_aa(fused, getattr(module, "aa", None)))
    squeeze = _squeeze_excite(module)
    if squeeze is not None:
        return squeeze
    if _plain_conv(module):
        return FusedConv2d(module)
    if type(module) is nn.Linear and module.weight.dtype == torch.float32:
        return OneDNNLinear(module.weight, module.bias)
    if type(module) is MultiheadAttention:
        return OneDNNMultiheadAttention(module)
    return None


def _rewrite(module: nn.Module) -> nn.Module:
    """``module`` with every part the fast path knows replaced (in place where it is kept)."""
    _fuse_resnet_stem(module)
    replacement = _replacement(module)
    if replacement is not None:
        return replacement
    children = list(module.named_children())
    skip = set()
    for i, (name, child) in enumerate(children):
        if name in skip or child is None:
            continue
        if isinstance(module, nn.Sequential) and _plain_conv(child) and i + 1 < len(children):
            # a convolution, its batch norm and maybe an activation in a row (a ResNet's stem or downsample)
            bn = children[i + 1][1]
            act = children[i + 2][1] if i + 2 < len(children) and _act_attr(children[i + 2][1]) is not None else None
            fused = None if bn is None else _fuse(child, bn, act)
            if fused is not None:
                setattr(module, name, fused)
                for later, _ in children[i + 1 : i + (3 if act is not None else 2)]:
                    setattr(module, later, nn.Identity())
                    skip.add(later)
                continue
        setattr(module, name, _rewrite(child))
    blocks = list(module) if isinstance(module, nn.Sequential) else []
    if len(blocks) > 1 and all(type(block) is FusedResidualBlock for block in blocks):
        for block in blocks[1:]:  # each takes the output of the block before, which nothing else holds
            block.owns_input = True
    return module


def _structure_copy(module: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every tensor with ``module`` (nothing is cloned)."""
    new = copy.copy(module)
    new._parameters, new._buffers = dict(module._parameters), dict(module._buffers)
    new._modules = {name: None if child is None else _structure_copy(child) for name, child in module._modules.items()}
    return new


def fast_copy(model: nn.Module) -> nn.Module:
    """A rewritten copy of ``model`` (in eval mode) for CPU inference. ``model`` is untouched; the
    copy shares the tensors of every part it does not rewrite, and holds folded convolution weights."""
    with torch.no_grad():
        return _rewrite(_structure_copy(model).eval())


def _version(tensor: torch.Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:  # an inference-mode tensor has no version counter (and cannot be changed in place later)
        return -1


def _state_key(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is replaced or changed in place (an in-place
    change made through ``tensor.data`` bypasses the version counter: call :func:`forget` after one)."""
    return tuple((id(t), t.data_ptr(), _version(t)) for t in (*model.parameters(), *model.buffers()))


def forget(model: nn.Module) -> None:
    """Drop ``model``'s fast copy (the next call builds a new one)."""
    _CACHE.pop(model, None)


def applies(model: nn.Module) -> bool:
    """Whether the fast path would run ``model`` now: eval mode, gradients off, fp32 on the CPU,
    oneDNN built in, no forward hook on any of its modules, and ``HF_MLCLS_FAST_CPU`` not ``0``."""
    if os.environ.get("HF_MLCLS_FAST_CPU", "1").strip() == "0":
        return False
    if model.training or torch.is_grad_enabled() or not torch.backends.mkldnn.is_available():
        return False
    weight = next(model.parameters(), None)
    if weight is None or weight.device.type != "cpu" or weight.dtype != torch.float32:
        return False
    # a hook on a layer would not run where the copy replaces that layer: the plain forward runs them all
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def fast_model(model: nn.Module, fast: bool = True) -> nn.Module:
    """The module to run for inference: ``model``'s fast copy when :func:`applies`, else ``model``.

    The copy is built on first use (a fraction of a second; each layer's weights are reordered on
    its second call at an input size) and kept until a weight of ``model`` changes or ``model`` is
    freed. Where the copy cannot be built, a warning says why and the plain forward runs."""
    if not fast or not applies(model):
        return model
    key = _state_key(model)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        return model if cached[1] is None else cached[1]
    _CACHE.pop(model, None)  # free the stale copy before building the next
    try:
        copied = fast_copy(model)
    except Exception as err:  # noqa: BLE001 - a layer oneDNN refuses: the plain forward, said once per weights
        logger.warning("the fast CPU inference path could not be built for this model (%s: %s); running the plain "
                       "forward (HF_MLCLS_FAST_CPU=0 skips the attempt)", type(err).__name__, str(err)[:200])
        copied = None
    _CACHE[model] = (key, copied)
    return model if copied is None else copied
