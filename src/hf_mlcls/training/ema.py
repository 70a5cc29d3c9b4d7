"""The weights' EMA: its callback, the swap used to evaluate it, and its file in each checkpoint."""

from __future__ import annotations

import logging
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback

from ..paths import atomic_path

logger = logging.getLogger("hf_mlcls.training")

EMA_WEIGHTS_NAME = "ema.safetensors"


class EMACallback(TrainerCallback):
    """Updates the weights' EMA after every optimizer step (timm's `ModelEmaV3`).

    With the constant decay from the first step, as both official ``ModelEma`` classes
    (``ema = decay * ema + (1 - decay) * weights``, parameters and buffers): given a step number,
    timm would instead copy the weights outright at step 1 (its ``get_decay`` returns 0 there).
    """

    def __init__(self, ema) -> None:
        self.ema = ema

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model)


def _swap_weights(a: nn.Module, b: nn.Module) -> None:
    """Exchange the storage of two identical modules' parameters and buffers (no copy)."""
    with torch.no_grad():
        for ta, tb in zip(list(a.parameters()) + list(a.buffers()), list(b.parameters()) + list(b.buffers())):
            ta.data, tb.data = tb.data, ta.data


def save_ema(module: nn.Module, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(os.path.join(folder, EMA_WEIGHTS_NAME)) as tmp:
        save_file(state, tmp)


def load_ema(module: nn.Module, folder: str) -> bool:
    path = os.path.join(folder, EMA_WEIGHTS_NAME)
    if not os.path.isfile(path):
        logger.warning("no EMA weights in %s; the EMA restarts from the current weights", folder)
        return False
    device = next(module.parameters()).device
    module.load_state_dict({k: v.to(device) for k, v in load_file(path).items()})
    return True
