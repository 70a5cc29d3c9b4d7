"""Official Query2Label checkpoints (SlongLiu/query2labels) -> `Query2LabelForImageClassification`.

The official file is `{"state_dict": ...}` (plus `epoch`, `arch`, `best_mAP`, `optimizer` in
training checkpoints), keys prefixed `module.` when the DDP model was saved and bare when the
EMA model was. Its `config.json` (the argparse dict of `main_mlc.py`) sets the Transformer; it
overrides the preset, and every value that the weights pin (widths, layer counts, flags,
input size, class count) is checked against the weights.

Key layout (after `module.` is stripped):

    backbone.0.<backbone>     ResNet / TResNet: `body.` + the network's keys; Swin, CvT: the network's keys
    backbone.1.pe             the sine table for img_size: recomputed by our model, checked, dropped
    input_proj.*              only with keep_input_proj
    transformer.encoder.layers.N.* / .norm.*     -> model.transformer.encoder_layers.N.* / encoder_norm.*
    transformer.decoder.layers.N.* / .norm.*     -> model.transformer.decoder_layers.N.* / decoder_norm.*
    query_embed.weight        -> model.query_embed.weight
    fc.W, fc.b                -> classifier.W, classifier.b

Backbone keys go through timm's own checkpoint filters (TResNet: InPlaceABN -> BatchNorm,
`|w| + 1e-5`; Swin: downsample moved to the start of the next stage, index/mask buffers
dropped), ResNet keys are torchvision's and timm's alike, and CvT keys are renamed to
transformers' `CvtModel` layout.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re

from torch import Tensor

from ..models.layers import sine_position_encoding
from .common import ConversionError, KeyMap

logger = logging.getLogger(__name__)

#: Query2Label's `--backbone` names -> the architecture our preset builds (timm name, or "cvt").
OFFICIAL_BACKBONES = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "tresnetl": "tresnet_l",
    "tresnetxl": "tresnet_xl",
    "tresnetl_v2": "tresnet_v2_l",
    "swin_B_224_22k": "swin_base_patch4_window7_224",
    "swin_B_384_22k": "swin_base_patch4_window12_384",
    "swin_L_224_22k": "swin_large_patch4_window7_224",
    "swin_L_384_22k": "swin_large_patch4_window12_384",
    "CvT_w24": "cvt",
}

#: config.json fields -> Query2LabelConfig fields.
CONFIG_FIELDS = {
    "hidden_dim": "hidden_dim",
    "dim_feedforward": "dim_feedforward",
    "enc_layers": "num_encoder_layers",
    "dec_layers": "num_decoder_layers",
    "nheads": "num_heads",
    "dropout": "dropout",
    "pre_norm": "pre_norm",
    "keep_input_proj": "keep_input_proj",
    "keep_first_self_attn_dec": "keep_first_self_attn_dec",
    "keep_other_self_attn_dec": "keep_other_self_attn_dec",
    "img_size": "image_size",
}

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# CvT: official (Microsoft) module names -> transformers CvtModel names.
_CVT_RULES = [
    (r"stage(\d+)\.patch_embed\.proj\.(.+)", r"encoder.stages.\1.embedding.convolution_embeddings.projection.\2"),
    (r"stage(\d+)\.patch_embed\.norm\.(.+)", r"encoder.stages.\1.embedding.convolution_embeddings.normalization.\2"),
    (r"stage(\d+)\.cls_token", r"encoder.stages.\1.cls_token"),
    (r"stage(\d+)\.blocks\.(\d+)\.norm1\.(.+)", r"encoder.stages.\1.layers.\2.layernorm_before.\3"),
    (r"stage(\d+)\.blocks\.(\d+)\.norm2\.(.+)", r"encoder.stages.\1.layers.\2.layernorm_after.\3"),
    (r"stage(\d+)\.blocks\.(\d+)\.attn\.conv_proj_([qkv])\.conv\.(.+)",
     r"encoder.stages.\1.layers.\2.attention.attention.convolution_projection_<\3>.convolution_projection.convolution.\4"),
    (r"stage(\d+)\.blocks\.(\d+)\.attn\.conv_proj_([qkv])\.bn\.(.+)",
     r"encoder.stages.\1.layers.\2.attention.attention.convolution_projection_<\3>.convolution_projection.normalization.\4"),
    (r"stage(\d+)\.blocks\.(\d+)\.attn\.proj_([qkv])\.(.+)", r"encoder.stages.\1.layers.\2.attention.attention.projection_<\3>.\4"),
    (r"stage(\d+)\.blocks\.(\d+)\.attn\.proj\.(.+)", r"encoder.stages.\1.layers.\2.attention.output.dense.\3"),
    (r"stage(\d+)\.blocks\.(\d+)\.mlp\.fc1\.(.+)", r"encoder.stages.\1.layers.\2.intermediate.dense.\3"),
    (r"stage(\d+)\.blocks\.(\d+)\.mlp\.fc2\.(.+)", r"encoder.stages.\1.layers.\2.output.dense.\3"),
]
_QKV = {"<q>": "query", "<k>": "key", "<v>": "value"}

# Everything after the backbone, official name -> ours.
_HEAD_RULES = [
    (r"input_proj\.(weight|bias)", r"model.input_proj.\1"),
    (r"transformer\.encoder\.layers\.(\d+)\.(.+)", r"model.transformer.encoder_layers.\1.\2"),
    (r"transformer\.encoder\.norm\.(weight|bias)", r"model.transformer.encoder_norm.\1"),
    (r"transformer\.decoder\.layers\.(\d+)\.(.+)", r"model.transformer.decoder_layers.\1.\2"),
    (r"transformer\.decoder\.norm\.(weight|bias)", r"model.transformer.decoder_norm.\1"),
    (r"query_embed\.weight", r"model.query_embed.weight"),
    (r"fc\.(W|b)", r"classifier.\1"),
]


def read_official_config(path: str) -> dict:
    """The argparse dict Query2Label writes as `config.json` (q2l_infer.py reads the same file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as err:
        raise ConversionError(f"config file {path!r} does not exist") from err
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConversionError(f"cannot read Query2Label config {path!r}: {err}") from err
    if not isinstance(data, dict):
        raise ConversionError(f"Query2Label config {path!r} must be a JSON object (the training arguments)")
    return data


def find_official_config(checkpoint: str) -> str | None:
    """`config.json` or `config_new.json` beside the checkpoint (the released folders hold one)."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    for name in ("config.json", "config_new.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


# ----------------------------------------------------------------------------- what the weights pin


def infer_structure(sd: dict[str, Tensor]) -> dict:
    """Transformer settings readable from the weights alone (official key names, `module.` stripped)."""
    found: dict = {}
    if "query_embed.weight" in sd:
        found["num_class"], found["hidden_dim"] = (int(n) for n in sd["query_embed.weight"].shape)
    enc = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.encoder\.layers\.(\d+)\.", k))}
    dec = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.decoder\.layers\.(\d+)\.", k))}
    found["enc_layers"] = max(enc) + 1 if enc else 0
    if dec:
        found["dec_layers"] = max(dec) + 1
        found["keep_first_self_attn_dec"] = "transformer.decoder.layers.0.self_attn.in_proj_weight" in sd
        if found["dec_layers"] > 1:
            found["keep_other_self_attn_dec"] = "transformer.decoder.layers.1.self_attn.in_proj_weight" in sd
    if "transformer.decoder.layers.0.linear1.weight" in sd:
        found["dim_feedforward"] = int(sd["transformer.decoder.layers.0.linear1.weight"].shape[0])
    found["pre_norm"] = "transformer.encoder.norm.weight" in sd
    found["keep_input_proj"] = "input_proj.weight" in sd
    return found


def _downsample_ratio(official_backbone: str | None, config) -> int:
    if official_backbone is not None:
        return 16 if official_backbone == "CvT_w24" else 32
    return 16 if config.backbone_source == "transformers" else 32


def build_config_kwargs(official: dict | None, sd: dict[str, Tensor], *, where: str) -> tuple[dict, list[str]]:
    """Query2LabelConfig overrides from the official config.json, checked against the weights."""
    inferred = infer_structure(sd)
    kwargs: dict = {}
    notes: list[str] = []
    problems: list[str] = []
    if official is not None:
        for src, dst in CONFIG_FIELDS.items():
            if src in official:
                kwargs[dst] = official[src]
        if "num_class" in official:
            kwargs["num_labels"] = int(official["num_class"])
        if "orid_norm" in official:
            if official["orid_norm"]:
                kwargs["image_mean"], kwargs["image_std"] = None, None
            else:
                kwargs["image_mean"], kwargs["image_std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
        if official.get("position_embedding", "sine") != "sine":
            problems.append(f"position_embedding {official['position_embedding']!r} (only 'sine' exists officially)")
        # Every structural value must agree with the weights.
        for src, value in inferred.items():
            if src == "num_class":
                stated = official.get("num_class")
            elif src in ("keep_first_self_attn_dec", "keep_other_self_attn_dec", "pre_norm", "keep_input_proj"):
                stated = bool(official.get(src, False))
            else:
                stated = official.get(src)
            if stated is not None and stated != value:
                problems.append(f"{src}: config says {stated!r}, the weights say {value!r}")
        if problems:
            raise ConversionError(f"{where} does not match the checkpoint: " + "; ".join(problems))
    else:
        for src, value in inferred.items():
            if src == "num_class":
                kwargs["num_labels"] = value
            elif src in CONFIG_FIELDS:
                kwargs[CONFIG_FIELDS[src]] = value
        notes.append("no config.json: Transformer settings read from the weights; num_heads, dropout, "
                     "input size and normalisation come from the preset (pass --config to set them)")
    if kwargs.get("pre_norm") and not (kwargs.get("keep_first_self_attn_dec") and kwargs.get("keep_other_self_attn_dec", True)):
        notes.append("pre_norm without every decoder self-attention: the official code cannot run this model "
                     "(AttributeError); ours runs it without the removed blocks")
    return kwargs, notes


def check_backbone(official: dict | None, config, preset: str) -> str | None:
    """The official backbone name, after checking that the preset builds the same architecture."""
    if official is None or "backbone" not in official:
        return None
    name = official["backbone"]
    expected = OFFICIAL_BACKBONES.get(name)
    if expected is None:
        raise ConversionError(f"config.json backbone {name!r} is not one Query2Label builds "
                              f"({', '.join(sorted(OFFICIAL_BACKBONES))})")
    if expected == "cvt":
        model_type = (config.backbone_config or {}).get("model_type") if config.backbone_source == "transformers" else None
        ok = model_type == "cvt"
        ours = f"{config.backbone_source}:{config.backbone}"
    else:
        ours = str(config.backbone).split(".")[0]
        ok = config.backbone_source == "timm" and ours == expected
    if not ok:
        raise ConversionError(
            f"the checkpoint's config.json says backbone {name!r} ({expected}), but preset {preset!r} builds {ours!r}; "
            "choose the preset of that backbone (see `hf-mlcls convert --help`)"
        )
    return name


# ----------------------------------------------------------------------------- key mapping


def _backbone_family(config) -> str:
    if config.backbone_source == "transformers":
        return "cvt"
    arch = str(config.backbone).split(".")[0]
    if arch.startswith("tresnet"):
        return "tresnet"
    if arch.startswith("swin"):
        return "swin"
    if arch.startswith("resnet"):
        return "resnet"
    return "timm"


def _map_cvt_key(key: str) -> str | None:
    if key.startswith("norm."):
        return key  # the official final LayerNorm: OfficialCvt.norm
    for pattern, repl in _CVT_RULES:
        if re.fullmatch(pattern, key):
            out = re.sub(pattern, repl, key)
            for tag, word in _QKV.items():
                out = out.replace(tag, word)
            return "cvt." + out
    return None


def map_backbone(bb: dict[str, Tensor], config, model, keymap: KeyMap) -> None:
    """Official `backbone.0.*` keys (prefix removed) -> `model.backbone.model.*`."""
    family = _backbone_family(config)
    prefix = "model.backbone.model."
    timm_model = model.model.backbone.model
    if family in ("resnet", "tresnet"):
        body = {}
        for k, v in bb.items():
            if k.startswith("body."):
                body[k[len("body."):]] = (k, v)
            else:
                keymap.unknown.append("backbone.0." + k)
        if family == "resnet":
            for k, (src, v) in body.items():
                if k.startswith("fc."):
                    keymap.dropped["backbone.0." + src] = "ImageNet classifier, unused"
                    continue
                keymap.add(prefix + k, "backbone.0." + src, v)
            return
        # TResNet: `body.body.X` in Query2Label; timm's filter wants `body.X`
        filtered = tresnet_filter({k: v for k, (_, v) in body.items()}, timm_model)
        for orig, new in paired_renames(list(body), filtered):
            keymap.add(prefix + new, "backbone.0." + body[orig][0], filtered[new])
        return
    if family == "swin":
        import timm.models.swin_transformer as swin

        for k in list(bb):
            if k.startswith("head."):
                keymap.dropped["backbone.0." + k] = "ImageNet classifier, deleted by Query2Label"
                bb.pop(k)
        check_swin_shapes(bb, timm_model, keymap)
        kept = [k for k in bb if not any(n in k for n in ("relative_position_index", "attn_mask"))]
        for k in bb:
            if k not in kept:
                keymap.dropped["backbone.0." + k] = "non-persistent buffer, recomputed by timm"
        filtered = swin.checkpoint_filter_fn(dict(bb), timm_model)
        for orig, new in paired_renames(kept, filtered):
            keymap.add(prefix + new, "backbone.0." + orig, filtered[new])
        return
    if family == "cvt":
        for k, v in bb.items():
            if k.startswith("head."):
                keymap.dropped["backbone.0." + k] = "ImageNet classifier, deleted by Query2Label"
                continue
            new = _map_cvt_key(k)
            if new is None:
                keymap.unknown.append("backbone.0." + k)
            else:
                keymap.add(prefix + new, "backbone.0." + k, v)
        return
    for k, v in bb.items():  # any other timm backbone: keys as they are
        keymap.add(prefix + k, "backbone.0." + k, v)


def tresnet_filter(state: dict[str, Tensor], timm_model) -> dict[str, Tensor]:
    """timm's TResNet checkpoint filter: official (InPlaceABN) key names and scales -> timm's BatchNorm layout."""
    import timm.models.tresnet as tresnet

    return tresnet.checkpoint_filter_fn(state, timm_model)


def paired_renames(original: list[str], filtered: dict[str, Tensor]) -> list[tuple[str, str]]:
    """timm's filters rename key by key, in order: pair each kept source key with its new name."""
    new = list(filtered)
    if len(new) != len(original):
        raise ConversionError(f"timm's checkpoint filter returned {len(new)} keys for {len(original)}: "
                              "two source keys collapsed into one")
    return list(zip(original, new))


def check_swin_shapes(bb: dict[str, Tensor], timm_model, keymap: KeyMap) -> None:
    """timm's Swin filter silently resamples a patch embedding or bias table of another size; refuse instead."""
    target = timm_model.state_dict()
    bad = []
    for k, v in bb.items():
        if k == "patch_embed.proj.weight" or k.endswith("relative_position_bias_table"):
            if k in target and tuple(target[k].shape) != tuple(v.shape):
                bad.append(f"backbone.0.{k}: checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)}")
    if bad:
        raise ConversionError("the Swin backbone does not match the checkpoint (patch or window size): " + "; ".join(bad))


def check_position_table(pe: Tensor, config, ratio: int, keymap: KeyMap) -> None:
    """The official `backbone.1.pe` must equal our sine encoding for the config's input size."""
    h = w = config.image_size // ratio
    ours = sine_position_encoding(h, w, config.hidden_dim // 2, temperature=config.position_temperature).unsqueeze(0)
    if tuple(pe.shape) != tuple(ours.shape):
        raise ConversionError(
            f"backbone.1.pe has shape {tuple(pe.shape)} but image_size {config.image_size} and hidden_dim "
            f"{config.hidden_dim} give {tuple(ours.shape)}: the checkpoint was trained at img_size "
            f"{pe.shape[-1] * ratio}; set it with --config (img_size) or --set image_size={pe.shape[-1] * ratio}"
        )
    diff = (pe.float() - ours).abs().max().item()
    if not math.isfinite(diff) or diff > 1e-5:
        raise ConversionError(f"backbone.1.pe differs from the sine encoding Query2Label computes (max abs diff {diff:.3g})")
    keymap.dropped["backbone.1.pe"] = f"sine position table, recomputed on the fly (checked: max abs diff {diff:.1e})"


def map_state_dict(sd: dict[str, Tensor], config, model, ratio: int) -> KeyMap:
    """All official keys (`module.` stripped) -> our model's keys."""
    keymap = KeyMap()
    backbone = {k[len("backbone.0."):]: v for k, v in sd.items() if k.startswith("backbone.0.")}
    map_backbone(backbone, config, model, keymap)
    for key, value in sd.items():
        if key.startswith("backbone.0."):
            continue
        if key == "backbone.1.pe":
            check_position_table(value, config, ratio, keymap)
            continue
        if key.startswith("transformer.encoder.norm.") and config.num_encoder_layers == 0:
            # Built by the official code whenever pre_norm is on, but never run without encoder layers.
            keymap.dropped[key] = "encoder norm without encoder layers: never used"
            continue
        keymap.add_renamed(key, value, _HEAD_RULES)
    return keymap
