"""What both converters share: safe checkpoint loading, key bookkeeping, filling the model, saving.

Every key of an official checkpoint ends in exactly one of three places: a weight of the
target model (`mapped`), a list of keys dropped on purpose with the reason (`dropped`, e.g.
the sine table that the model recomputes), or `unknown`. Conversion fails, naming every key,
when anything is unknown, lands on no weight of the model (unexpected), has the wrong shape,
or when a weight of the model is left unfilled (missing). The only model entries that may
keep their freshly built values are the backbone's originally non-persistent buffers
(relative-position indices, attention masks, blur filters: computed, never learned) and
BatchNorm's `num_batches_tracked` counters (unused in eval; older inplace_abn checkpoints
have none).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConversionError, UserError  # noqa: F401  (both re-exported)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- loading


def _numpy_safe_globals() -> list:
    """numpy scalars and dtypes, the only non-tensor objects the official training scripts pickle.

    Query2Label stores `best_mAP` as a numpy float64 (numpy 1.x pickles it as
    `numpy.core.multiarray.scalar`). Rebuilding a scalar from a dtype and raw bytes runs no
    user code, so these are allowed to the weights-only unpickler; nothing else is.
    """
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a torch dependency in practice
        return []
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtype_classes = [type(np.dtype(code)) for code in ("f2", "f4", "f8", "i4", "i8", "u1", "b1")]
    return [
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *dict.fromkeys(dtype_classes),
    ]


def load_checkpoint(path: str | os.PathLike) -> object:
    """`torch.load(path, map_location="cpu", weights_only=True)`, with clear errors.

    A file whose unpickling would import or call anything beyond tensors, containers and numpy
    scalars (e.g. an object whose `__reduce__` calls `os.system`) is refused, never executed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint {path!r} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "WeightsUnpickler" in line]
        detail = (lines[0].replace("WeightsUnpickler error:", "").strip() if lines else str(err).splitlines()[0])
        if not detail:  # torch puts the reason on the line after "WeightsUnpickler error:"
            rest = [line.strip() for line in str(err).splitlines()[1:] if line.strip() and "WeightsUnpickler" not in line]
            detail = next((line for line in rest if not line.startswith(("Please", "Check"))), "")
        if "GLOBAL" in detail:
            raise ConversionError(
                f"refusing to load {path!r}: it is not a plain weights file, unpickling it would run code "
                f"({detail}). Only checkpoints that torch.load(..., weights_only=True) accepts are converted; "
                "if you trust the file, re-save its state dict with torch.save(state_dict) and convert that."
            ) from err
        raise ConversionError(
            f"refusing to load {path!r}: torch.load(..., weights_only=True) cannot read it ({detail or 'not a pickle'}): "
            "it is damaged, not a torch checkpoint, or pickled with objects beyond tensors and containers "
            "(which would run code, so they are never unpickled)"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ConversionError(f"cannot read checkpoint {path!r}: {err}") from err
    except Exception as err:  # noqa: BLE001 - torch's unpickler fails on garbage with IndexError, KeyError ...
        raise ConversionError(f"cannot read checkpoint {path!r}: not a torch checkpoint ({type(err).__name__}: {err})") from err


def extract_state_dict(obj: object, path: str, keys: tuple[str, ...] = ("state_dict", "model")) -> tuple[dict[str, Tensor], str | None]:
    """The state dict inside a loaded checkpoint: `obj[key]` for the first of `keys` present, or `obj` itself."""
    if not isinstance(obj, dict):
        raise ConversionError(f"{path!r} holds a {type(obj).__name__}, not a state dict or a dict with one")
    container = None
    for key in keys:
        if key in obj and isinstance(obj[key], dict):
            container, obj = key, obj[key]
            break
    tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)}
    others = sorted(str(k) for k in obj if not torch.is_tensor(obj[k]))
    if not tensors:
        where = f"{path!r}[{container!r}]" if container else repr(path)
        raise ConversionError(f"{where} holds no tensors (entries: {', '.join(others[:10]) or 'none'})")
    if others:
        where = f"{path!r}[{container!r}]" if container else repr(path)
        raise ConversionError(f"{where} mixes tensors with other entries: {', '.join(others[:10])}")
    return tensors, container


def strip_prefix(state_dict: dict[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Remove a leading `prefix` (DDP's `module.`) from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- key bookkeeping


@dataclass
class KeyMap:
    """Where every checkpoint key went. `mapped`: target key -> (source key, tensor)."""

    mapped: dict[str, tuple[str, Tensor]] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # source key -> reason
    unknown: list[str] = field(default_factory=list)
    filled: dict[str, str] = field(default_factory=dict)  # target key -> where its value came from
    notes: list[str] = field(default_factory=list)

    def add(self, target: str, source: str, value: Tensor) -> None:
        if target in self.mapped:
            raise ConversionError(
                f"checkpoint keys {self.mapped[target][0]!r} and {source!r} both map to {target!r}"
            )
        self.mapped[target] = (source, value)

    def add_renamed(self, source: str, value: Tensor, rules: list[tuple[str, str]]) -> None:
        """Map ``source`` by the first ``(pattern, replacement)`` rule it fully matches; no match: unknown."""
        for pattern, repl in rules:
            if re.fullmatch(pattern, source):
                self.add(re.sub(pattern, repl, source), source, value)
                return
        self.unknown.append(source)


def _listing(title: str, lines: list[str], limit: int = 60) -> str:
    shown = lines[:limit]
    more = f"\n    ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return f"  {title} ({len(lines)}):\n" + "\n".join(f"    {line}" for line in shown) + more


def fresh_backbone_buffers(config) -> set[str]:
    """Names (relative to the backbone's inner model) of buffers the backbone library keeps non-persistent.

    `FeatureBackbone` makes every buffer persistent so that saved folders are complete; these
    ones are computed at construction (never learned, absent from official checkpoints), so
    the freshly built model's values are the right ones. Built on the meta device: no memory.
    """
    from ..models import backbone as backbone_module

    build = backbone_module._timm_backbone if config.backbone_source == "timm" else backbone_module._transformers_backbone
    import copy

    cfg = copy.deepcopy(config)
    try:
        with torch.device("meta"), backbone_module.loading_checkpoint():
            raw = build(cfg)[0]
    except Exception:  # some constructors compute on real tensors; fall back to a CPU build
        with backbone_module.loading_checkpoint():
            raw = build(cfg)[0]
    persistent = set(raw.state_dict().keys())
    return {name for name, _ in raw.named_buffers() if name not in persistent}


def fill_model(
    model: nn.Module,
    keymap: KeyMap,
    *,
    checkpoint: str,
    fresh_ok: set[str],
    extra: dict[str, Tensor] | None = None,
    notes: list[str] | None = None,
) -> dict:
    """Load `keymap` into `model`, or raise naming every unknown, unexpected, mismatched and missing key.

    `fresh_ok`: full model keys that may keep their built values. `extra`: target keys filled
    from elsewhere than the checkpoint (e.g. zero-shot label embeddings given by the user).
    Returns a summary for the report.
    """
    target = model.state_dict()
    values = {k: v for k, (_, v) in keymap.mapped.items()}
    for key, value in (extra or {}).items():
        values[key] = value
    unexpected = [f"{src} -> {dst}" for dst, (src, _) in keymap.mapped.items() if dst not in target]
    mismatched = [
        f"{keymap.mapped[k][0] if k in keymap.mapped else '(given)'} -> {k}: checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)}"
        for k, v in values.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    kept, counters, missing = [], [], []
    for key in target:
        if key in values:
            continue
        if key in fresh_ok:
            kept.append(key)
        elif key.endswith("num_batches_tracked"):
            counters.append(key)
        else:
            missing.append(key)
    problems = []
    if keymap.unknown:
        problems.append(_listing("unknown checkpoint keys (no rule maps them)", sorted(keymap.unknown)))
    if unexpected:
        problems.append(_listing("unexpected keys (mapped to no weight of the model)", sorted(unexpected)))
    if mismatched:
        problems.append(_listing("shape mismatches", sorted(mismatched)))
    if missing:
        problems.append(_listing("missing keys (model weights the checkpoint does not fill)", missing))
    if problems:
        raise ConversionError(f"cannot convert {checkpoint!r}:\n" + "\n".join(problems) + "".join(
            f"\n  note: {n}" for n in [*(notes or []), *keymap.notes]))
    state = {k: values[k] if k in values else target[k] for k in target}
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return {
        "from_checkpoint": len(keymap.mapped),
        "given": sorted(extra or {}),
        "dropped": dict(keymap.dropped),
        "kept_fresh": kept,
        "fresh_counters": len(counters),
    }


# ----------------------------------------------------------------------------- saving


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise ConversionError(f"output {str(out)!r} exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise ConversionError(f"output folder {str(out)!r} already exists and is not empty; choose a new one (or --overwrite)")
    if not out.parent.exists():
        raise ConversionError(f"parent folder of the output {str(out.parent)!r} does not exist")
    return out


def write_atomically(out_dir: Path, write, overwrite: bool = False) -> Path:
    """Run `write(tmp_folder)` in a temporary sibling of `out_dir`, then rename it into place.

    On any failure the temporary folder is removed and `out_dir` is left as it was.
    """
    out_dir = prepare_output_dir(out_dir, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.converting-", dir=out_dir.parent))
    try:
        write(tmp)
        if out_dir.exists():
            if any(out_dir.iterdir()):
                backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                backup.rmdir()
                out_dir.rename(backup)
                tmp.rename(out_dir)
                shutil.rmtree(backup, ignore_errors=True)
                return out_dir
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
