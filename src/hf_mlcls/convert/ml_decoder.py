"""Official ML-Decoder checkpoints (Alibaba-MIIL/ML_Decoder) -> `MLDecoderForImageClassification`.

The model zoo files are `{"model": state_dict}` (what `validate.py` / `infer.py` read);
`train.py` itself saves the bare state dict. Keys have no prefix (a `module.` one is stripped
if present). The head's shapes say everything about it, so they are read from the weights:

    body.*                                        TResNet keys -> model.backbone.model.body.* (timm's TResNet filter)
    head.decoder.embed_standart.*                 -> model.input_proj.*            (D, backbone features)
    head.decoder.query_embed.weight               -> model.query_embed.weight      (K, D), absent in zero-shot
    head.decoder.layers.0.{norm1,norm2,norm3,multihead_attn,linear1,linear2}.*  -> model.decoder_layer.*
    head.decoder.duplicate_pooling                -> classifier.weight             (K, D, g); zero-shot (D, 1)
    head.decoder.duplicate_pooling_bias           -> classifier.bias               (C,); zero-shot (1,)
    head.wordvec_proj.*                           -> model.label_embedding_proj.*  zero-shot, D != 300

K (queries), g (logits per query), C (classes), D (width), zero-shot or not: all from the
shapes. Zero-shot queries are word vectors the official scripts set at run time (never saved),
so a zero-shot conversion needs them (`--label-embeddings`).
"""

from __future__ import annotations

from torch import Tensor

from ..models.configuration_ml_decoder import labels_per_query
from .common import ConversionError, KeyMap
from .query2label import paired_renames, tresnet_filter

_HEAD_RULES = [
    (r"head\.decoder\.embed_standart\.(weight|bias)", r"model.input_proj.\1"),
    (r"head\.decoder\.query_embed\.weight", r"model.query_embed.weight"),
    (r"head\.decoder\.layers\.0\.((?:norm[123]|multihead_attn|linear[12])\..+)", r"model.decoder_layer.\1"),
    (r"head\.decoder\.duplicate_pooling", r"classifier.weight"),
    (r"head\.decoder\.duplicate_pooling_bias", r"classifier.bias"),
    (r"head\.wordvec_proj\.(weight|bias)", r"model.label_embedding_proj.\1"),
]

_REQUIRED = ("head.decoder.embed_standart.weight", "head.decoder.duplicate_pooling", "head.decoder.duplicate_pooling_bias")


def infer_head(sd: dict[str, Tensor], *, where: str) -> dict:
    """MLDecoderConfig fields read from the head's weights."""
    absent = [k for k in _REQUIRED if k not in sd]
    if absent:
        heads = sorted({k.split(".")[0] + "." + k.split(".")[1] for k in sd if k.startswith(("head.", "fc."))})
        raise ConversionError(
            f"{where} has no complete ML-Decoder head: missing {', '.join(absent)}"
            + (f" (head keys found under: {', '.join(heads)})" if heads else " (it holds no head keys at all)")
        )
    embed = sd["head.decoder.embed_standart.weight"]
    pooling = sd["head.decoder.duplicate_pooling"]
    bias = sd["head.decoder.duplicate_pooling_bias"]
    d, features = (int(n) for n in embed.shape)
    found: dict = {"decoder_embedding": d, "backbone_features": features}
    if "head.decoder.layers.0.linear1.weight" in sd:
        found["dim_feedforward"] = int(sd["head.decoder.layers.0.linear1.weight"].shape[0])
    if pooling.ndim == 2:
        if tuple(pooling.shape) != (d, 1) or tuple(bias.shape) != (1,):
            raise ConversionError(f"{where}: zero-shot head shapes {tuple(pooling.shape)} / {tuple(bias.shape)}, expected ({d}, 1) / (1,)")
        found["zero_shot"] = True
        proj = sd.get("head.wordvec_proj.weight")
        found["label_embedding_dim"] = int(proj.shape[1]) if proj is not None else d
        return found
    if pooling.ndim != 3:
        raise ConversionError(f"{where}: head.decoder.duplicate_pooling has shape {tuple(pooling.shape)}; expected (K, D, g) or (D, 1)")
    k, pd, g = (int(n) for n in pooling.shape)
    c = int(bias.shape[0])
    if pd != d:
        raise ConversionError(f"{where}: duplicate_pooling width {pd} differs from embed_standart width {d}")
    if labels_per_query(c, k) != g:
        raise ConversionError(
            f"{where}: {k} queries x {g} logits for {c} classes; this model computes ceil({c}/{k}) = {labels_per_query(c, k)} "
            "logits per query (the official int(C/K + 0.999) differs only when C/K is within 0.001 above an integer)"
        )
    if "head.decoder.query_embed.weight" in sd and tuple(sd["head.decoder.query_embed.weight"].shape) != (k, d):
        raise ConversionError(f"{where}: query_embed {tuple(sd['head.decoder.query_embed.weight'].shape)} vs duplicate_pooling ({k}, {d}, {g})")
    found.update(zero_shot=False, num_labels=c, num_groups=k)
    return found


def tresnet_variant(keys, prefix: str) -> str:
    """'bottleneck-first' (ML-Decoder's TResNet-L/XL, timm tresnet_v2_l) or 'basic-first' (TResNet-M, timm tresnet_m/l/xl)."""
    return "bottleneck-first" if any(k.startswith(prefix + "layer1.0.conv3.") for k in keys) else "basic-first"


def check_backbone(sd: dict[str, Tensor], model, head: dict, *, where: str) -> None:
    """Refuse early, with a hint, when the preset's TResNet is not the checkpoint's."""
    body_keys = [k for k in sd if k.startswith("body.")]
    ours_keys = [k for k in model.state_dict() if k.startswith("model.backbone.model.body.")]
    if not body_keys or not ours_keys:
        return
    theirs = tresnet_variant(body_keys, "body.")
    ours = tresnet_variant(ours_keys, "model.backbone.model.body.")
    channels = model.model.backbone.num_channels
    if theirs != ours or channels != head["backbone_features"]:
        suggestion = {
            ("bottleneck-first", 2048): "tresnet_v2_l (ML-Decoder's TResNet-L; XL adds backbone_kwargs layers [3, 8, 34, 5])",
            ("basic-first", 2048): "tresnet_m",
            ("basic-first", 2432): "tresnet_l",
            ("basic-first", 2656): "tresnet_xl",
        }.get((theirs, head["backbone_features"]), "a TResNet with that structure")
        raise ConversionError(
            f"{where}: its backbone is a {theirs} TResNet with {head['backbone_features']} output features, but the "
            f"preset builds {model.config.backbone!r} ({ours}, {channels} features); use the matching preset or "
            f"--set backbone=... (here: {suggestion})"
        )


def map_state_dict(sd: dict[str, Tensor], model) -> KeyMap:
    keymap = KeyMap()
    body = [k for k in sd if k.startswith("body.")]
    filtered = tresnet_filter({k: sd[k] for k in body}, model.model.backbone.model)
    for orig, new in paired_renames(body, filtered):
        keymap.add("model.backbone.model." + new, orig, filtered[new])
    for key, value in sd.items():
        if key.startswith("body."):
            continue
        keymap.add_renamed(key, value, _HEAD_RULES)
    return keymap
