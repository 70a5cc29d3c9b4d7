"""The recipe arguments the Trainer does not have, their checks, and the parameter choices they make."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

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
    eval_ema_only: bool = field(
        default=False,
        metadata={
            "help": "evaluate only the EMA weights (eval_ema_* metrics), not the raw ones: halves evaluation time, "
            "but the raw weights' metrics are not reported and cannot choose the best checkpoint. Off by default, "
            "as both official recipes evaluate both (Query2Label main_mlc.py, ML-Decoder train.py)"
        },
    )
    backbone_trainable_layers: list[str] | None = field(
        default=None,
        metadata={"help": "train only backbone parameters whose name contains one of these (Query2Label's ResNet: layer2 layer3 layer4)"},
    )
    freeze_backbone: bool = field(default=False, metadata={"help": "train the head only"})
    weight_decay_all: bool = field(
        default=False,
        metadata={
            "help": "decay every trained parameter, biases, norms and embeddings included (Query2Label's main_mlc.py: "
            "one AdamW group); default: biases, 1-D norm parameters and embeddings get none (ML-Decoder's add_weight_decay)"
        },
    )
    final_weights: str = field(
        default="ema",
        metadata={
            "help": "the weights kept after training: 'ema' (the EMA), or 'better' (the raw or the EMA weights, whichever "
            "scored higher on metric_for_best_model at the kept evaluation, as both official scripts compare them)"
        },
    )
    early_stopping_patience: int | None = field(default=None, metadata={"help": "evaluations without improvement before stopping"})

    SCHEDULES = ("onecycle", "cosine", "trainer")
    OPTIMIZERS = ("adamw", "adam")

    def __post_init__(self) -> None:
        """Refuse a bad value at construction (for ``examples/train.py``, while the arguments are
        parsed), naming the argument as the command line spells it."""
        if self.schedule not in self.SCHEDULES:
            raise ValueError(f"--schedule must be {_one_of(self.SCHEDULES)}, got {self.schedule!r}")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"--pct_start must be in (0, 1), got {self.pct_start}")
        if self.optimizer not in self.OPTIMIZERS:
            raise ValueError(f"--optimizer must be {_one_of(self.OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"--ema_decay must be in [0, 1) (0 disables the EMA), got {self.ema_decay}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"--early_stopping_patience must be >= 1, got {self.early_stopping_patience}")
        if self.final_weights not in ("ema", "better"):
            raise ValueError(f"--final_weights must be 'ema' or 'better', got {self.final_weights!r}")
        if self.freeze_backbone and self.backbone_trainable_layers:
            raise ValueError(
                "--freeze_backbone freezes every backbone layer; it cannot be combined with --backbone_trainable_layers"
            )


def _one_of(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) for c in choices]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def check_recipe(recipe: RecipeArguments, args) -> None:
    """The checks that need both the recipe and the ``TrainingArguments`` (each alone is checked when
    it is built): a ``ValueError`` naming the arguments. ``MultiLabelTrainer`` runs it when built,
    ``examples/train.py`` before any data is read or model built."""
    metric = args.metric_for_best_model or ""
    if metric.startswith(("ema_", "eval_ema_")) and recipe.ema_decay == 0:
        raise ValueError(f"--metric_for_best_model {metric} is the EMA's, and --ema_decay 0 turns the EMA off")
    if recipe.early_stopping_patience is not None:
        # what transformers' EarlyStoppingCallback asserts when training starts, said before any work
        if not metric or getattr(args.eval_strategy, "value", args.eval_strategy) == "no":
            raise ValueError(
                "--early_stopping_patience needs an evaluation (--eval_strategy epoch or steps) and a "
                "--metric_for_best_model (e.g. ema_mAP) to know what improves"
            )


@dataclass
class LabelSet:
    """A zero-shot label set: names and their embeddings, row i for ``names[i]``.

    ``embeddings`` is (len(names), label_embedding_dim), e.g. from
    ``hf_mlcls.models.text_encoding.encode_label_names(names, text_encoder)``.
    """

    names: list[str]
    embeddings: torch.Tensor

    def __post_init__(self) -> None:
        self.names = list(self.names)
        self.embeddings = torch.as_tensor(self.embeddings, dtype=torch.float32)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.names):
            raise ValueError(
                f"LabelSet: embeddings of shape {tuple(self.embeddings.shape)} do not fit {len(self.names)} names"
            )


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
