"""Trainer glue for the official recipes: EMA, parameter groups, OneCycle, backbone freezing.

Everything else (devices, processes, mixed precision, accumulation, checkpoints, logging,
pushing) is the `transformers.Trainer`'s own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback

logger = logging.getLogger(__name__)

EMA_WEIGHTS_NAME = "ema.safetensors"
# Present in a checkpoint folder while it is being written; a crash leaves it behind.
INCOMPLETE_MARKER = ".incomplete"


@dataclass
class RecipeArguments:
    """The official recipes' pieces that the Trainer does not have itself."""

    schedule: str = field(
        default="onecycle",
        metadata={"help": "'onecycle' (OneCycleLR, both official recipes), 'cosine', or 'trainer' (use --lr_scheduler_type)"},
    )
    pct_start: float = field(default=0.2, metadata={"help": "OneCycle: fraction of steps spent warming up"})
    optimizer: str = field(
        default="adamw",
        metadata={"help": "'adamw' (Query2Label) or 'adam' (ML-Decoder: Adam with L2 weight decay in the gradient)"},
    )
    ema_decay: float = field(default=0.9997, metadata={"help": "decay of the weights' EMA; 0 disables the EMA"})
    backbone_trainable_layers: list[str] | None = field(
        default=None,
        metadata={"help": "train only backbone parameters whose name contains one of these (Query2Label's ResNet: layer2 layer3 layer4)"},
    )
    freeze_backbone: bool = field(default=False, metadata={"help": "train the head only"})
    early_stopping_patience: int | None = field(default=None, metadata={"help": "evaluations without improvement before stopping"})


def decay_parameter_names(model: nn.Module) -> list[str]:
    """Parameters that get weight decay: not biases, not norms' scales and shifts (1-D), not embeddings."""
    embeddings = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Embedding)
        for name, _ in module.named_parameters(recurse=False)
    }
    # GroupWiseLinear's per-label bias is called "b" and shaped (1, C)
    return [n for n, p in model.named_parameters() if p.ndim > 1 and not n.endswith((".bias", ".b")) and n not in embeddings]


def freeze_backbone_layers(model: nn.Module, trainable: list[str] | None = None, freeze_all: bool = False) -> int:
    """Freeze backbone parameters (all, or those matching none of `trainable`); returns how many were frozen."""
    frozen = 0
    backbone = model.get_submodule("model.backbone") if hasattr(model, "model") else model.backbone
    for name, param in backbone.named_parameters():
        if freeze_all or (trainable is not None and not any(t in name for t in trainable)):
            param.requires_grad_(False)
            frozen += 1
    return frozen


class EMACallback(TrainerCallback):
    """Updates the weights' EMA after every optimizer step (timm's `ModelEmaV3`)."""

    def __init__(self, ema) -> None:
        self.ema = ema

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model, step=state.global_step)


def _swap_weights(a: nn.Module, b: nn.Module) -> None:
    """Exchange the storage of two identical modules' parameters and buffers (no copy)."""
    with torch.no_grad():
        for ta, tb in zip(list(a.parameters()) + list(a.buffers()), list(b.parameters()) + list(b.buffers())):
            ta.data, tb.data = tb.data, ta.data


class MultiLabelTrainer(Trainer):
    """`Trainer` with the weights' EMA evaluated and saved beside the raw weights.

    Each evaluation reports the raw model's metrics (`eval_*`) and the EMA's (`eval_ema_*`);
    with `metric_for_best_model="ema_mAP"` the best checkpoint is chosen on the EMA. The EMA
    is saved in every checkpoint (`ema.safetensors`) and restored on resume.
    """

    def __init__(self, *args, recipe: RecipeArguments | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recipe = recipe or RecipeArguments()
        self.ema = None
        if self.recipe.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=self.recipe.ema_decay)
            self.ema.module.requires_grad_(False)
            self.add_callback(EMACallback(self.ema))

    # ---- optimisation -------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return decay_parameter_names(model)

    def create_optimizer(self, model=None):
        if self.recipe.optimizer == "adamw" or self.optimizer is not None:
            return super().create_optimizer(model)
        if self.recipe.optimizer != "adam":
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {self.recipe.optimizer!r}")
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        params = [(n, p) for n, p in opt_model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if n in decay], "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.Adam(groups, lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is not None or self.recipe.schedule == "trainer":
            return super().create_scheduler(num_training_steps, optimizer)
        optimizer = optimizer or self.optimizer
        if self.recipe.schedule == "onecycle":
            self.lr_scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.args.learning_rate, total_steps=num_training_steps, pct_start=self.recipe.pct_start
            )
        elif self.recipe.schedule == "cosine":
            self.lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_training_steps)
        else:
            raise ValueError(f"schedule must be 'onecycle', 'cosine' or 'trainer', got {self.recipe.schedule!r}")
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.ema is not None:
            _swap_weights(self.model, self.ema.module)
            try:
                metrics.update(super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_ema"))
            finally:
                _swap_weights(self.model, self.ema.module)
        if self.is_world_process_zero():
            print(summary_line(metrics, metric_key_prefix, self.state.epoch), flush=True)
        return metrics

    # ---- checkpoints --------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        marker = os.path.join(folder, INCOMPLETE_MARKER)
        if self.args.should_save:
            os.makedirs(folder, exist_ok=True)
            open(marker, "w").close()
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            if self.ema is not None:
                save_ema(self.ema.module, folder)
            os.remove(marker)  # only now is the checkpoint whole

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        """`Trainer.train`, where `resume_from_checkpoint=True` skips checkpoints a crash left half-written."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no complete checkpoint to resume from in {self.args.output_dir!r}")
        elif isinstance(resume_from_checkpoint, str) and os.path.exists(os.path.join(resume_from_checkpoint, INCOMPLETE_MARKER)):
            raise ValueError(
                f"{resume_from_checkpoint!r} was not completely written (the run stopped while saving it); "
                "resume from an earlier checkpoint or pass --resume_from_checkpoint True to pick the last complete one"
            )
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.ema is not None:
            load_ema(self.ema.module, resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        if self.ema is not None and self.state.best_model_checkpoint:
            load_ema(self.ema.module, self.state.best_model_checkpoint)

    def use_ema_weights(self) -> None:
        """After training: make the EMA weights the model's (the published numbers are the EMA's).

        The EMA is then dropped, so later evaluations report the one model that is saved.
        """
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
            self.callback_handler.callbacks = [c for c in self.callback_handler.callbacks if not isinstance(c, EMACallback)]
            self.ema = None


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder in `output_dir` that was completely written."""
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if name.startswith("checkpoint-") and name[11:].isdigit() and os.path.isdir(path):
            if not os.path.exists(os.path.join(path, INCOMPLETE_MARKER)):
                steps.append((int(name[11:]), path))
    return max(steps)[1] if steps else None


def save_ema(module: nn.Module, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    tmp = os.path.join(folder, EMA_WEIGHTS_NAME + ".tmp")
    save_file(state, tmp)
    os.replace(tmp, os.path.join(folder, EMA_WEIGHTS_NAME))


def load_ema(module: nn.Module, folder: str) -> bool:
    path = os.path.join(folder, EMA_WEIGHTS_NAME)
    if not os.path.isfile(path):
        logger.warning("no EMA weights in %s; the EMA restarts from the current weights", folder)
        return False
    device = next(module.parameters()).device
    module.load_state_dict({k: v.to(device) for k, v in load_file(path).items()})
    return True


SUMMARY_KEYS = (("mAP", "mAP"), ("CF1", "CF1"), ("OF1", "OF1"))


def summary_line(metrics: dict, prefix: str = "eval", epoch: float | None = None) -> str:
    """One line per evaluation: raw mAP, CF1, OF1 and the EMA's mAP."""
    parts = [f"epoch {epoch:.2f}" if epoch is not None else "evaluation"]
    for key, label in SUMMARY_KEYS:
        if f"{prefix}_{key}" in metrics:
            parts.append(f"{label} {metrics[f'{prefix}_{key}']:.2f}")
    if f"{prefix}_ema_mAP" in metrics:
        parts.append(f"EMA mAP {metrics[f'{prefix}_ema_mAP']:.2f}")
    return " | ".join(parts)
