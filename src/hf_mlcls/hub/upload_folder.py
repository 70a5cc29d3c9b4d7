"""The folder a push uploads: weights, config, image processor, remote code, card, evaluation files.

`prepare_upload_folder` builds it without touching the source folder, checking everything that can be
refused before anything is written.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import UserError
from .cards import _FAMILIES, render_model_card
from .evaluation import check_eval_results, load_eval_results

__all__ = ["EVAL_ARTIFACT_SUFFIXES", "UPLOAD_PATTERNS", "prepare_upload_folder"]

EVAL_ARTIFACT_SUFFIXES = (".csv", ".png", ".jpg", ".svg", ".txt")

# Files of a saved model folder that belong on the Hub; anything else (optimizer states,
# pickled training arguments, checkpoints) stays local.
UPLOAD_PATTERNS = (
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "*.py",
)


def _matches_upload(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in UPLOAD_PATTERNS)


def _check_out_dir(out_dir: Path, source: Path | None) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"output folder {out_dir.name} already exists and is not empty; choose a new folder")
    if source is not None:
        resolved, src = out_dir.resolve(), source.resolve()
        if resolved == src or src in resolved.parents:
            raise UserError("the output folder must not be the model folder or inside it")


def _trainer_provenance(source: Path) -> str | None:
    """A one-line training summary from a Trainer output folder's trainer_state.json, if there is one."""
    state_file = source / "trainer_state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    parts = ["Trained with `examples/train.py` (Hugging Face Trainer)"]
    if state.get("epoch") is not None:
        parts.append(f"for {float(state['epoch']):g} epochs")
    if state.get("global_step"):
        parts.append(f"({int(state['global_step'])} optimisation steps)")
    text = " ".join(parts) + "."
    if state.get("best_metric") is not None:
        text += f" Best evaluation metric during training: {float(state['best_metric']):.4g}."
    return text


def _model_class(family: str):
    from ..models import MLDecoderForImageClassification, Query2LabelForImageClassification

    return Query2LabelForImageClassification if family == "query2label" else MLDecoderForImageClassification


def _check_loads_back(source, src: Path | None, out_dir: Path, family: str) -> None:
    """Refuse to stage a model that does not come back: load the staged folder, run one fixed input through it
    and through the model it came from (the given model object, or the source folder loaded), and require the
    same logits. A truncated or damaged weights file, a learned tensor missing, or a config.json that does not
    match the weights is a ``UserError`` naming the folder."""
    import torch
    from safetensors import SafetensorError

    name = src.name if src is not None else "the model"
    cls = _model_class(family)
    try:
        reloaded = cls.from_pretrained(out_dir).eval()
        original = source if src is None else cls.from_pretrained(src).eval()
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        detail = " ".join(str(err).replace(str(out_dir), name).split())[:400]
        raise UserError(f"model folder {name} does not load back, so it is not uploaded: {detail}") from None
    size = int(reloaded.config.image_size)
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    was_training = original.training
    original.eval()
    try:
        with torch.no_grad():
            param = next(original.parameters())
            expected = original(pixels.to(param.device, param.dtype)).logits.float().cpu()
            got = reloaded(pixels).logits.float()
    finally:
        original.train(was_training)
    if not torch.allclose(expected, got, rtol=1e-4, atol=1e-5):
        diff = (expected - got).abs().max().item()
        raise UserError(
            f"model folder {name}: the saved copy gives other outputs than the model (max abs difference {diff:.3g} "
            "on a fixed input); save it again with save_pretrained"
        )


def _write_remote_code(config_path: Path, folder: Path, family: str) -> None:
    """Copy the installed package's model code into `folder` and point `auto_map` at it."""
    from .. import models

    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        if path.name != "__init__.py":
            shutil.copyfile(path, folder / path.name)
    from ..models.configuration_common import CUSTOM_PIPELINES

    model_class = _model_class(family)
    data = json.loads(config_path.read_text(encoding="utf-8"))
    data["auto_map"] = dict(model_class._remote_code_map)
    data["custom_pipelines"] = copy.deepcopy(CUSTOM_PIPELINES)  # a folder saved before the pipeline shipped lacks it
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _remote_code_complete(folder: Path, config: dict) -> bool:
    """Whether config.json's `auto_map` and `custom_pipelines` name modules that all lie in `folder`."""
    auto_map, pipelines = config.get("auto_map"), config.get("custom_pipelines")
    if not auto_map or not isinstance(auto_map, dict) or not pipelines or not isinstance(pipelines, dict):
        return False
    refs = list(auto_map.values()) + [task.get("impl") for task in pipelines.values() if isinstance(task, dict)]
    seen: set[str] = set()
    todo = [ref.split(".")[0] for ref in refs if isinstance(ref, str)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = folder / f"{module}.py"
        if not path.is_file():
            return False
        todo += re.findall(r"^\s*from \.(\w+) import", path.read_text(encoding="utf-8"), flags=re.M)
    return True


def prepare_upload_folder(
    source,
    out_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    eval_json: str | os.PathLike | dict | None = None,
    eval_artifacts: list[str | os.PathLike] | None = None,
    license: str = "apache-2.0",
    datasets: list[str] | None = None,
    base_model: str | None = None,
    tags: list[str] | None = None,
    provenance: str | None = None,
) -> dict[str, Any]:
    """Write into `out_dir` exactly what a push uploads; `source` is never modified.

    Args:
        source: a saved model folder (`save_pretrained` output, a Trainer output folder, a converted
            checkpoint) or a Query2Label/ML-Decoder model object (saved into `out_dir`).
        out_dir: a new or empty folder.
        eval_json: the evaluation JSON (path or dict) of `examples/evaluate.py`: rendered into the card
            and uploaded as `eval_results.json`. Default: `source/eval/metrics.json` when it exists
            (evaluate.py's default output), with that folder's CSV and figures as `eval_artifacts`.
        eval_artifacts: further evaluation files (per-class AP CSV, figures), uploaded under `eval/`.

    Returns ``{"folder": Path, "files": [...], "skipped": [...]}``: the files written and the source files
    left out (optimizer states, pickles, checkpoints).
    """
    out_dir = Path(out_dir)
    is_model = hasattr(source, "save_pretrained") and hasattr(source, "config")
    src = None if is_model else Path(source)
    if src is not None:
        if src.is_file():
            raise UserError(f"{src.name} is a file; give the model's folder (the one save_pretrained wrote)")
        if not src.is_dir():
            raise UserError(f"model folder {src.name or source} does not exist")
        if not (src / "config.json").is_file():
            raise UserError(f"model folder {src.name} has no config.json; save the model with save_pretrained")
        if not list(src.glob("*.safetensors")):
            hint = " (it has pickle weights: load and save_pretrained it again)" if list(src.glob("*.bin")) else ""
            raise UserError(f"model folder {src.name} has no safetensors weights{hint}")
    _check_out_dir(out_dir, src)

    # Everything that can be refused is checked before anything is written.
    use_eval_dir = False
    if src is not None and eval_json is None and (src / "eval" / "metrics.json").is_file():
        use_eval_dir = True  # where examples/evaluate.py writes by default
        eval_json = src / "eval" / "metrics.json"
        if eval_artifacts is None:
            eval_artifacts = sorted(
                p for p in eval_json.parent.iterdir()
                if p.is_file() and p.suffix.lower() in EVAL_ARTIFACT_SUFFIXES and p.name != "metrics.json"
            )
    eval_results = None
    if eval_json is not None:
        eval_results = (
            check_eval_results(dict(eval_json)) if isinstance(eval_json, dict) else load_eval_results(eval_json)
        )
    artifacts = [Path(a) for a in eval_artifacts or []]
    for artifact in artifacts:
        if not artifact.is_file():
            raise UserError(f"evaluation artefact {artifact.name} does not exist")

    existed = out_dir.exists()
    try:
        return _write_upload_folder(
            source, src, out_dir, eval_results, artifacts, use_eval_dir,
            repo_id=repo_id, license=license, datasets=datasets, base_model=base_model, tags=tags,
            provenance=provenance,
        )
    except BaseException:
        # Leave no half-written folder behind (it was new or empty before).
        if existed:
            for child in out_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _write_upload_folder(source, src, out_dir, eval_results, artifacts, use_eval_dir, *, provenance, **card_kwargs):
    skipped: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    if src is None:
        source.save_pretrained(out_dir)
    else:
        for path in sorted(src.iterdir()):
            if path.is_file() and _matches_upload(path.name):
                shutil.copyfile(path, out_dir / path.name)
            elif not (use_eval_dir and path.name == "eval"):
                skipped.append(path.name + ("/" if path.is_dir() else ""))

    config_path = out_dir / "config.json"
    try:
        config_dict = json.loads(config_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserError(f"config.json of the model folder is not valid JSON ({err})") from None
    family = config_dict.get("model_type")
    if family not in _FAMILIES:
        raise UserError(f"config.json describes model_type {family!r}, not query2label or ml_decoder")
    if not _remote_code_complete(out_dir, config_dict):
        _write_remote_code(config_path, out_dir, family)

    _check_loads_back(source, src, out_dir, family)

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out_dir)
    if not (out_dir / "preprocessor_config.json").is_file():
        # build_image_processor reads only `.config`: no need to build the whole model.
        _model_class(family).build_image_processor(SimpleNamespace(config=config)).save_pretrained(out_dir)

    if eval_results is not None:
        (out_dir / "eval_results.json").write_text(json.dumps(eval_results, indent=2) + "\n", encoding="utf-8")
    artifact_paths = []
    for artifact in artifacts:
        (out_dir / "eval").mkdir(exist_ok=True)
        shutil.copyfile(artifact, out_dir / "eval" / artifact.name)
        artifact_paths.append(f"eval/{artifact.name}")

    if provenance is None and src is not None:
        provenance = _trainer_provenance(src)
    card = render_model_card(config, eval_results, provenance=provenance, eval_artifacts=artifact_paths, **card_kwargs)
    card.save(out_dir / "README.md")
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    return {"folder": out_dir, "files": files, "skipped": skipped}
