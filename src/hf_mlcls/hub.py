"""Model cards and uploads to the Hugging Face Hub.

- `load_eval_results(path)`: read and check the evaluation JSON that `examples/evaluate.py` writes.
- `render_model_card(config, eval_results=...)`: a `huggingface_hub.ModelCard` from the templates in
  `hub_cards/` (one per model family), with `model-index` metadata built from `EvalResult`s.
- `prepare_upload_folder(source, out_dir, ...)`: the exact folder a push uploads (weights, config, image
  processor, remote code, card, evaluation artefacts), built without touching `source`.
- `push_to_hub(folder, repo_id, ...)`: that folder in one commit (`HfApi.upload_folder`).
- `deploy_space(repo_id, ...)`: the Gradio Space in `spaces/` in one commit.

Every failure a user can fix (missing token, offline, unreachable Hub, bad folder) raises
`hf_mlcls.errors.UserError` with one readable sentence.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .errors import UserError

__all__ = [
    "CARD_METRICS",
    "EVAL_METRICS",
    "build_card_data",
    "deploy_space",
    "load_eval_results",
    "prepare_space_folder",
    "prepare_upload_folder",
    "push_to_hub",
    "render_model_card",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
EVAL_ARTIFACT_SUFFIXES = (".csv", ".png", ".jpg", ".svg", ".txt")
CARD_TEMPLATE_DIR = Path(os.environ.get("HF_MLCLS_CARD_TEMPLATES", _REPO_ROOT / "hub_cards"))
SPACE_DIR = _REPO_ROOT / "spaces"

# Metrics the evaluation JSON must carry (0-100 scale), and those that go into `model-index`.
EVAL_METRICS = ("mAP", "mAP_voc", "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3", "OF1_top3")
CARD_METRICS = {
    "mAP": "mAP (mean of per-class non-interpolated AP, ML-Decoder/ASL definition)",
    "mAP_voc": "mAP (VOC all-point interpolated AP, Query2Label definition)",
    "CF1": "CF1 (per-class F1 at threshold)",
    "OF1": "OF1 (overall F1 at threshold)",
}

_FAMILIES = {
    "query2label": ("Query2Label", "query2label.md"),
    "ml_decoder": ("ML-Decoder", "ml_decoder.md"),
}

# Names `hf_mlcls.data.load_multilabel_dataset` knows, as people write them.
_DATASET_NAMES = {
    "coco2014": "MS-COCO 2014",
    "coco2017": "MS-COCO 2017",
    "coco": "MS-COCO",
    "voc2007": "PASCAL VOC 2007",
    "voc2012": "PASCAL VOC 2012",
    "nus-wide": "NUS-WIDE",
    "nuswide": "NUS-WIDE",
    "openimages-v6": "Open Images v6",
    "demo": "the hf_mlcls demo set (generated digit mosaics)",
}

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


# ----------------------------------------------------------------------------- evaluation JSON


def load_eval_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read the evaluation JSON of `examples/evaluate.py` and check its format (see docs/hub.md).

    Format: ``{"model": str, "dataset": str, "split": str, "num_samples": int,
    "metrics": {"mAP": float, "mAP_voc": float, "CP", "CR", "CF1", "OP", "OR", "OF1", "CF1_top3",
    "OF1_top3", ...}, "per_class_AP": {label: float}}`` with every number on a 0-100 scale.
    """
    path = Path(path)
    name = path.name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"evaluation file {name} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read evaluation file {name}: {err.__class__.__name__}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"evaluation file {name} is not valid JSON (line {err.lineno}: {err.msg})") from None
    return check_eval_results(data, source=name)


def check_eval_results(data: Any, source: str = "evaluation results") -> dict[str, Any]:
    """Validate an evaluation dict (see `load_eval_results`); returns it unchanged."""

    def fail(msg: str):
        raise UserError(f"{source}: {msg} (format: see docs/hub.md)")

    if not isinstance(data, dict):
        fail(f"expected a JSON object, got {type(data).__name__}")
    for key, kind in (("model", str), ("dataset", str), ("split", str), ("num_samples", int), ("metrics", dict)):
        if key not in data:
            fail(f"missing field {key!r}")
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            fail(f"field {key!r} must be {kind.__name__}, got {type(data[key]).__name__}")
    if data["num_samples"] < 1:
        fail(f"num_samples must be >= 1, got {data['num_samples']}")
    missing = [m for m in EVAL_METRICS if m not in data["metrics"]]
    if missing:
        fail(f"metrics lacks {', '.join(missing)}")
    for section in ("metrics", "per_class_AP"):
        values = data.get(section, {})
        if not isinstance(values, dict):
            fail(f"{section!r} must be an object of name -> number")
        for key, value in values.items():
            if value is None and section == "per_class_AP":
                continue  # a class without positives in the split: no AP (skipped, as the metrics do)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                fail(f"{section}[{key!r}] must be a finite number, got {value!r}")
            if section == "metrics" and key.startswith("num_"):
                if value < 0:
                    fail(f"metrics[{key!r}] is a count and must be >= 0, got {value}")
            elif not -1e-6 <= value <= 100 + 1e-6:
                fail(f"{section}[{key!r}] = {value} is outside 0-100 (numbers are percentages)")
    return data


# ----------------------------------------------------------------------------- cards


def _family(config) -> str:
    model_type = getattr(config, "model_type", None)
    if model_type not in _FAMILIES:
        raise UserError(f"not a Query2Label or ML-Decoder model (model_type {model_type!r})")
    return model_type


def _base_model(config) -> str | None:
    """The Hub id of the backbone's pretrained weights, when the backbone is a stock one."""
    if config.backbone_source == "transformers":
        return config.backbone if "/" in str(config.backbone) else None
    if config.backbone_kwargs:
        return None  # a modified architecture: no published weights match it
    try:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(config.backbone)
    except Exception:  # an unknown name: no base model to name
        return None
    return getattr(cfg, "hf_hub_id", None) or None


def build_card_data(
    config,
    eval_results: dict[str, Any] | None = None,
    *,
    model_name: str | None = None,
    license: str = "apache-2.0",
    datasets: list[str] | None = None,
    base_model: str | None = None,
    tags: list[str] | None = None,
) -> ModelCardData:
    """The card's YAML metadata: license, pipeline tag, tags, datasets, base model and `model-index`."""
    family = _family(config)
    dataset = eval_results["dataset"] if eval_results else None
    datasets = list(datasets) if datasets else ([dataset] if dataset else None)
    all_tags = ["image-classification", "multi-label-image-classification", family.replace("_", "-"), "hf_mlcls"]
    if getattr(config, "zero_shot", False):
        all_tags.append("zero-shot-image-classification")
    all_tags += [t for t in (tags or []) if t not in all_tags]
    results = None
    if eval_results:
        results = [
            EvalResult(
                task_type="image-classification",
                task_name="Multi-label image classification",
                dataset_type=dataset,
                dataset_name=_DATASET_NAMES.get(dataset.lower(), dataset),
                dataset_split=eval_results["split"],
                metric_type=metric,
                metric_name=description,
                metric_value=round(float(eval_results["metrics"][metric]), 2),
            )
            for metric, description in CARD_METRICS.items()
            if metric in eval_results["metrics"]
        ]
    return ModelCardData(
        model_name=model_name,
        license=license,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=all_tags,
        datasets=datasets,
        base_model=base_model if base_model is not None else _base_model(config),
        metrics=["mAP", "f1"] if results else None,
        eval_results=results,
    )


def _label_summary(config, shown: int = 20) -> tuple[list[str], int]:
    names = [config.id2label[i] for i in sorted(config.id2label)]
    return names[:shown], max(0, len(names) - shown)


def render_model_card(
    config,
    eval_results: dict[str, Any] | None = None,
    *,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    datasets: list[str] | None = None,
    base_model: str | None = None,
    tags: list[str] | None = None,
    provenance: str | None = None,
    eval_artifacts: list[str] | None = None,
    template_dir: str | os.PathLike | None = None,
) -> ModelCard:
    """Render the family's card template (`hub_cards/<family>.md`) for `config`.

    Args:
        config: a `Query2LabelConfig` or `MLDecoderConfig` (e.g. `model.config`).
        eval_results: the evaluation dict (`load_eval_results`); fills the table and `model-index`.
        repo_id: the Hub repository the card describes (used in the code snippets).
        provenance: how the weights were made (trained with ..., converted from ...); a sentence or two.
        eval_artifacts: repository paths of further evaluation files (per-class CSV, figures) to link.
    """
    family = _family(config)
    title, template_name = _FAMILIES[family]
    template_path = Path(template_dir or CARD_TEMPLATE_DIR) / template_name
    if not template_path.is_file():
        raise UserError(
            f"card template {template_name} not found; set HF_MLCLS_CARD_TEMPLATES to the hub_cards folder"
        )
    repo = repo_id or "your-name/your-model"
    card_data = build_card_data(
        config,
        eval_results,
        model_name=repo.split("/")[-1],
        license=license,
        datasets=datasets,
        base_model=base_model,
        tags=tags,
    )
    labels, more = _label_summary(config)
    per_class = None
    if eval_results and eval_results.get("per_class_AP"):
        ranked = sorted(((k, v) for k, v in eval_results["per_class_AP"].items() if v is not None), key=lambda kv: kv[1])
        skipped = sum(v is None for v in eval_results["per_class_AP"].values())
        per_class = {
            "weakest": ranked[:5],
            "strongest": ranked[::-1][:5],
            "count": len(ranked),
            "all": ranked[::-1] if len(ranked) <= 12 else None,
            "skipped": skipped,
        } if ranked else None
    metric_rows = []
    if eval_results:
        for metric, value in eval_results["metrics"].items():
            if metric.startswith("num_"):
                metric_rows.append((metric, f"{int(value)}"))
            else:
                metric_rows.append((metric, f"{value:.2f}"))
    group_size = None
    if family == "ml_decoder" and not config.zero_shot:
        group_size = math.ceil(config.num_labels / config.num_queries)
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        title=title,
        repo_id=repo,
        config=config,
        backbone=config.backbone,
        backbone_source=config.backbone_source,
        image_size=config.image_size,
        num_labels=config.num_labels,
        num_queries=getattr(config, "num_queries", config.num_labels),
        group_size=group_size,
        zero_shot=bool(getattr(config, "zero_shot", False)),
        labels=labels,
        more_labels=more,
        eval=eval_results,
        dataset_name=_DATASET_NAMES.get(str(eval_results["dataset"]).lower(), eval_results["dataset"])
        if eval_results
        else None,
        metric_rows=metric_rows,
        per_class=per_class,
        provenance=provenance,
        eval_artifacts=eval_artifacts or [],
    )


# ----------------------------------------------------------------------------- the upload folder


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
    from .models import MLDecoderForImageClassification, Query2LabelForImageClassification

    return Query2LabelForImageClassification if family == "query2label" else MLDecoderForImageClassification


def _write_remote_code(config_path: Path, folder: Path, family: str) -> None:
    """Copy the installed package's model code into `folder` and point `auto_map` at it."""
    from . import models

    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        if path.name != "__init__.py":
            shutil.copyfile(path, folder / path.name)
    model_class = _model_class(family)
    data = json.loads(config_path.read_text(encoding="utf-8"))
    data["auto_map"] = dict(model_class._remote_code_map)
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _remote_code_complete(folder: Path, auto_map: dict | None) -> bool:
    if not auto_map:
        return False
    seen: set[str] = set()
    todo = [ref.split(".")[0] for ref in auto_map.values() if isinstance(ref, str)]
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
    if not _remote_code_complete(out_dir, config_dict.get("auto_map")):
        _write_remote_code(config_path, out_dir, family)

    from transformers import AutoConfig

    from . import models  # noqa: F401  (registers the config classes)

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


# ----------------------------------------------------------------------------- uploading


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import HTTPError  # the HTTP client's base error (not an OSError everywhere)

        errors.append(HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def _resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    if not token:
        try:
            token = get_token()
        except Exception as err:  # e.g. a failed OIDC token exchange
            raise UserError(f"could not get a Hugging Face token ({err.__class__.__name__}); pass --token") from None
    if not token:
        raise UserError(
            "no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token "
            "(a token with write access, from https://huggingface.co/settings/tokens)"
        )
    return token


def _explain(err: BaseException, what: str) -> UserError:
    """One sentence for a failed Hub call: offline, unauthorised, not found, or unreachable."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return UserError(f"cannot {what}: offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return UserError(f"cannot {what}: the Hub refused the token (HTTP {status}); check it has write access")
    if status is not None:
        return UserError(f"cannot {what}: the Hub answered HTTP {status}")
    return UserError(f"cannot {what}: the Hub could not be reached ({err.__class__.__name__}); check the network")


def _preflight(token: str | None, repo_id: str) -> str:
    """The token to use; fails before any work when there is none or the Hub is switched off."""
    from huggingface_hub import constants

    token = _resolve_token(token)
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot upload to {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it to upload")
    return token


def _upload(folder: Path, repo_id: str, *, repo_type: str, token, private, commit_message, endpoint, space_sdk=None):
    from huggingface_hub import HfApi

    token = _preflight(token, repo_id)
    what = f"upload to {repo_id}"
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        info = api.upload_folder(
            repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), commit_message=commit_message
        )
    except _network_errors() as err:
        raise _explain(err, what) from None
    return getattr(info, "commit_url", None) or str(info)


def push_to_hub(
    folder,
    repo_id: str,
    *,
    dry_run: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
    eval_json: str | os.PathLike | dict | None = None,
    eval_artifacts: list[str | os.PathLike] | None = None,
    endpoint: str | None = None,
    **card_kwargs,
) -> dict[str, Any]:
    """Upload a model folder (or model object) to `repo_id` in one commit.

    The upload folder is built by `prepare_upload_folder` in a temporary folder (or in `dry_run`, which
    is then kept and nothing is uploaded). `card_kwargs` go to `render_model_card` (license, datasets,
    base_model, tags, provenance). Returns ``{"folder", "files", "skipped", "commit_url"}``.
    """
    _check_repo_id(repo_id)
    if dry_run is not None:
        result = prepare_upload_folder(
            folder, dry_run, repo_id=repo_id, eval_json=eval_json, eval_artifacts=eval_artifacts, **card_kwargs
        )
        return dict(result, commit_url=None)
    _preflight(token, repo_id)
    with tempfile.TemporaryDirectory(prefix="hf_mlcls_push_") as tmp:
        result = prepare_upload_folder(
            folder, Path(tmp) / "upload", repo_id=repo_id, eval_json=eval_json, eval_artifacts=eval_artifacts,
            **card_kwargs,
        )
        url = _upload(
            result["folder"],
            repo_id,
            repo_type="model",
            token=token,
            private=private,
            commit_message=commit_message or "Upload model, card and evaluation results with hf_mlcls",
            endpoint=endpoint,
        )
    return dict(result, folder=None, commit_url=url)


def _check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}", repo_id or "") or ".." in repo_id:
        raise UserError(f"repository id {repo_id!r} is not of the form owner/name")


# ----------------------------------------------------------------------------- the Space


def prepare_space_folder(
    out_dir: str | os.PathLike,
    *,
    models: list[str] | None = None,
    hf_mlcls_requirement: str | None = None,
    space_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the Space (`spaces/`) into `out_dir` as it is uploaded.

    By default the `hf_mlcls` package source goes along (as `hf_mlcls/` beside `app.py`, so the Space
    runs the code of this checkout); `hf_mlcls_requirement` (e.g. ``"hf_mlcls==0.1.0"``) installs it from
    PyPI instead. `models` sets the default model list (`HF_MLCLS_MODELS` in the README's front matter
    is not touched: the app reads the environment variable first, then this list).
    """
    space = Path(space_dir) if space_dir else SPACE_DIR
    if not (space / "app.py").is_file():
        raise UserError("the Space files (spaces/app.py) are not part of this installation; run from a checkout")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(space.rglob("*")):
        rel = path.relative_to(space)
        if "__pycache__" in rel.parts or path.suffix == ".pyc" or path.is_dir():
            continue
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out_dir / rel)
    requirements = out_dir / "requirements.txt"
    lines = requirements.read_text(encoding="utf-8").splitlines() if requirements.exists() else []
    if hf_mlcls_requirement:
        lines.append(hf_mlcls_requirement)
    else:
        package = Path(__file__).resolve().parent
        shutil.copytree(package, out_dir / "hf_mlcls", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if models:
        (out_dir / "models.txt").write_text("\n".join(models) + "\n", encoding="utf-8")
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    return {"folder": out_dir, "files": files}


def deploy_space(
    repo_id: str,
    *,
    dry_run: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    models: list[str] | None = None,
    hf_mlcls_requirement: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Upload the Gradio Space to `repo_id` (a Space repository, created with sdk gradio) in one commit."""
    _check_repo_id(repo_id)
    if dry_run is not None:
        return dict(prepare_space_folder(dry_run, models=models, hf_mlcls_requirement=hf_mlcls_requirement), url=None)
    _preflight(token, repo_id)
    with tempfile.TemporaryDirectory(prefix="hf_mlcls_space_") as tmp:
        result = prepare_space_folder(Path(tmp) / "space", models=models, hf_mlcls_requirement=hf_mlcls_requirement)
        url = _upload(
            result["folder"],
            repo_id,
            repo_type="space",
            token=token,
            private=private,
            commit_message=commit_message or "Deploy the hf_mlcls Space",
            endpoint=endpoint,
            space_sdk="gradio",
        )
    return dict(result, folder=None, url=url)
