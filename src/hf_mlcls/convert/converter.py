"""`convert_checkpoint`: an official checkpoint file + a preset -> a complete Hugging Face model folder."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError
from ..models.backbone import loading_checkpoint
from ..models.configuration_query2label import Query2LabelConfig
from ..presets import PRESETS, create_model, list_presets, preset_config
from ..progress import step
from . import ml_decoder as mld
from . import query2label as q2l
from .checkpoints import CHECKPOINTS, OfficialCheckpoint, find_checkpoint
from .common import (
    ConversionError,
    KeyMap,
    extract_state_dict,
    file_sha256,
    fill_model,
    fresh_backbone_buffers,
    load_checkpoint,
    prepare_output_dir,
    strip_prefix,
    write_atomically,
)
from .labels import canonical_label_set, resolve_labels

logger = logging.getLogger(__name__)

_FAMILY_NAMES = {"query2label": "Query2Label", "ml_decoder": "ML-Decoder"}


@dataclass
class ConversionResult:
    """What `convert_checkpoint` did: the folder, the model (eval mode) and the key report."""

    output_dir: Path
    model: torch.nn.Module | None
    family: str
    preset: str
    entry: OfficialCheckpoint | None
    report: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        r = self.report
        lines = [f"converted {r.get('checkpoint')} ({_FAMILY_NAMES[self.family]}, preset {self.preset}"
                 + (f", published checkpoint {self.entry.name}" if self.entry else "") + f") -> {self.output_dir}"]
        lines.append(f"  {r.get('from_checkpoint', 0)} tensors from the checkpoint; "
                     f"{len(r.get('kept_fresh', []))} computed backbone buffers and {r.get('fresh_counters', 0)} "
                     "BatchNorm counters kept from the freshly built model")
        by_reason: dict[str, list[str]] = {}
        for key, reason in r.get("dropped", {}).items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            shown = keys[0] if len(keys) == 1 else f"{len(keys)} keys ({keys[0]}, ...)"
            lines.append(f"  dropped {shown}: {reason}")
        for key in r.get("given", []):
            lines.append(f"  {key}: from --label-embeddings")
        if "reload_max_abs_diff" in r:
            lines.append(f"  reloaded from the folder: logits max abs diff {r['reload_max_abs_diff']:.1e}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _resolve_preset(preset: str, checkpoint: str) -> tuple[str, OfficialCheckpoint | None]:
    entry = find_checkpoint(preset, checkpoint)
    if preset in PRESETS:
        return preset, entry
    if entry is not None:
        return entry.preset, entry
    raise ConversionError(
        f"unknown preset {preset!r}: use a preset ({', '.join(list_presets())}) "
        f"or a published checkpoint name ({', '.join(CHECKPOINTS)})"
    )


def _load_label_embeddings(path: str, dim: int | None) -> torch.Tensor:
    from .common import load_checkpoint as _load

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            obj = load_file(path)
        except Exception as err:  # safetensors raises its own error types
            raise ConversionError(f"cannot read label embeddings {path!r}: {err}") from err
    else:
        obj = _load(path)
    if isinstance(obj, dict):
        for key in ("label_embeddings", "wordvecs", "embeddings", "wordvec_array"):
            if key in obj:
                obj = obj[key]
                break
        else:
            tensors = [v for v in obj.values() if torch.is_tensor(v)]
            if len(tensors) != 1:
                raise ConversionError(f"{path!r} must hold one tensor (or one named label_embeddings / wordvecs)")
            obj = tensors[0]
    if not torch.is_tensor(obj) or obj.ndim != 2:
        raise ConversionError(f"label embeddings in {path!r} must be a 2-D tensor (num_labels, dim)")
    obj = obj.float()
    if dim is not None and obj.shape[1] != dim and obj.shape[0] == dim:
        logger.info("label embeddings in %s are (%d, %d): transposed to one row per label", path, *obj.shape)
        obj = obj.t().contiguous()  # the official wordvec_array is (300, N)
    if dim is not None and obj.shape[1] != dim:
        raise ConversionError(f"label embeddings in {path!r} have shape {tuple(obj.shape)}; the checkpoint needs (N, {dim})")
    if not torch.isfinite(obj).all():
        raise ConversionError(f"label embeddings in {path!r} contain NaN or inf")
    return obj


def _label_source(labels: str | None, entry: OfficialCheckpoint | None, official: dict | None) -> tuple[str | None, bool]:
    """(label set or file, whether the user chose it)."""
    if labels is not None:
        return labels, True
    if entry is not None:
        return entry.labels, False
    if official is not None and official.get("dataname"):
        return canonical_label_set(official["dataname"]), False
    return None, False


def _names(spec: str | None, explicit: bool, num_labels: int, where: str) -> list[str]:
    if explicit or spec is None:
        return resolve_labels(spec, num_labels, where=where)
    try:
        return resolve_labels(spec, num_labels, where=where)
    except UserError as err:  # a default label set of another size: LABEL_i rather than failing
        logger.warning("%s; using LABEL_0 ... LABEL_%d instead", err, num_labels - 1)
        return [f"LABEL_{i}" for i in range(num_labels)]


def _build_model(preset: str, kwargs: dict):
    with loading_checkpoint():
        model = create_model(preset, **kwargs)
    return model.eval()


def _convert_query2label(sd, preset, entry, *, checkpoint, config_file, labels, overrides, notes):
    official = None
    if config_file is None:
        config_file = q2l.find_official_config(checkpoint)
        if config_file:
            notes.append(f"training arguments read from {config_file}")
    if config_file is not None:
        official = q2l.read_official_config(config_file)
    where = repr(config_file) if config_file else "the preset"
    kwargs, more = q2l.build_config_kwargs(official, sd, where=where)
    notes += more
    kwargs.update(entry.overrides if entry else {})
    kwargs.update(overrides)
    num_labels = int(kwargs.get("num_labels") or PRESETS[preset][1].get("num_labels", 80))
    spec, explicit = _label_source(labels, entry, official)
    names = _names(spec, explicit, num_labels, f"checkpoint {checkpoint!r}")
    kwargs.pop("num_labels", None)
    kwargs["id2label"] = dict(enumerate(names))
    config = preset_config(preset, **kwargs)
    official_backbone = q2l.check_backbone(official, config, preset)
    model = _build_model(preset, kwargs)
    ratio = q2l._downsample_ratio(official_backbone, model.config)
    keymap = q2l.map_state_dict(sd, model.config, model, ratio)
    return model, keymap, {}, _fresh(model.config)


def _convert_ml_decoder(sd, preset, entry, *, checkpoint, labels, label_embeddings, overrides, notes, backbone_only):
    where = f"checkpoint {checkpoint!r}"
    if backbone_only:
        return _backbone_only(sd, preset, entry, overrides=overrides, where=where, notes=notes)
    head = mld.infer_head(sd, where=where)
    kwargs = {k: head[k] for k in ("decoder_embedding", "dim_feedforward", "zero_shot", "num_groups", "label_embedding_dim") if k in head}
    kwargs.update(entry.overrides if entry else {})
    extra = {}
    if head["zero_shot"]:
        if label_embeddings is None:
            raise ConversionError(
                f"{where} is a zero-shot ML-Decoder: its queries are label word vectors that the official scripts set "
                "at run time and never save; pass them with --label-embeddings FILE (a (num_labels, "
                f"{head['label_embedding_dim']}) tensor, e.g. the columns of NUS-WIDE's wordvec_array.pth)"
            )
        emb = _load_label_embeddings(label_embeddings, head["label_embedding_dim"])
        num_labels = emb.shape[0]
        extra["model.label_embeddings"] = emb
    else:
        if label_embeddings is not None:
            raise ConversionError(f"--label-embeddings is for zero-shot checkpoints; {where} has a fixed label set")
        num_labels = head["num_labels"]
    kwargs.update(overrides)
    spec, explicit = _label_source(labels, entry, None)
    if spec is None and num_labels == 80 and not head["zero_shot"]:
        spec = "coco"
        notes.append("80 classes and no --labels: MS-COCO names assumed (ML-Decoder's train.py is MS-COCO's)")
    names = _names(spec, explicit, num_labels, where)
    kwargs["id2label"] = dict(enumerate(names))
    if kwargs.get("problem_type") == "single_label_classification":
        notes.append("single-label checkpoint: problem_type single_label_classification, scores are a softmax over classes")
    model = _build_model(preset, kwargs)
    mld.check_backbone(sd, model, head, where=where)
    keymap = mld.map_state_dict(sd, model)
    return model, keymap, extra, _fresh(model.config)


def _backbone_only(sd, preset, entry, *, overrides, where, notes):
    """The body of an ML-Decoder/TResNet checkpoint as timm weights: what train.py keeps of a pretraining file."""
    kwargs = dict(overrides)
    kwargs.setdefault("num_labels", 1)
    with loading_checkpoint():
        model = create_model(preset, **kwargs)
    timm_model = model.model.backbone.model
    keymap = KeyMap()
    body = [k for k in sd if k.startswith("body.")]
    filtered = q2l.tresnet_filter({k: sd[k] for k in body}, timm_model)
    for orig, new in q2l.paired_renames(body, filtered):
        keymap.add(new, orig, filtered[new])
    for key in sd:
        if key.startswith("body."):
            continue
        if key.startswith("head."):
            keymap.dropped[key] = "classification head, not part of the backbone (train.py drops it too)"
        else:
            keymap.unknown.append(key)
    notes.append("backbone only: load it with create_model(preset, backbone_weights_file=<folder>/backbone.safetensors)")
    return timm_model, keymap, {}, fresh_backbone_buffers(model.config)


def _fresh(config) -> set[str]:
    return {"model.backbone.model." + name for name in fresh_backbone_buffers(config)}


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    preset: str,
    *,
    config_file: str | None = None,
    labels: str | None = None,
    label_embeddings: str | None = None,
    overrides: dict | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
    backbone_only: bool = False,
) -> ConversionResult:
    """Convert an official Query2Label or ML-Decoder checkpoint into a Hugging Face model folder.

    Args:
        checkpoint: the official file (`.pkl`, `.pth`, `.pth.tar`); loaded with `weights_only=True`.
        output_dir: the folder to create (it must not exist or be empty). It is written atomically:
            a failed conversion leaves nothing behind.
        preset: a preset (`hf_mlcls.list_presets()`) or a published checkpoint name (`CHECKPOINTS`).
        config_file: Query2Label's `config.json` (training arguments); by default `config.json` or
            `config_new.json` beside the checkpoint. It overrides the preset and is checked against the weights.
        labels: `coco`, `voc`, `nus-wide`, `openimages`, `stanford-cars` or a label file; by default the
            checkpoint's own label set (names not shipped here become LABEL_i, with a warning).
        label_embeddings: zero-shot ML-Decoder only: a file with the (num_labels, 300) label word vectors.
        overrides: config fields set last (e.g. a tiny backbone's `backbone_kwargs` for tests).
        repo_id: the Hub repository named in the model card's snippets.
        verify: reload the written folder with `AutoModelForImageClassification` and compare its logits.
        backbone_only: ML-Decoder: write only the backbone (`backbone.safetensors`, timm layout).
    """
    checkpoint = os.fspath(checkpoint)
    out = prepare_output_dir(output_dir, overwrite)
    preset, entry = _resolve_preset(preset, checkpoint)
    config_class = PRESETS[preset][0]
    family = "query2label" if config_class is Query2LabelConfig else "ml_decoder"
    if entry is not None and entry.family != family:
        raise ConversionError(f"{entry.name} is a {_FAMILY_NAMES[entry.family]} checkpoint but preset {preset!r} builds {_FAMILY_NAMES[family]}")
    if backbone_only and family != "ml_decoder":
        raise ConversionError("--backbone-only is for ML-Decoder (pretraining) checkpoints")
    if config_file is not None and family != "query2label":
        raise ConversionError("--config is Query2Label's config.json; ML-Decoder checkpoints need none")
    notes: list[str] = []
    obj = load_checkpoint(checkpoint)  # no step line before it: a bad file is its one-line error, alone
    order = ("state_dict", "model") if family == "query2label" else ("model", "state_dict")
    sd, container = extract_state_dict(obj, checkpoint, order)
    prefixed = sum(k.startswith("module.") for k in sd)
    sd = strip_prefix(sd)
    if prefixed:
        notes.append(f"stripped the DDP prefix 'module.' from {prefixed} keys (key names here are without it)")
    overrides = copy.deepcopy(overrides or {})
    step(f"read {Path(checkpoint).name}; building {preset} and mapping {len(sd)} tensors")
    if family == "query2label":
        model, keymap, extra, fresh = _convert_query2label(
            sd, preset, entry, checkpoint=checkpoint, config_file=config_file, labels=labels, overrides=overrides, notes=notes
        )
    else:
        model, keymap, extra, fresh = _convert_ml_decoder(
            sd, preset, entry, checkpoint=checkpoint, labels=labels, label_embeddings=label_embeddings,
            overrides=overrides, notes=notes, backbone_only=backbone_only,
        )
    report = fill_model(model, keymap, checkpoint=checkpoint, fresh_ok=fresh, extra=extra, notes=notes)
    report["checkpoint"] = checkpoint
    report["container"] = container
    step("hashing the checkpoint")
    report["sha256"] = file_sha256(checkpoint)
    notes.extend(keymap.notes)
    model.eval()

    def write(folder: Path) -> None:
        if backbone_only:
            from safetensors.torch import save_file

            # timm's own (non-persistent) computed buffers stay out: timm loads the file strictly
            weights = {k: v.contiguous() for k, v in model.state_dict().items() if k not in fresh}
            save_file(weights, str(folder / "backbone.safetensors"))
            (folder / "README.md").write_text(_backbone_readme(checkpoint, entry, preset, report), encoding="utf-8")
            return
        step(f"writing {out}")
        model.save_pretrained(folder)
        provenance = _provenance(family, entry, checkpoint, report["sha256"])
        # the card names the Hub repository in its snippets; without one, a placeholder owner and the folder's name
        card = _model_card(model.config, provenance, repo_id or f"your-name/{out.name}")
        card.save(folder / "README.md")
        _write_record(folder / "conversion.json", family, preset, entry, report, notes, provenance)
        if verify:
            step("reloading the written folder to compare its logits")
            report["reload_max_abs_diff"] = _verify_reload(model, folder)

    write_atomically(out, write, overwrite)
    return ConversionResult(output_dir=out, model=model, family=family, preset=preset, entry=entry, report=report, notes=notes)


@torch.no_grad()
def _verify_reload(model, folder: Path) -> float:
    """Reload the written folder through the Auto classes: every tensor must come back bit for bit, and
    the rebuilt model (config, remote-code classes) must give the same logits on one random image.

    The logits bound is loose on purpose: identical weights at other memory addresses change some
    kernels' summation order, and in deep networks one-ulp differences grow (up to ~1e-4 measured on
    random full-size TResNets); a model rebuilt differently (a lost flag, a wrong activation) is far off.
    """
    from transformers import AutoModelForImageClassification

    reloaded = AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    ours, theirs = model.state_dict(), reloaded.state_dict()
    if set(ours) != set(theirs):
        raise ConversionError(f"the written folder lacks or adds weights: {sorted(set(ours) ^ set(theirs))[:10]}")
    changed = [k for k in ours if ours[k].dtype != theirs[k].dtype or not torch.equal(ours[k], theirs[k])]
    if changed:
        raise ConversionError(f"the written folder does not hold the converted weights: {changed[:10]}")
    size = model.config.image_size
    pixels = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    diff = (model(pixels).logits - reloaded(pixels).logits).abs().max().item()
    if not diff <= 1e-3:
        raise ConversionError(f"the model rebuilt from the written folder gives other logits (max abs diff {diff:.3g})")
    return diff


def _provenance(family: str, entry: OfficialCheckpoint | None, checkpoint: str, sha256: str) -> str:
    source = "SlongLiu/query2labels" if family == "query2label" else "Alibaba-MIIL/ML_Decoder"
    what = f"the official {_FAMILY_NAMES[family]} checkpoint"
    if entry is not None:
        what += f" **{entry.name}** ({entry.url}; published: {entry.published})"
    return (
        f"Converted with `hf-mlcls convert` from {what}, file `{os.path.basename(checkpoint)}` (sha256 `{sha256}`), "
        f"trained by the authors with the code in [{source}](https://github.com/{source}). The weights are the "
        "authors', renamed key by key; TResNet batch norms are rewritten from inplace_abn's `|w| + 1e-5` form by "
        "timm's own checkpoint filter. The converted model reproduces the official implementation's logits "
        "(max abs difference ≤ 1e-4 in fp32; see hf_mlcls' docs/conversion.md)."
    )


def _model_card(config, provenance: str, repo_id: str):
    from ..hub import render_model_card

    # both official repositories (and their released weights) are MIT-licensed
    return render_model_card(config, None, repo_id=repo_id, license="mit", provenance=provenance, tags=["converted-checkpoint"])


def _write_record(path: Path, family, preset, entry, report, notes, provenance) -> None:
    """conversion.json: where the weights came from and what happened to every key (kept locally; not uploaded)."""
    import json

    record = {
        "family": family,
        "preset": preset,
        "published_checkpoint": entry.name if entry else None,
        "source_url": entry.url if entry else None,
        "checkpoint_file": os.path.basename(report["checkpoint"]),
        "sha256": report["sha256"],
        "license": "mit",
        "provenance": provenance,
        "tensors_from_checkpoint": report["from_checkpoint"],
        "dropped": report["dropped"],
        "kept_from_fresh_model": report["kept_fresh"],
        "fresh_batchnorm_counters": report["fresh_counters"],
        "given": report["given"],
        "notes": notes,
    }
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _backbone_readme(checkpoint, entry, preset, report) -> str:
    name = entry.name if entry else os.path.basename(checkpoint)
    return (
        f"# Backbone of {name}\n\n"
        f"The TResNet backbone of `{os.path.basename(checkpoint)}` (sha256 `{report['sha256']}`) in timm's layout, "
        "converted with `hf-mlcls convert --backbone-only`. ML-Decoder's `train.py` keeps only these weights of its "
        "pretraining file; start the same recipe with\n\n"
        f"```python\nfrom hf_mlcls import create_model\nmodel = create_model(\"{preset}\", num_labels=80, "
        "backbone_weights_file=\"backbone.safetensors\")\n```\n"
    )
