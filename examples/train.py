#!/usr/bin/env python
"""Train a Query2Label or ML-Decoder model with the HF Trainer.

    accelerate launch examples/train.py                                  # the demo: small model, built-in data
    accelerate launch examples/train.py examples/configs/q2l-r101-448-coco.yaml --data_dir /data/coco
    accelerate launch examples/train.py --model q2l-r101-448 --dataset coco2014 --data_dir /data/coco ...
    accelerate launch examples/train.py examples/configs/mldecoder-nuswide-zsl.yaml --data_dir /data/nus-wide   # zero-shot
    accelerate launch examples/train.py examples/configs/mldecoder-r50-imagenet-a2.yaml --data_dir /data/imagenet   # single-label

A YAML/JSON file gives the defaults; any argument on the command line overrides it.
With no arguments at all, `examples/configs/demo.yaml` is used.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import transformers
import yaml
from transformers import AutoConfig, AutoModelForImageClassification, EarlyStoppingCallback, HfArgumentParser, TrainingArguments

import hf_mlcls
from hf_mlcls.cli import run_user_command
from hf_mlcls.data import MultiLabelCollator, apply_transforms, list_datasets, load_multilabel_dataset, transforms_from_image_processor
from hf_mlcls.data.registry import find_dataset
from hf_mlcls.data.single_label import is_single_label
from hf_mlcls.metrics import compute_metrics, compute_zsl_metrics
from hf_mlcls.errors import UserError
from hf_mlcls.training import (
    LabelSet,
    MultiLabelTrainer,
    OutputDirLock,
    RecipeArguments,
    check_output_dir,
    check_recipe,
    check_writable_folder,
    freeze_backbone_layers,
)
from hf_mlcls.training.arguments import DataArguments, ModelArguments, OutputArguments, ZeroShotArguments
from hf_mlcls.training.reports import write_eval_json, write_single_label_json, write_zero_shot_json
from hf_mlcls.training_single import SingleLabelArguments

logger = logging.getLogger("hf_mlcls.train")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = os.path.join(HERE, "configs", "demo.yaml")


def parse_all_args(argv: list[str]):
    """(ModelArguments, DataArguments, RecipeArguments, TrainingArguments, ZeroShotArguments, SingleLabelArguments,
    OutputArguments). A bad value is a ``UserError`` naming it (argparse's own usage errors exit with status 2)."""
    parser = HfArgumentParser((ModelArguments, DataArguments, RecipeArguments, TrainingArguments, ZeroShotArguments,
                               SingleLabelArguments, OutputArguments))
    config_file = DEFAULT_CONFIG if not argv else None
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        config_file, argv = argv[0], argv[1:]
    if config_file:
        if not os.path.isfile(config_file):
            raise UserError(f"argument file {config_file!r} does not exist (the recipes are in examples/configs/)")
        try:
            with open(config_file, encoding="utf-8") as fh:
                defaults = yaml.safe_load(fh) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise UserError(f"{config_file}: not valid YAML/JSON: {' '.join(str(err).split())}") from None
        if not isinstance(defaults, dict):
            raise UserError(f"{config_file}: must hold a mapping of argument names to values, not a {type(defaults).__name__}")
        known = {f.dest for f in parser._actions}
        unknown = sorted(str(k) for k in set(defaults) - known)
        if unknown:
            raise UserError(f"{config_file}: unknown argument(s) {unknown}")
        # mapping-valued options are JSON strings on the command line
        defaults = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in defaults.items()}
        parser.set_defaults(**defaults)
        for action in parser._actions:  # a value from the file satisfies a required argument
            if action.dest in defaults:
                action.required = False
    try:
        return parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:  # a dataclass's own check (RecipeArguments, TrainingArguments) refused a value
        raise UserError(" ".join(str(err).split())) from None


def _json_object(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--{flag}: not valid JSON ({err.msg} at column {err.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise UserError(f"--{flag} must be a JSON object like '{{\"key\": value}}', got {text!r}")
    return value


def resume_value(training_args: TrainingArguments):
    """``--resume_from_checkpoint`` as the trainer takes it: True (the last complete checkpoint), a path, or None."""
    resume = training_args.resume_from_checkpoint
    if isinstance(resume, str) and resume.strip().lower() in ("true", "last"):
        return True
    if isinstance(resume, str) and resume.strip().lower() in ("", "false", "none"):
        return None
    return resume


def check_args(model_args: ModelArguments, data_args: DataArguments, recipe: RecipeArguments,
               zs_args: ZeroShotArguments | None = None, training_args: TrainingArguments | None = None,
               output_args: OutputArguments | None = None) -> None:
    """Refuse bad argument values before any data is read or model built: a ``UserError`` naming the
    argument. The recipe's own values are checked when it is parsed (``RecipeArguments.__post_init__``);
    here, the rest, the recipe against the training arguments (``check_recipe``), the model and
    backbone files, and the output folder (``check_output_dir``: not a file, not another run's)."""

    def refuse(message: str) -> None:
        raise UserError(message)

    _json_object(model_args.model_overrides, "model_overrides")
    _json_object(data_args.dataset_options, "dataset_options")
    spec = find_dataset(data_args.dataset)
    if spec is None or spec.loader is None:
        refuse(f"--dataset {data_args.dataset!r} is not a dataset; available: {', '.join(list_datasets())}")
    if data_args.data_dir is None and spec.needs_data_dir:
        refuse(f"--data_dir is required for --dataset {data_args.dataset!r} (the dataset's root folder)")
    for flag in ("max_train_samples", "max_eval_samples"):
        value = getattr(data_args, flag)
        if value is not None and value < 1:
            refuse(f"--{flag} must be >= 1 (leave it out for every sample), got {value}")
    if training_args is not None:
        try:
            check_recipe(recipe, training_args)  # each value of the recipe was checked when it was parsed
        except ValueError as err:
            refuse(str(err))
    if zs_args is not None and zs_args.unseen_labels is not None:
        empty = [n for n in zs_args.unseen_labels if not n.strip()]
        if not zs_args.unseen_labels or empty:
            refuse(f"--unseen_labels must list class names, got {zs_args.unseen_labels!r}")
    check_model_arg(model_args)
    if training_args is not None:
        try:
            if training_args.do_train:
                overwrite = bool(output_args and output_args.overwrite_output_dir)
                check_output_dir(training_args.output_dir, overwrite=overwrite, resume=resume_value(training_args))
            else:
                check_writable_folder(training_args.output_dir, "--output_dir")
        except ValueError as err:
            refuse(str(err))


def check_model_arg(model_args: ModelArguments) -> None:
    """--model: a preset, a model folder (with a config.json of ours), or a Hub id (checked when loaded);
    --backbone_weights_file: an existing file."""
    name = model_args.model
    if not name or not name.strip():
        raise UserError("--model is empty; give a preset (hf_mlcls.list_presets()), a model folder or a Hub id")
    weights = model_args.backbone_weights_file
    if weights is not None and not os.path.isfile(weights):
        raise UserError(f"--backbone_weights_file {weights!r} is not a file")
    if name in hf_mlcls.list_presets():
        return
    looks_local = os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") != 1 or os.path.exists(name)
    if not looks_local:
        return  # owner/name: a Hub id
    if not os.path.isdir(name):
        kind = "a file, not a model folder" if os.path.exists(name) else "neither a preset nor a folder here"
        raise UserError(f"--model {name!r} is {kind}; presets: {', '.join(hf_mlcls.list_presets())}")
    config_path = os.path.join(name, "config.json")
    try:
        with open(config_path, encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
    except FileNotFoundError:
        raise UserError(f"--model {name!r}: the folder has no config.json; give a folder save_pretrained wrote") from None
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"--model {name!r}: its config.json cannot be read ({' '.join(str(err).split())[:200]})") from None
    if model_type not in ("query2label", "ml_decoder"):
        raise UserError(f"--model {name!r} is a {model_type!r} model (config.json model_type); give a Query2Label or "
                        "ML-Decoder folder or preset")


def parse_args(argv: list[str]):
    """(ModelArguments, DataArguments, RecipeArguments, TrainingArguments); see `parse_all_args` for zero-shot."""
    return tuple(parse_all_args(argv)[:4])


def build_model(model_args: ModelArguments, id2label: dict[int, str], preset_defaults: dict | None = None):
    """`preset_defaults`: config fields a preset gets unless `model_overrides` sets them (zero-shot: the encoder's width)."""
    overrides = json.loads(model_args.model_overrides) if model_args.model_overrides else {}
    if model_args.backbone_weights_file:
        overrides["backbone_weights_file"] = model_args.backbone_weights_file
    if model_args.model in hf_mlcls.list_presets():
        return hf_mlcls.create_model(
            model_args.model,
            pretrained_backbone=model_args.pretrained_backbone,
            id2label=id2label,
            **{**(preset_defaults or {}), **overrides},
        )
    config = AutoConfig.from_pretrained(model_args.model, **overrides)
    same_labels = config.id2label == id2label
    return AutoModelForImageClassification.from_pretrained(
        model_args.model,
        config=config if same_labels else None,
        **({} if same_labels else dict(num_labels=len(id2label), id2label=id2label, ignore_mismatched_sizes=True, **overrides)),
    )


def _holds_out_labels(dataset: str) -> bool:
    """The dataset has its own seen/unseen label split (nus-wide-zsl)."""
    spec = find_dataset(dataset)
    return spec is not None and spec.zero_shot


def zero_shot_wanted(model_args: ModelArguments, data_args: DataArguments, zs_args: ZeroShotArguments) -> bool:
    if zs_args.zero_shot or zs_args.unseen_labels or _holds_out_labels(data_args.dataset):
        return True
    overrides = json.loads(model_args.model_overrides) if model_args.model_overrides else {}
    if "zero_shot" in overrides:
        return bool(overrides["zero_shot"])
    if model_args.model in hf_mlcls.list_presets():
        config = hf_mlcls.preset_config(model_args.model)
    elif os.path.isdir(model_args.model):
        config = AutoConfig.from_pretrained(model_args.model)
    else:
        return False
    return bool(getattr(config, "zero_shot", False))


def prepare_zero_shot(dataset, model_args: ModelArguments, data_args: DataArguments, zs_args: ZeroShotArguments):
    """(dataset, text encoder, held_out): the zero-shot splits (train / zsl / gzsl) when labels are held out
    (--unseen_labels, or a dataset that has them), and the encoder that embeds the label names."""
    from hf_mlcls.data.nuswide_zsl import GZSL, ZSL, zero_shot_splits
    from hf_mlcls.models.text_encoding import get_text_encoder

    held_out = {ZSL, GZSL} <= set(dataset)
    if not held_out and zs_args.unseen_labels:
        dataset = zero_shot_splits(dataset, zs_args.unseen_labels, train_split=data_args.train_split, eval_split=data_args.eval_split)
        held_out = True
    spec = zs_args.text_encoder
    word_vectors = getattr(find_dataset(data_args.dataset), "word_vectors", None)
    if spec is None and word_vectors and data_args.data_dir:
        spec = os.path.join(data_args.data_dir, word_vectors)  # the benchmark's own word vectors
    if spec is None and model_args.model not in hf_mlcls.list_presets():
        spec = getattr(AutoConfig.from_pretrained(model_args.model), "text_encoder", None)
    return dataset, get_text_encoder(spec), held_out


def parse_and_check(argv: list[str]):
    """The parsed arguments (as `parse_all_args`), every check done that needs no data and no model:
    a bad one is a ``UserError`` naming it."""
    parsed = parse_all_args(argv)
    model_args, data_args, recipe, training_args, zs_args, sl_args, output_args = parsed
    if not (training_args.do_train or training_args.do_eval):
        raise UserError(
            "nothing to do: pass --do_train true and/or --do_eval true (the recipes in examples/configs/ "
            "set both; with no arguments at all the demo recipe runs)"
        )
    check_args(model_args, data_args, recipe, zs_args, training_args, output_args)
    try:
        sl_args.check()
    except SystemExit as err:  # hf_mlcls.training_single says "train.py: ..." and stops; here it is one user error
        if not isinstance(err.code, str):
            raise
        raise UserError(err.code.removeprefix("train.py: ")) from None
    return parsed


def main(argv: list[str] | None = None) -> dict:
    """Check the arguments, lock the output folder (a training run, on the main process), then train and/or
    evaluate. Bad arguments raise ``UserError`` before any data is read; `cli` turns them into one line."""
    parsed = parse_and_check(sys.argv[1:] if argv is None else argv)
    training_args = parsed[3]
    if training_args.do_train and training_args.process_index == 0:
        lock = OutputDirLock(training_args.output_dir)
        try:
            lock.acquire()  # two runs into one folder at once: the second stops here
        except ValueError as err:
            raise UserError(str(err)) from None
        try:
            return run(*parsed[:6])
        finally:
            lock.release()
    return run(*parsed[:6])


def run(model_args: ModelArguments, data_args: DataArguments, recipe: RecipeArguments, training_args: TrainingArguments,
        zs_args: ZeroShotArguments, sl_args: SingleLabelArguments) -> dict:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity_warning()
    transformers.set_seed(training_args.seed)

    options = json.loads(data_args.dataset_options) if data_args.dataset_options else {}
    with training_args.main_process_first(desc="loading the dataset"):
        dataset = load_multilabel_dataset(data_args.dataset, data_args.data_dir, **options)
    if is_single_label(dataset):
        if zs_args.zero_shot or zs_args.unseen_labels:
            raise UserError(f"zero-shot training needs multi-label data; {data_args.dataset!r} is single-label")
        return train_single_label(dataset, model_args, data_args, recipe, training_args, sl_args)
    zero_shot = zero_shot_wanted(model_args, data_args, zs_args)
    encoder, held_out = None, False  # held_out: evaluate on unseen (zsl) and all (gzsl) labels
    if zero_shot:
        dataset, encoder, held_out = prepare_zero_shot(dataset, model_args, data_args, zs_args)
    if held_out:
        data_args.train_split = "train"
        eval_splits = ["zsl", "gzsl"] if zs_args.gzsl else ["zsl"]
    else:
        eval_splits = [data_args.eval_split]
    for split in (data_args.train_split, *eval_splits):
        if split not in dataset:
            raise UserError(f"split {split!r} not in dataset {data_args.dataset!r} (it has {list(dataset)})")
    class_names = dataset[data_args.train_split].features["labels"].feature.names
    id2label = dict(enumerate(class_names))

    preset_defaults = {"zero_shot": True, "label_embedding_dim": encoder.dim} if zero_shot else None
    model = build_model(model_args, id2label, preset_defaults)
    label_sets = {}
    if zero_shot:
        from hf_mlcls.models.text_encoding import encode_label_names

        if not getattr(model.config, "zero_shot", False):
            raise UserError(f"zero-shot training needs a zero-shot ML-Decoder; {model_args.model!r} is not one")
        model.set_label_names(class_names, text_encoder=encoder)  # the seen labels; records the encoder's name
        for split in eval_splits if held_out else []:
            names = dataset[split].features["labels"].feature.names
            label_sets[split] = LabelSet(names, encode_label_names(names, encoder))
        logger.info("zero-shot: %d labels to train on%s; text encoder %s", len(class_names),
                    "".join(f", {s} evaluated on {len(label_sets[s].names)} labels" for s in label_sets), encoder.name)
    if recipe.backbone_trainable_layers or recipe.freeze_backbone:
        frozen = freeze_backbone_layers(model, recipe.backbone_trainable_layers, recipe.freeze_backbone)
        logger.info("froze %d backbone parameter tensors", frozen)

    train_set = dataset[data_args.train_split]
    eval_sets = {split: dataset[split] for split in eval_splits}
    if data_args.max_train_samples:
        train_set = train_set.select(range(min(data_args.max_train_samples, len(train_set))))
    if data_args.max_eval_samples:
        eval_sets = {k: v.select(range(min(data_args.max_eval_samples, len(v)))) for k, v in eval_sets.items()}
    processor = model.build_image_processor()
    train_tf = transforms_from_image_processor(processor, train=True, cutout=data_args.cutout, randaugment=data_args.randaugment)
    train_set = apply_transforms(train_set, train_tf)
    eval_tf = transforms_from_image_processor(processor, train=False)
    eval_sets = {k: apply_transforms(v, eval_transform=eval_tf) for k, v in eval_sets.items()}
    eval_set = eval_sets if held_out else eval_sets[data_args.eval_split]

    push = training_args.push_to_hub
    training_args.push_to_hub = False  # one commit at the end, with our card (hf_mlcls.hub), not one per checkpoint
    training_args.remove_unused_columns = False  # rows are built lazily by with_transform
    training_args.label_names = ["labels"]
    callbacks = []
    if recipe.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    trainer = MultiLabelTrainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=MultiLabelCollator(),
        compute_metrics=compute_zsl_metrics if held_out else compute_metrics,
        # no processing_class: model.save_pretrained writes the image processor itself (the Trainer would write it again)
        callbacks=callbacks,
        recipe=recipe,
        eval_label_sets=label_sets or None,
    )
    result = {}
    if training_args.do_train:
        resume = resume_value(training_args)  # True: the newest completely written checkpoint in output_dir
        train_output = trainer.train(resume_from_checkpoint=resume)
        trainer.log_metrics("train", train_output.metrics)
        trainer.save_metrics("train", train_output.metrics)
        trainer.use_final_weights()  # the EMA, or with --final_weights better the better of raw and EMA (of the best checkpoint, if one was chosen)
        trainer.save_model()
        trainer.save_state()
    if training_args.do_eval:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        result = metrics
        if trainer.is_world_process_zero() and held_out:
            for split, ds in eval_sets.items():
                kind = "unseen labels (ZSL)" if split == "zsl" else "all labels (GZSL)"
                print(f"{split.upper()} mAP of the saved model on {kind}, {len(label_sets[split].names)} labels, {len(ds)} images: "
                      f"{metrics[f'eval_{split}_mAP']:.2f} (F1@3 {metrics[f'eval_{split}_F1_top3']:.2f}, "
                      f"F1@5 {metrics[f'eval_{split}_F1_top5']:.2f})", flush=True)
            write_zero_shot_json(training_args.output_dir, model_args.model, data_args, encoder.name, eval_sets, label_sets, metrics)
        elif trainer.is_world_process_zero():
            print(f"held-out mAP of the saved model ({len(eval_set)} images): {metrics['eval_mAP']:.2f}", flush=True)
            write_eval_json(training_args.output_dir, model_args.model, data_args, len(eval_set), metrics)
    if push and trainer.is_world_process_zero():
        from hf_mlcls.hub import push_to_hub

        repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
        push_to_hub(training_args.output_dir, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo))
    return result


# ---- single-label data (ImageNet, CIFAR-100, Stanford Cars): kept apart from the multi-label path ----


def train_single_label(dataset, model_args: ModelArguments, data_args: DataArguments, recipe: RecipeArguments,
                       training_args: TrainingArguments, sl_args: SingleLabelArguments) -> dict:
    """Train and/or evaluate on rows ``{"image", "label"}``: the model gets
    ``problem_type="single_label_classification"``, timm's transforms, mixup/CutMix, loss, optimizer and
    sampler come from ``sl_args`` (hf_mlcls.training_single), and evaluation reports top-1/top-5."""
    from hf_mlcls.metrics_single import compute_single_label_metrics
    from hf_mlcls.training_single import SingleLabelCollator, SingleLabelTrainer, single_label_transforms

    for split in (data_args.train_split, data_args.eval_split):
        if split not in dataset:
            raise UserError(f"split {split!r} not in dataset {data_args.dataset!r} (it has {list(dataset)})")
    class_names = dataset[data_args.train_split].features["label"].names
    model = build_model(model_args, dict(enumerate(class_names)), {"problem_type": "single_label_classification"})
    model.config.problem_type = "single_label_classification"  # a saved multi-label model becomes a single-label one
    if recipe.backbone_trainable_layers or recipe.freeze_backbone:
        frozen = freeze_backbone_layers(model, recipe.backbone_trainable_layers, recipe.freeze_backbone)
        logger.info("froze %d backbone parameter tensors", frozen)
    train_set, eval_set = dataset[data_args.train_split], dataset[data_args.eval_split]
    if data_args.max_train_samples:
        train_set = train_set.select(range(min(data_args.max_train_samples, len(train_set))))
    if data_args.max_eval_samples:
        eval_set = eval_set.select(range(min(data_args.max_eval_samples, len(eval_set))))
    train_tf, eval_tf = single_label_transforms(model.config, sl_args)
    train_set, eval_set = train_set.with_transform(train_tf), eval_set.with_transform(eval_tf)

    push = training_args.push_to_hub
    training_args.push_to_hub = False
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    callbacks = [EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience)] if recipe.early_stopping_patience else []
    trainer = SingleLabelTrainer(
        model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set, data_collator=SingleLabelCollator(),
        compute_metrics=compute_single_label_metrics, processing_class=model.build_image_processor(), callbacks=callbacks,
        recipe=recipe, single_label=sl_args,
    )
    result = {}
    if training_args.do_train:
        resume = resume_value(training_args)
        train_output = trainer.train(resume_from_checkpoint=resume)
        trainer.log_metrics("train", train_output.metrics)
        trainer.save_metrics("train", train_output.metrics)
        trainer.use_ema_weights()
        trainer.save_model()
        trainer.save_state()
    if training_args.do_eval:
        result = trainer.evaluate()
        trainer.log_metrics("eval", result)
        trainer.save_metrics("eval", result)
        if trainer.is_world_process_zero():
            print(f"held-out top-1 of the saved model ({len(eval_set)} images): {result['eval_top1']:.2f} "
                  f"(top-5 {result['eval_top5']:.2f})", flush=True)
            write_single_label_json(training_args.output_dir, model_args.model, data_args, len(eval_set), result)
    if push and trainer.is_world_process_zero():
        from hf_mlcls.hub import push_to_hub

        repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(training_args.output_dir))
        push_to_hub(training_args.output_dir, repo_id, token=training_args.hub_token, private=bool(training_args.hub_private_repo))
    return result


def cli(argv: list[str] | None = None) -> int:
    """The command line: bad input is one line ``train.py: error: ...`` and exit status 2 (through the CLI's
    error boundary; HF_MLCLS_TRACEBACK=1 shows the traceback); Ctrl-C is one line saying where the last
    checkpoint is, exit status 130."""
    return run_user_command("train.py", lambda: main(argv) and 0)


if __name__ == "__main__":
    sys.exit(cli())
