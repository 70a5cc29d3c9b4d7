"""`MultiLabelTrainer`: the `transformers.Trainer` with the weights' EMA evaluated, saved and restored beside the
raw weights, the official optimizers, zero-shot label sets, and checkpoints that are whole or marked incomplete."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager

import numpy as np
import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import rotate_checkpoints

from .checkpoints import INCOMPLETE_MARKER, last_complete_checkpoint, stopped_note
from .ema import EMACallback, _swap_weights, load_ema, save_ema
from .recipe import LabelSet, RecipeArguments, check_recipe, decay_parameter_names

logger = logging.getLogger("hf_mlcls.training")


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
            if not isinstance(err, KeyboardInterrupt):  # Ctrl-C is the user's own doing: the note is enough
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
