"""The arguments of examples/train.py beside the Trainer's own: which model, which data, zero-shot, output folder.

`RecipeArguments` (the training recipe) lives in `recipe`; examples/train.py parses all of them with one
`HfArgumentParser` and checks paths and values before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelArguments:
    model: str = field(
        default="q2l-r101-448",
        metadata={"help": "a preset (hf_mlcls.list_presets()), a saved model folder or a Hub id"},
    )
    model_overrides: str | None = field(
        default=None, metadata={"help": "JSON object of config fields to change, e.g. '{\"backbone\": \"resnet50\"}'"}
    )
    pretrained_backbone: bool = field(default=False, metadata={"help": "start from the backbone's pretrained weights"})
    backbone_weights_file: str | None = field(default=None, metadata={"help": "local backbone weights (offline start)"})


@dataclass
class DataArguments:
    dataset: str = field(default="demo", metadata={"help": "a name from hf_mlcls.data.list_datasets()"})
    data_dir: str | None = field(default=None, metadata={"help": "the dataset's root folder"})
    dataset_options: str | None = field(default=None, metadata={"help": "JSON object of loader options"})
    train_split: str = field(default="train")
    eval_split: str = field(default="validation")
    cutout: bool = field(default=True, metadata={"help": "Cutout (half the image side), as both official recipes"})
    randaugment: bool = field(default=True, metadata={"help": "RandAugment, as both official recipes"})
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)


@dataclass
class ZeroShotArguments:
    """Zero-shot ML-Decoder: train on the seen labels' embeddings, evaluate on unseen (ZSL) and all (GZSL) labels."""

    zero_shot: bool = field(
        default=False,
        metadata={"help": "zero-shot training; on by default for a zero-shot model or the nus-wide-zsl dataset"},
    )
    unseen_labels: list[str] | None = field(
        default=None,
        metadata={"help": "class names to hold out of training (any dataset); nus-wide-zsl has its own split"},
    )
    text_encoder: str | None = field(
        default=None,
        metadata={
            "help": "what embeds the label names: a word-vector file (GloVe text or wordvec_array.pth), a "
            "transformers folder or Hub id; default: <data_dir>/wordvec_array.pth for nus-wide-zsl, else the "
            "model's config.text_encoder, else all-MiniLM-L6-v2"
        },
    )
    gzsl: bool = field(default=True, metadata={"help": "also evaluate on all labels (GZSL), beside the unseen ones (ZSL)"})


@dataclass
class OutputArguments:
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "train into an --output_dir that already holds a model or a run, replacing its files "
                  "(without it such a folder is refused, unless --resume_from_checkpoint continues that run)"},
    )


