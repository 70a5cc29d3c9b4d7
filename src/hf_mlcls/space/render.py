"""What the page shows, from stored scores and maps: colour map, attention overlays, score views, captions.

Nothing here runs a model; moving a slider or picking a label re-renders from the session's results.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .environment import DISPLAY_SIDE

__all__ = [
    "attention_caption",
    "attention_overlay",
    "display_size",
    "empty_state",
    "heat_colors",
    "image_choices",
    "label_choices",
    "predicted_line",
    "result_rows",
    "top_labels",
]


def empty_state() -> dict:
    """A session's results: model, labels, image names, display images, scores (N, C), maps (N, Q, h, w)."""
    return {"model": None, "labels": [], "names": [], "images": [], "scores": [], "maps": [], "group_size": 1,
            "family": None}


def heat_colors(values: np.ndarray) -> np.ndarray:
    """A perceptual dark-blue -> teal -> yellow colour map (viridis-like), values in [0, 1]."""
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)
    positions = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(values, positions, anchors[:, c]) for c in range(3)], axis=-1)


def display_size(size: tuple[int, int], side: int = DISPLAY_SIDE) -> tuple[int, int]:
    """`size` scaled (up or down) so that its longer side is `side`, aspect ratio kept."""
    width, height = size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def attention_overlay(image: Image.Image, grid: np.ndarray, side: int = DISPLAY_SIDE) -> Image.Image:
    """An (h, w) attention map blended over the image, both at the display size (longer side `side`).

    Small images (a 64-px mosaic) are enlarged too, so the map fills the panel instead of sitting in its
    corner as a thumbnail.
    """
    size = display_size(image.size, side)
    resample = Image.Resampling.LANCZOS if max(image.size) > side else Image.Resampling.BICUBIC
    shown = image.resize(size, resample) if image.size != size else image.copy()
    grid = np.asarray(grid, dtype=np.float32)
    grid = (grid - grid.min()) / (float(grid.max() - grid.min()) or 1.0)
    heat = np.asarray(Image.fromarray(grid, mode="F").resize(size, Image.Resampling.BICUBIC))
    heat = np.clip(heat, 0, 1)[..., None]
    base = np.asarray(shown.convert("RGB"), dtype=np.float32)
    alpha = 0.15 + 0.6 * heat
    blended = base * (1 - alpha) + heat_colors(heat[..., 0]) * alpha
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))


def result_rows(state: dict, threshold: float) -> list[dict]:
    """Every label of every image, best first: image, rank, label, score, predicted (score >= threshold)."""
    rows = []
    for name, scores in zip(state["names"], state["scores"]):
        order = np.argsort(-np.asarray(scores), kind="stable")
        for rank, j in enumerate(order, start=1):
            rows.append({"image": name, "rank": rank, "label": state["labels"][j], "score": round(float(scores[j]), 4),
                         "predicted": bool(scores[j] >= threshold)})
    return rows


def top_labels(state: dict, index: int, threshold: float) -> list[str]:
    """The labels of image `index` at or above the threshold, best first."""
    scores = np.asarray(state["scores"][index])
    return [state["labels"][j] for j in np.argsort(-scores, kind="stable") if scores[j] >= threshold]


def predicted_line(state: dict, index: int, threshold: float) -> str:
    name = state["names"][index]
    predicted = top_labels(state, index, threshold)
    if predicted:
        return f"**{name}**: {len(predicted)} label(s) at score ≥ {threshold:.2f}: " + ", ".join(
            f"**{p}**" for p in predicted
        )
    return f"**{name}**: no label reaches {threshold:.2f}; lower the threshold to see weaker guesses."


def image_choices(state: dict) -> list[tuple[str, int]]:
    return [(f"{i + 1}. {name}", i) for i, name in enumerate(state["names"])]


def label_choices(state: dict, index: int) -> list[tuple[str, int]]:
    scores = np.asarray(state["scores"][index])
    order = np.argsort(-scores, kind="stable")
    return [(f"{state['labels'][j]} ({scores[j]:.2f})", int(j)) for j in order]


def attention_caption(state: dict, index: int, label: int) -> tuple[int, str]:
    """The query that answers for `label` (its group's query for ML-Decoder) and a caption saying so."""
    scores = np.asarray(state["scores"][index])
    maps = state["maps"][index]
    g = state["group_size"]
    query = label // g
    name = state["labels"][label]
    if state["family"] == "query2label" or g == 1:
        caption = (f"Where the query of **{name}** looked (score {scores[label]:.2f}): cross-attention of the last "
                   "decoder layer, averaged over heads. Bright = more attention.")
    else:
        members = state["labels"][query * g: query * g + g]
        others = [m for m in members if m != name]
        caption = (f"ML-Decoder answers with {len(maps)} group queries of {g} labels each. **{name}** "
                   f"(score {scores[label]:.2f}) is answered by query {query + 1}, which also answers for "
                   f"{', '.join(others) or 'no other label'}; the map is that query's cross-attention.")
    return query, caption
