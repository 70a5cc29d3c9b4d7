"""`hf-mlcls convert CHECKPOINT --preset NAME [--config config.json] [--labels SET|FILE] OUTPUT_DIR`.

Turns an official Query2Label or ML-Decoder checkpoint into a Hugging Face model folder
(config with label names, safetensors weights, image processor, remote code, model card).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _key_value(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value  # a plain string, e.g. backbone=tresnet_l
    return key.strip(), parsed


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the official file (.pkl, .pth, .pth.tar); loaded with weights_only=True")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder to create (must not exist, or be empty)")
    parser.add_argument("--preset", required=True,
                        help="a preset (hf_mlcls.list_presets()) or a published checkpoint name from the table below")
    parser.add_argument("--config", dest="config_file", default=None,
                        help="Query2Label's config.json (training arguments); default: config.json or config_new.json "
                             "beside the checkpoint. Overrides the preset; checked against the weights")
    parser.add_argument("--labels", default=None,
                        help="label names: coco, voc, nus-wide, openimages, stanford-cars, or a file (.txt one name per "
                             "line, .json list or {index: name}, .csv with the name in the last column); default: "
                             "the checkpoint's own set (names not shipped here become LABEL_i, with a warning)")
    parser.add_argument("--label-embeddings", default=None, metavar="FILE",
                        help="zero-shot ML-Decoder: the (num_labels, 300) label word vectors (torch or safetensors file)")
    parser.add_argument("--set", dest="overrides", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="set a config field last (value parsed as JSON), e.g. --set image_size=384; repeatable")
    parser.add_argument("--repo-id", default=None, help="the Hub repository the model card's code snippets name")
    parser.add_argument("--backbone-only", action="store_true",
                        help="ML-Decoder pretraining files: write only the backbone (backbone.safetensors, timm layout)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip reloading the written folder to compare its logits with the converted model")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR (only once conversion succeeded)")


def run(args) -> int:
    from ..paths import check_writable_folder

    check_writable_folder(args.output_dir, "OUTPUT_DIR")  # before the checkpoint is read
    from ..convert import convert_checkpoint

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    result = convert_checkpoint(
        args.checkpoint,
        args.output_dir,
        args.preset,
        config_file=args.config_file,
        labels=args.labels,
        label_embeddings=args.label_embeddings,
        overrides=dict(args.overrides),
        repo_id=args.repo_id,
        overwrite=args.overwrite,
        verify=args.verify,
        backbone_only=args.backbone_only,
    )
    print(result.summary(), file=sys.stderr)
    return 0


def register(subparsers) -> None:
    from ..convert.checkpoints import checkpoint_table

    parser = subparsers.add_parser(
        "convert",
        help="convert an official Query2Label / ML-Decoder checkpoint",
        description=__doc__,
        epilog=checkpoint_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
