"""Single-label training (ImageNet, CIFAR-100, Stanford Cars) with timm's recipe pieces.

The ML-Decoder single-label results come from the authors' timm fork (ML_Decoder
README.md lines 71-105); here the same pieces come from timm itself and are wired into
the ``Trainer``: ``timm.data.create_transform`` (RandAugment strings such as
``rand-m7-mstd0.5-inc1``, bicubic resizing), ``timm.data.Mixup`` (mixup and CutMix),
``timm.loss.BinaryCrossEntropy`` (``target_threshold``) / ``SoftTargetCrossEntropy`` /
``LabelSmoothingCrossEntropy``, ``timm.optim.create_optimizer_v2`` (LAMB) and
``timm.data.distributed_sampler.RepeatAugSampler``. The loss choice follows timm's
``train.py``. Everything else (EMA, checkpoints, resuming) is :class:`MultiLabelTrainer`'s.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .training import MultiLabelTrainer

logger = logging.getLogger(__name__)

__all__ = ["SingleLabelArguments", "SingleLabelCollator", "SingleLabelTrainer", "build_loss", "build_mixup",
           "single_label_transforms"]


@dataclass
class SingleLabelArguments:
    """timm's single-label recipe switches, under timm's ``train.py`` names (``--mixup``, ``--bce-loss``, ...)."""

    opt: str | None = field(
        default=None,
        metadata={"help": "a timm optimizer by name through timm.optim.create_optimizer_v2 (e.g. 'lamb'; weight "
                          "decay off for biases and norms, as timm); default: --optimizer"},
    )
    mixup: float = field(default=0.0, metadata={"help": "mixup alpha (timm --mixup); 0 is off"})
    cutmix: float = field(default=0.0, metadata={"help": "CutMix alpha (timm --cutmix); 0 is off"})
    mixup_prob: float = field(default=1.0, metadata={"help": "probability of mixup or CutMix per batch (timm --mixup-prob)"})
    mixup_switch_prob: float = field(default=0.5, metadata={"help": "probability of CutMix when both are on (timm --mixup-switch-prob)"})
    smoothing: float = field(default=0.1, metadata={"help": "label smoothing (timm --smoothing)"})
    bce_loss: bool = field(default=False, metadata={"help": "binary cross-entropy instead of softmax cross-entropy (timm --bce-loss)"})
    bce_target_thresh: float | None = field(
        default=None, metadata={"help": "BCE: mixed targets at or above this become 1, the rest 0 (timm --bce-target-thresh)"}
    )
    aug_repeats: int = field(default=0, metadata={"help": "repeated augmentation: each image this many times per epoch (timm --aug-repeats; 0 off)"})
    aa: str | None = field(default=None, metadata={"help": "RandAugment / AutoAugment string, e.g. 'rand-m7-mstd0.5-inc1' (timm --aa)"})
    train_interpolation: str = field(default="bilinear", metadata={"help": "resize interpolation: bilinear, bicubic or random (timm --train-interpolation)"})
    reprob: float = field(default=0.0, metadata={"help": "random erasing probability (timm --reprob)"})
    remode: str = field(default="pixel", metadata={"help": "random erasing mode (timm --remode)"})
    color_jitter: float = field(default=0.4, metadata={"help": "colour jitter when no --aa is given (timm --color-jitter)"})
    crop_pct: float | None = field(default=None, metadata={"help": "evaluation centre-crop fraction (timm --crop-pct); default timm's 0.875"})

    def check(self) -> None:
        """Refuse impossible values, naming the argument (SystemExit, as train.py's other checks)."""
        def refuse(message: str) -> None:
            raise SystemExit(f"train.py: {message}")

        for name in ("mixup", "cutmix", "reprob"):
            if getattr(self, name) < 0:
                refuse(f"--{name} must be >= 0, got {getattr(self, name)}")
        for name in ("mixup_prob", "mixup_switch_prob", "reprob", "smoothing"):
            if not 0 <= getattr(self, name) <= 1:
                refuse(f"--{name} must be in [0, 1], got {getattr(self, name)}")
        if self.bce_target_thresh is not None and not 0 < self.bce_target_thresh < 1:
            refuse(f"--bce_target_thresh must be in (0, 1), got {self.bce_target_thresh}")
        if self.bce_target_thresh is not None and not self.bce_loss:
            refuse("--bce_target_thresh needs --bce_loss true")
        if self.aug_repeats < 0 or self.aug_repeats == 1:
            refuse(f"--aug_repeats must be 0 (off) or >= 2, got {self.aug_repeats}")
        if self.train_interpolation not in ("bilinear", "bicubic", "random", "nearest"):
            refuse(f"--train_interpolation must be bilinear, bicubic, random or nearest, got {self.train_interpolation!r}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            refuse(f"--crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.aa and self.aa.startswith("rand"):
            # timm's parser skips a section it cannot split into key and number ("mX"), so check them here
            sections = self.aa.split("-")
            bad = [s for s in sections[1:] if not re.fullmatch(r"(mstd|mmax|inc|m|n|p|w)\d*\.?\d+|t\w*", s)]
            if sections[0] != "rand" or bad:
                refuse(f"--aa {self.aa!r} is not a RandAugment string timm reads (section {bad[0] if bad else sections[0]!r}); "
                       "e.g. rand-m9-mstd0.5-inc1")
            from timm.data.auto_augment import rand_augment_transform

            try:
                rand_augment_transform(self.aa, {})
            except Exception as err:  # timm raises assorted types for a malformed string
                refuse(f"--aa {self.aa!r} is not a RandAugment string timm reads ({err})")
        if self.opt:
            from timm.optim import list_optimizers

            if self.opt.lower() not in list_optimizers():
                refuse(f"--opt {self.opt!r} is not a timm optimizer; e.g. lamb, adamw, sgd (timm.optim.list_optimizers())")

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def _mean_std(config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if getattr(config, "image_mean", None) is None:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # TResNets take [0, 1] pixels
    return tuple(config.image_mean), tuple(config.image_std)


def single_label_transforms(config, args: SingleLabelArguments):
    """(train, eval) batch transforms for ``with_transform``: ``{"image", "label"}`` rows to
    ``{"pixel_values", "labels"}``, through ``timm.data.create_transform`` at the model's
    ``image_size`` and normalisation."""
    from timm.data import create_transform

    from .data.images import to_rgb

    mean, std = _mean_std(config)
    size = int(config.image_size)
    train_tf = create_transform(
        size, is_training=True, auto_augment=args.aa, interpolation=args.train_interpolation, mean=mean, std=std,
        re_prob=args.reprob, re_mode=args.remode, color_jitter=args.color_jitter,
    )
    eval_tf = create_transform(size, is_training=False, interpolation="bicubic" if args.train_interpolation == "bicubic" else "bilinear",
                               mean=mean, std=std, crop_pct=args.crop_pct)

    def make(tf):
        def apply(batch):
            return {"pixel_values": [tf(to_rgb(image)) for image in batch["image"]], "labels": list(batch["label"])}
        return apply

    return make(train_tf), make(eval_tf)


class SingleLabelCollator:
    """``{"pixel_values": (B, 3, H, W) float, "labels": (B,) long}``: class indices; mixup
    (when on) happens in the trainer, on training batches only."""

    def __call__(self, rows):
        return {
            "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
            "labels": torch.tensor([int(r["labels"]) for r in rows], dtype=torch.long),
        }


def build_mixup(args: SingleLabelArguments, num_classes: int):
    """timm's ``Mixup`` for the recipe's alphas, or None when both are 0."""
    if not args.mixup_active:
        return None
    from timm.data import Mixup

    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, prob=args.mixup_prob, switch_prob=args.mixup_switch_prob,
                 mode="batch", label_smoothing=args.smoothing, num_classes=num_classes)


def build_loss(args: SingleLabelArguments) -> nn.Module:
    """The training loss, chosen as timm's ``train.py`` chooses it."""
    from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if args.mixup_active:
        return BinaryCrossEntropy(target_threshold=args.bce_target_thresh) if args.bce_loss else SoftTargetCrossEntropy()
    if args.smoothing:
        if args.bce_loss:
            return BinaryCrossEntropy(smoothing=args.smoothing, target_threshold=args.bce_target_thresh)
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return BinaryCrossEntropy(smoothing=0.0, target_threshold=args.bce_target_thresh) if args.bce_loss else nn.CrossEntropyLoss()


class SingleLabelTrainer(MultiLabelTrainer):
    """:class:`MultiLabelTrainer` (EMA, checkpoints) for single-label data: mixup/CutMix on
    training batches, the recipe's loss in training and plain cross-entropy in evaluation
    (as timm's ``validate``), an optional timm optimizer and repeated-augmentation sampler,
    and top-1/top-5 in each evaluation line."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean

    def __init__(self, *args, single_label: SingleLabelArguments | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.single_label = single_label or SingleLabelArguments()
        num_classes = len(self.model.config.id2label)
        self.mixup_fn = build_mixup(self.single_label, num_classes)
        self.train_loss = build_loss(self.single_label)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        pixel_values = inputs["pixel_values"]
        if model.training and self.mixup_fn is not None:
            if len(pixel_values) % 2:  # timm's batch mixup pairs images; drop one from an odd last batch
                pixel_values, labels = pixel_values[:-1], labels[:-1]
            pixel_values, labels = self.mixup_fn(pixel_values, labels)
        outputs = model(pixel_values=pixel_values)
        logits = outputs.logits.float()
        if model.training:
            loss = self.train_loss(logits, labels)
        else:
            loss = nn.functional.cross_entropy(logits, labels)
        return (loss, outputs) if return_outputs else loss

    def create_optimizer(self, model=None):
        if not self.single_label.opt or self.optimizer is not None:
            return super().create_optimizer(model)
        from timm.optim import create_optimizer_v2

        opt_model = self.model if model is None else model
        self.optimizer = create_optimizer_v2(
            opt_model, opt=self.single_label.opt, lr=self.args.learning_rate, weight_decay=self.args.weight_decay,
            filter_bias_and_bn=True,
        )
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        if self.single_label.aug_repeats < 2:
            return super()._get_train_sampler(train_dataset)
        from timm.data.distributed_sampler import RepeatAugSampler

        dataset = self.train_dataset if train_dataset is None else train_dataset
        # One sampler for the whole run: Accelerate shards its batches across processes. An epoch is
        # len(dataset) samples, each image aug_repeats times in a row (selected_round=0: no rounding to 256).
        return RepeatAugSampler(dataset, num_replicas=1, rank=0, shuffle=True, num_repeats=self.single_label.aug_repeats,
                                selected_round=0)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **kwargs):
        metrics = self._evaluate_raw_and_ema(eval_dataset, ignore_keys, metric_key_prefix)
        if self.is_world_process_zero():
            print(accuracy_line(metrics, metric_key_prefix, self.state.epoch), flush=True)
        return metrics


def accuracy_line(metrics: dict, prefix: str = "eval", epoch: float | None = None) -> str:
    parts = [f"epoch {epoch:.2f}" if epoch is not None else "evaluation"]
    for key in ("top1", "top5", "ema_top1", "ema_top5"):
        if f"{prefix}_{key}" in metrics and not np.isnan(metrics[f"{prefix}_{key}"]):
            parts.append(f"{key.replace('ema_', 'EMA ')} {metrics[f'{prefix}_{key}']:.2f}")
    return " | ".join(parts)
