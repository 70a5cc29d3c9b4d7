"""Running a loaded model: probabilities and cross-attention maps, and zero-shot scoring of typed names.

The model's own image processor (`AutoImageProcessor` of its folder) makes the pixel values, exactly as
`hf-mlcls predict` and the Hub widget would; this module never resizes or normalises by itself.
"""

from __future__ import annotations

import importlib
import re

import numpy as np
import torch

from ..models.fast_cpu import fast_model
from .environment import MAX_ZERO_SHOT_LABELS, UserFacingError, safe_name, scrub
from .store import LoadedModel

__all__ = ["check_label_names", "label_encoder", "parse_label_names", "preprocess", "run_model", "score_label_names"]


def preprocess(loaded: LoadedModel, images) -> torch.Tensor:
    """`pixel_values` of RGB images, from the model's own image processor."""
    return loaded.processor(images=list(images), return_tensors="pt")["pixel_values"]


def _has_no_label_set(loaded: LoadedModel) -> bool:
    embeddings = getattr(getattr(loaded.model, "model", None), "label_embeddings", None)
    return embeddings is not None and bool(torch.isnan(embeddings).any())


@torch.inference_mode()
def run_model(loaded: LoadedModel, images) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) and last-layer cross-attention maps (N, Q, h, w)."""
    with loaded.lock:
        if loaded.zero_shot and _has_no_label_set(loaded):
            raise UserFacingError(
                f"**{loaded.name}** is a zero-shot model without a label set: use the **Zero-shot** tab "
                "and type the labels you want."
            )
        pixel_values = preprocess(loaded, images)
        try:
            # the fast CPU path where it applies (fast_cpu.fast_model: built once per loaded model)
            out = fast_model(loaded.model)(pixel_values=pixel_values, output_attentions=True)
        except ValueError as err:
            raise UserFacingError(f"The model could not process these images: {scrub(err)}") from None
        scores = torch.sigmoid(out.logits.float()).numpy()
        maps = out.cross_attentions[-1].float().numpy()
    return scores, maps


def parse_label_names(text: str) -> list[str]:
    """Typed label names: split at commas, semicolons and new lines, spaces collapsed, case-blind duplicates dropped."""
    names, seen = [], set()
    for part in re.split(r"[,\n;]", text or ""):
        name = " ".join(part.split())[:60]
        if name and name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    return names


def label_encoder(loaded: LoadedModel, names: list[str]):
    """The model's text encoder (``config.text_encoder``) and, for word vectors, the typed words it lacks.

    Raises a `UserFacingError` naming the encoder (never its folder) when it is not available here, and
    naming the labels when a word-vector encoder knows none of their words.
    """
    model = loaded.model
    # the model's own package: hf_mlcls.models, or the remote-code module a Hub folder ships
    text_encoding = importlib.import_module(type(model).__module__.rsplit(".", 1)[0] + ".text_encoding")
    spec = getattr(model.config, "text_encoder", None)
    try:
        encoder = text_encoding.get_text_encoder(spec)
    except (OSError, ValueError) as err:
        raise UserFacingError(
            f"**{loaded.name}** embeds label names with `{safe_name(spec or 'all-MiniLM-L6-v2')}`, which this Space "
            f"cannot load ({type(err).__name__}), so it cannot score typed names here."
        ) from None
    if not hasattr(encoder, "check_words"):  # sentence encoders embed any text
        return encoder, {}
    try:
        unknown, lost = encoder.check_words(names)
    except (OSError, ValueError) as err:
        raise UserFacingError(f"**{loaded.name}**: its word vectors `{safe_name(spec)}` cannot be read: {scrub(err)[:200]}") from None
    if lost:
        raise UserFacingError(
            f"**{loaded.name}** scores labels with word vectors, and none of the words of "
            + ", ".join(f"“{n}”" for n in lost[:10]) + " has one. Try other words (single common English words work best)."
        )
    return encoder, unknown


def check_label_names(labels_text: str) -> list[str]:
    """The typed names, or a `UserFacingError` when there are none or too many."""
    names = parse_label_names(labels_text)
    if not names:
        raise UserFacingError("Type one or more label names, separated by commas or new lines.")
    if len(names) > MAX_ZERO_SHOT_LABELS:
        raise UserFacingError(f"At most {MAX_ZERO_SHOT_LABELS} labels at once, got {len(names)}.")
    return names


def score_label_names(loaded: LoadedModel, image, labels_text: str):
    """Score typed label names on one image with a zero-shot ML-Decoder model (through its `use_label_names`).

    Returns ``(names, scores (L,), maps (L, h, w), unknown_words)`` in the model's order; the model keeps
    its own label set afterwards.
    """
    names = check_label_names(labels_text)
    if not loaded.zero_shot:
        raise UserFacingError(
            f"**{loaded.name}** is a {loaded.family_name} model with a fixed set of {loaded.config.num_labels} labels. "
            "Zero-shot needs an ML-Decoder zero-shot model (`zero_shot=True`): pick one in the model list."
        )
    if not hasattr(loaded.model, "use_label_names"):
        raise UserFacingError(
            f"**{loaded.name}** is zero-shot, but its code cannot turn label names into queries for a while "
            "(`use_label_names` is missing): install a newer `hf_mlcls` with text-encoder support."
        )
    with loaded.lock:
        model = loaded.model
        encoder, unknown = label_encoder(loaded, names)
        # the model's own label-set swap: the Classify tab finds the model as it was, also after an error
        with model.use_label_names(names, text_encoder=encoder):
            names = [model.config.id2label[i] for i in range(model.config.num_labels)]  # the model's order
            with torch.inference_mode():
                out = model(pixel_values=preprocess(loaded, [image]), output_attentions=True)
            scores = torch.sigmoid(out.logits.float())[0].numpy()
            maps = out.cross_attentions[-1][0].float().numpy()
    return names, scores, maps, unknown
