"""Model cards: YAML metadata with `model-index`, and the body rendered from the family's template.

The templates (`templates/query2label.md`, `templates/ml_decoder.md`) are package data, read through
`importlib.resources`; `HF_MLCLS_CARD_TEMPLATES` (or `template_dir=`) names a folder of replacements.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..errors import UserError

__all__ = ["CARD_METRICS", "build_card_data", "card_template", "render_model_card"]

# Metrics that go into `model-index`.
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

def _dataset_title(name: str) -> str:
    """How a card names a dataset: its title in the dataset registry, else the name as given."""
    from ..data.registry import find_dataset

    spec = find_dataset(name)
    return spec.title if spec is not None and spec.title else name


def card_template(name: str, template_dir: str | os.PathLike | None = None) -> str:
    """The text of card template `name`: from `template_dir`, else `HF_MLCLS_CARD_TEMPLATES`, else the package."""
    folder = template_dir or os.environ.get("HF_MLCLS_CARD_TEMPLATES")
    if folder:
        path = Path(folder) / name
        if not path.is_file():
            raise UserError(f"card template {name} not found in {path.parent.name or folder} (HF_MLCLS_CARD_TEMPLATES)")
        return path.read_text(encoding="utf-8")
    resource = resources.files(__package__) / "templates" / name
    if not resource.is_file():
        raise UserError(f"card template {name} is missing from this hf_mlcls installation; reinstall the package")
    return resource.read_text(encoding="utf-8")


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
                dataset_name=_dataset_title(dataset),
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
    """Render the family's card template (`hf_mlcls/hub/templates/<family>.md`, or the same
    file name in `template_dir` / `HF_MLCLS_CARD_TEMPLATES`) for `config`.

    Args:
        config: a `Query2LabelConfig` or `MLDecoderConfig` (e.g. `model.config`).
        eval_results: the evaluation dict (`load_eval_results`); fills the table and `model-index`.
        repo_id: the Hub repository the card describes (used in the code snippets).
        provenance: how the weights were made (trained with ..., converted from ...); a sentence or two.
        eval_artifacts: repository paths of further evaluation files (per-class CSV, figures) to link.
    """
    family = _family(config)
    title, template_name = _FAMILIES[family]
    template = card_template(template_name, template_dir)
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
    group_size = config.group_size if family == "ml_decoder" and not config.zero_shot else None
    return ModelCard.from_template(
        card_data,
        template_str=template,
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
        dataset_name=_dataset_title(str(eval_results["dataset"])) if eval_results else None,
        metric_rows=metric_rows,
        per_class=per_class,
        provenance=provenance,
        eval_artifacts=eval_artifacts or [],
    )
