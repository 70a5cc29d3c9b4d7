"""Asymmetric loss (Ridnik et al., 2021) with an "unknown label" mask."""

from __future__ import annotations

import torch
from torch import Tensor, nn

REDUCTIONS = ("sum", "scaled_mean")


class AsymmetricLoss(nn.Module):
    """ASL for multi-label classification.

    Args:
        gamma_neg: focusing exponent for negatives.
        gamma_pos: focusing exponent for positives.
        clip: probability margin added to negatives' ``1 - p`` (asymmetric clipping); 0 disables it.
        eps: lower clamp of the probabilities inside the logarithms.
        focal_grad: whether gradients flow through the focusing weight. Both official
            recipes stop them (``disable_torch_grad_focal_loss``), so the default is False.
        reduction: ``"sum"`` returns the summed loss (ML-Decoder); ``"scaled_mean"`` returns
            ``sum / batch / num_labels * 1000`` (Query2Label's ``AsymmetricLossOptimized``).

    ``labels`` is a float multi-hot (B, C); entries equal to -1 are unknown and contribute
    neither loss nor gradient. ``scaled_mean`` still divides by B * C so that a batch
    without unknown labels gives exactly the official number.

    ``num_items`` (``scaled_mean`` only): the B * C to divide by when ``logits`` is one part of a
    larger batch (another process's share, or one of several accumulated micro-batches), so that
    the parts' losses add up to the whole batch's. ``sum`` needs no such count: sums add up.
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        focal_grad: bool = False,
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps
        self.focal_grad = focal_grad
        self.reduction = reduction

    def forward(self, logits: Tensor, labels: Tensor, num_items: Tensor | int | None = None) -> Tensor:
        logits = logits.float()
        labels = labels.to(logits.dtype)
        known = (labels >= 0).to(logits.dtype)
        y = labels.clamp(min=0)
        p = torch.sigmoid(logits)
        p_neg = 1 - p
        if self.clip is not None and self.clip > 0:
            p_neg = (p_neg + self.clip).clamp(max=1)
        loss = y * torch.log(p.clamp(min=self.eps)) + (1 - y) * torch.log(p_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            with torch.set_grad_enabled(self.focal_grad and torch.is_grad_enabled()):
                pt = p * y + p_neg * (1 - y)
                gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
                weight = torch.pow(1 - pt, gamma)
            loss = loss * weight
        loss = -(loss * known).sum()
        if self.reduction == "scaled_mean":
            if num_items is None:
                loss = loss / logits.shape[0] / logits.shape[1] * 1000
            else:
                loss = loss / num_items * 1000
        return loss
