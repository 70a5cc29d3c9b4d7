"""Trainer glue for the official recipes: EMA, parameter groups, OneCycle, backbone freezing.

Everything else (devices, processes, mixed precision, accumulation, checkpoints, logging,
pushing) is the `transformers.Trainer`'s own.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import rotate_checkpoints

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


class MultiLabelTrainer(Trainer):
    """`Trainer` with the weights' EMA evaluated and saved beside the raw weights.

    Each evaluation reports the raw model's metrics (`eval_*`) and the EMA's (`eval_ema_*`);
    with `metric_for_best_model="ema_mAP"` the best checkpoint is chosen on the EMA. The EMA
    is saved in every checkpoint (`ema.safetensors`) and restored on resume.
    """

    def __init__(
        self,
        *args,
        recipe: RecipeArguments | None = None,
        eval_label_sets: Mapping[str, LabelSet] | None = None,
        **kwargs,
    ) -> None:
        """``eval_label_sets`` (zero-shot ML-Decoder only): ``{name: LabelSet}`` for evaluation sets named
        in ``eval_dataset`` (a dict): each is evaluated, raw and EMA weights alike, with its own labels'
        embeddings in place of the training ones (metrics ``eval_{name}_*`` and ``eval_{name}_ema_*``),
        which come back afterwards. The model trains on the label set it holds when the trainer is built.
        """
        super().__init__(*args, **kwargs)
        self.recipe = recipe or RecipeArguments()
        check_recipe(self.recipe, self.args)
        self._check_loss_scaling()
        self.eval_label_sets = dict(eval_label_sets or {})
        if self.eval_label_sets:
            self._check_label_sets()
        self.ema = None
        if self.recipe.eval_ema_only:
            best = self.args.metric_for_best_model
            if self.recipe.ema_decay <= 0:
                raise ValueError("eval_ema_only needs the EMA: set ema_decay > 0, or leave eval_ema_only off")
            if best and not best.removeprefix("eval_").startswith("ema_"):
                raise ValueError(
                    f"eval_ema_only leaves the raw weights unevaluated, so metric_for_best_model={best!r} is never "
                    "reported; use an EMA metric (e.g. ema_mAP) or leave eval_ema_only off"
                )
        if self.recipe.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=self.recipe.ema_decay)
            self.ema.module.requires_grad_(False)
            self.add_callback(EMACallback(self.ema))
        if self.compute_metrics is not None:
            self.compute_metrics = WarnSkippedClasses(self.compute_metrics, lambda: getattr(self.model.config, "id2label", {}))

    # ---- optimisation -------------------------------------------------------------------
    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        if self.recipe.weight_decay_all:
            return [n for n, _ in model.named_parameters()]
        return decay_parameter_names(model)

    def _check_loss_scaling(self) -> None:
        """A summed loss (ML-Decoder) relies on the Trainer multiplying each process's loss by the number of
        processes, which it does only with average_tokens_across_devices; without it DDP's gradient averaging
        would divide the whole batch's gradient by the number of processes."""
        loss_fct = getattr(self.model, "loss_fct", None)
        if (
            self.args.world_size > 1
            and not self.args.average_tokens_across_devices
            and getattr(loss_fct, "reduction", None) == "sum"
        ):
            raise ValueError(
                "average_tokens_across_devices=False with a summed loss (asl_reduction='sum') on "
                f"{self.args.world_size} processes would train with 1/{self.args.world_size} of the batch's gradient; "
                "leave average_tokens_across_devices at True"
            )

    def create_optimizer(self, model=None):
        if self.recipe.optimizer == "adamw" or self.optimizer is not None:
            return super().create_optimizer(model)
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
        else:  # "cosine"; RecipeArguments refuses any other value
            self.lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_training_steps)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ---- zero-shot label sets --------------------------------------------------------------
    def _check_label_sets(self) -> None:
        config = self.model.config
        if not getattr(config, "zero_shot", False) or not hasattr(self.model, "use_label_names"):
            raise ValueError("eval_label_sets needs a zero-shot ML-Decoder (config.zero_shot=True)")
        if not isinstance(self.eval_dataset, Mapping):
            raise ValueError("eval_label_sets needs eval_dataset as a dict {name: dataset} with the same names")
        for name, label_set in self.eval_label_sets.items():
            if name not in self.eval_dataset:
                raise ValueError(f"eval_label_sets: {name!r} is not an evaluation set (they are {list(self.eval_dataset)})")
            if label_set.embeddings.shape[1] != config.label_embedding_dim:
                raise ValueError(
                    f"eval_label_sets[{name!r}]: {label_set.embeddings.shape[1]}-wide embeddings for a model with "
                    f"label_embedding_dim {config.label_embedding_dim}"
                )
            features = getattr(self.eval_dataset[name], "features", None)
            labels = features.get("labels") if features is not None else None
            data_names = list(getattr(getattr(labels, "feature", labels), "names", None) or [])
            if data_names and data_names != label_set.names:
                raise ValueError(
                    f"eval_label_sets[{name!r}]: the label names are not those of the evaluation set, in the same order "
                    f"({len(label_set.names)} names vs {len(data_names)}; first {label_set.names[:3]} vs {data_names[:3]})"
                )

    @contextmanager
    def _labels_swapped(self, label_set: LabelSet | None):
        """Give the model (and its EMA) ``label_set`` for the duration; the training labels come back after."""
        if label_set is None:
            yield
            return
        models = [self.model] + ([self.ema.module] if self.ema is not None else [])
        with ExitStack() as stack:  # each model restores its own label set on exit (the very buffer tensor)
            for m in models:
                stack.enter_context(m.use_label_names(label_set.names, embeddings=label_set.embeddings))
            yield

    def _evaluate_label_sets(self, eval_dataset, ignore_keys, metric_key_prefix, label_set):
        target = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(target, Mapping):
            items = [(name, name if eval_dataset is None else ds, self.eval_label_sets.get(name)) for name, ds in target.items()]
        else:
            items = [(None, eval_dataset, label_set)]
        metrics = {}
        for name, dataset, labels in items:
            prefix = metric_key_prefix if name is None else f"{metric_key_prefix}_{name}"
            with self._labels_swapped(labels):
                found = self._evaluate_raw_and_ema(dataset, ignore_keys, prefix)
            metrics.update(found)
            if self.is_world_process_zero():
                print((f"{name}: " if name else "") + summary_line(found, prefix, self.state.epoch), flush=True)
        return metrics

    # ---- evaluation ---------------------------------------------------------------------
    def _evaluate_raw_and_ema(self, dataset, ignore_keys, prefix: str) -> dict[str, float]:
        """The Trainer's evaluation of the raw weights (``prefix_*``), then of the EMA (``prefix_ema_*``);
        of the EMA only with ``RecipeArguments.eval_ema_only``."""
        metrics = {} if self.ema is not None and self.recipe.eval_ema_only else super().evaluate(dataset, ignore_keys, prefix)
        if self.ema is not None:
            _swap_weights(self.model, self.ema.module)
            try:
                ema_metrics = super().evaluate(dataset, ignore_keys, f"{prefix}_ema")
            finally:
                _swap_weights(self.model, self.ema.module)
            metrics.update(ema_metrics)
            # the better of the raw and the EMA weights (Query2Label main_mlc.py: mAP = max(mAP, mAP_ema)),
            # for metric_for_best_model="max_mAP" / "max_mAP_voc"
            for key in ("mAP", "mAP_voc"):
                raw, ema = metrics.get(f"{prefix}_{key}"), metrics.get(f"{prefix}_ema_{key}")
                if raw is not None and ema is not None:
                    metrics[f"{prefix}_max_{key}"] = max(raw, ema)
        return metrics

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", label_set: LabelSet | None = None):
        """Raw and EMA metrics. Zero-shot: each evaluation set named in ``eval_label_sets`` (or the one
        ``eval_dataset`` given with ``label_set``) is scored with its own label set."""
        if self.eval_label_sets or label_set is not None:
            return self._evaluate_label_sets(eval_dataset, ignore_keys, metric_key_prefix, label_set)
        metrics = self._evaluate_raw_and_ema(eval_dataset, ignore_keys, metric_key_prefix)
        if self.is_world_process_zero():
            print(summary_line(metrics, metric_key_prefix, self.state.epoch), flush=True)
        return metrics

    # ---- checkpoints --------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
        marker = os.path.join(folder, INCOMPLETE_MARKER)
        if self.args.should_save:
            os.makedirs(folder, exist_ok=True)
            open(marker, "w").close()
        # The Trainer deletes old checkpoints (save_total_limit) at the end of its own save, before the
        # EMA is written: a crash or a full disk after that would leave no complete checkpoint at all.
        # Old ones go only once this one is whole.
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            if self.ema is not None:
                save_ema(self.ema.module, folder)
            os.remove(marker)  # only now is the checkpoint whole
            if limit:
                rotate_checkpoints(run_dir, save_total_limit=limit, best_model_checkpoint=self.state.best_model_checkpoint,
                                   use_mtime=True)

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
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        except (Exception, KeyboardInterrupt) as err:
            # Whatever stopped the run (a data-loading worker, a full disk, Ctrl-C), say where it
            # stopped and what can be resumed; the traceback says why.
            note = stopped_note(err, self.args.output_dir, self.state.global_step)
            err.add_note(note)
            logger.error(note)
            raise

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.ema is not None:
            load_ema(self.ema.module, resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        if self.ema is not None and self.state.best_model_checkpoint:
            load_ema(self.ema.module, self.state.best_model_checkpoint)

    def _raw_is_better(self) -> bool | None:
        """At the kept evaluation (the best checkpoint's, else the last), did the raw weights score higher than
        the EMA on metric_for_best_model's metric? None when no evaluation says."""
        metric = self.args.metric_for_best_model or "mAP"
        metric = metric[len("eval_"):] if metric.startswith("eval_") else metric
        for prefix in ("max_", "ema_"):
            metric = metric[len(prefix):] if metric.startswith(prefix) else metric
        step = None
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint:
            step = int(os.path.basename(os.path.normpath(self.state.best_model_checkpoint)).split("-")[-1])
        # the raw and the EMA evaluations are logged as two entries of the same step
        raw = {e["step"]: e[f"eval_{metric}"] for e in self.state.log_history if f"eval_{metric}" in e}
        ema = {e["step"]: e[f"eval_ema_{metric}"] for e in self.state.log_history if f"eval_ema_{metric}" in e}
        steps = sorted(set(raw) & set(ema))
        if step is None and steps:
            step = steps[-1]
        if step not in raw or step not in ema:
            return None
        greater = self.args.greater_is_better if self.args.greater_is_better is not None else True
        # a tie keeps the raw weights, as main_mlc.py:387-391 (the EMA only when mAP_ema > mAP)
        return raw[step] >= ema[step] if greater else raw[step] <= ema[step]

    def use_final_weights(self) -> str:
        """After training: keep the weights that `recipe.final_weights` asks for; returns 'ema' or 'raw'.

        'ema': the EMA (the published numbers are the EMA's). 'better': the raw weights when they scored higher
        than the EMA at the kept evaluation (Query2Label saves ``ema_m.module.state_dict()`` if ``mAP_ema > mAP``
        else the model's), else the EMA. Either way the EMA is then dropped.
        """
        if self.ema is None:
            return "raw"
        if self.recipe.final_weights == "better" and self._raw_is_better():
            self.ema = None
            self.callback_handler.callbacks = [c for c in self.callback_handler.callbacks if not isinstance(c, EMACallback)]
            logger.info("keeping the raw weights: they scored higher than the EMA at the kept evaluation")
            return "raw"
        self.use_ema_weights()
        return "ema"

    def use_ema_weights(self) -> None:
        """After training: make the EMA weights the model's (the published numbers are the EMA's).

        The EMA is then dropped, so later evaluations report the one model that is saved.
        """
        if self.ema is not None:
            self.model.load_state_dict(self.ema.module.state_dict())
            self.callback_handler.callbacks = [c for c in self.callback_handler.callbacks if not isinstance(c, EMACallback)]
            self.ema = None


class WarnSkippedClasses:
    """Wraps a Trainer ``compute_metrics`` and warns, once per set of such classes and naming them, when
    its ``num_classes_skipped`` (``hf_mlcls.metrics.compute``'s count of classes with no positive in the
    evaluation set, which AP leaves out) is not 0. The metrics themselves pass through unchanged.
    ``id2label`` is a mapping or a callable returning the current one."""

    def __init__(self, compute_metrics, id2label=None) -> None:
        self.compute_metrics = compute_metrics
        self.id2label = id2label
        self._warned: tuple | str | None = None

    def __call__(self, eval_pred, *args, **kwargs):
        metrics = self.compute_metrics(eval_pred, *args, **kwargs)
        skipped = metrics.get("num_classes_skipped") if isinstance(metrics, dict) else None
        labels = getattr(eval_pred, "label_ids", None)
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        if not skipped or labels is None or np.ndim(labels) != 2:
            return metrics
        labels = np.asarray(labels)
        if skipped == labels.shape[1]:
            if self._warned != "all":
                self._warned = "all"
                logger.warning(
                    "no class has a positive in the evaluation set (%d images, %d classes): mAP and the class means "
                    "are undefined (NaN), so no checkpoint can be chosen as the best on them; check the evaluation "
                    "set's labels", labels.shape[0], labels.shape[1],
                )
            return metrics
        empty = np.flatnonzero(~(labels == 1).any(axis=0))  # which ones, to name them; the count is compute()'s
        if tuple(empty.tolist()) != self._warned:
            self._warned = tuple(empty.tolist())
            id2label = (self.id2label() if callable(self.id2label) else self.id2label) or {}
            names = ", ".join(str(id2label.get(int(i), int(i))) for i in empty[:20]) + (" ..." if empty.size > 20 else "")
            logger.warning(
                "%d of %d classes have no positive in the evaluation set (%s): they are left out of mAP and "
                "of the class means, and counted in num_classes_skipped",
                skipped, labels.shape[1], names,
            )
        return metrics


def stopped_note(err: BaseException, output_dir: str | None, step: int) -> str:
    """One sentence for an exception that ended training: where it stopped, what was not
    completely written, and the checkpoint to resume from."""
    parts = [f"hf_mlcls: training stopped at step {step}"]
    has_dir = bool(output_dir) and os.path.isdir(output_dir)
    incomplete = sorted(
        name for name in (os.listdir(output_dir) if has_dir else [])
        if name.startswith("checkpoint-") and os.path.exists(os.path.join(output_dir, name, INCOMPLETE_MARKER))
    )
    last = last_complete_checkpoint(output_dir) if has_dir else None
    full = _disk_full_error(err)
    if full is not None:
        where = f" while writing {full.filename}" if getattr(full, "filename", None) else ""
        parts.append(f"the disk is full{where}: free some space (or set save_total_limit) before resuming")
    elif incomplete and last:
        # torch.save reports a full disk as a RuntimeError ("unexpected pos ..."): look at the disk itself
        free, needed = shutil.disk_usage(output_dir).free, _folder_size(last)
        if free < needed:
            parts.append(
                f"the disk is full: {free / 2**20:.1f} MB free where {output_dir} is, less than one checkpoint "
                f"({needed / 2**20:.1f} MB); free some space (or set save_total_limit) before resuming"
            )
    if "DataLoader worker" in str(err):
        parts.append(
            "a data-loading worker failed (its error is above; a worker killed by a signal is often out of memory: "
            "lower dataloader_num_workers or the batch size)"
        )
    if incomplete:
        parts.append(f"{', '.join(incomplete)} was not completely written and is never resumed from")
    if last:
        parts.append(
            f"the last complete checkpoint is {last}: resume with resume_from_checkpoint=True "
            "(examples/train.py: --resume_from_checkpoint true)"
        )
    else:
        parts.append(f"there is no complete checkpoint in {output_dir!r} to resume from")
    return "; ".join(parts) + "."


def _disk_full_error(err: BaseException) -> BaseException | None:
    """The exception in ``err``'s chain that says the disk is full: an ``OSError`` with ``ENOSPC``, or
    one whose text carries the system's words for it (safetensors reports a full disk as a
    ``SafetensorError`` with the OS message inside)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        if os.strerror(errno.ENOSPC) in str(err) or f"os error {errno.ENOSPC})" in str(err):
            return err
        err = err.__cause__ or err.__context__
    return None


def _folder_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


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


SUMMARY_KEYS = (("mAP", "mAP"), ("CF1", "CF1"), ("OF1", "OF1"), ("F1_top3", "F1@3"), ("F1_top5", "F1@5"))


def summary_line(metrics: dict, prefix: str = "eval", epoch: float | None = None) -> str:
    """One line per evaluation: raw mAP, CF1, OF1 and the EMA's mAP."""
    parts = [f"epoch {epoch:.2f}" if epoch is not None else "evaluation"]
    for key, label in SUMMARY_KEYS:
        if f"{prefix}_{key}" in metrics:
            parts.append(f"{label} {metrics[f'{prefix}_{key}']:.2f}")
    if f"{prefix}_ema_mAP" in metrics:
        parts.append(f"EMA mAP {metrics[f'{prefix}_ema_mAP']:.2f}")
    if metrics.get(f"{prefix}_num_classes_skipped"):
        parts.append(f"{metrics[f'{prefix}_num_classes_skipped']} classes without positives skipped")
    return " | ".join(parts)
