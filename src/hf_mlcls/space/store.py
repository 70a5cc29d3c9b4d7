"""Models loaded on first use, each under its own lock; the most recent few stay in memory."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
import torch

from .environment import MAX_LOADED_MODELS, UserFacingError, scrub

__all__ = ["LoadedModel", "ModelStore", "load_model"]


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    processor: object  # the model's own image processor (AutoImageProcessor of its folder)
    family: str  # "query2label" or "ml_decoder"
    lock: threading.RLock

    @property
    def config(self):
        return self.model.config

    @property
    def labels(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]

    @property
    def zero_shot(self) -> bool:
        return bool(getattr(self.config, "zero_shot", False))

    @property
    def group_size(self) -> int:
        """Labels per query: 1 for Query2Label and zero-shot ML-Decoder, ceil(C/K) for ML-Decoder."""
        if self.family != "ml_decoder" or self.zero_shot:
            return 1
        return self.model.classifier.group_size  # the layer's own, as it splits its logits

    @property
    def family_name(self) -> str:
        return "Query2Label" if self.family == "query2label" else "ML-Decoder"

    def describe(self) -> str:
        c = self.config
        extra = ""
        if self.family == "ml_decoder":
            extra = " zero-shot," if self.zero_shot else f" {c.num_queries} group queries ({self.group_size} labels each),"
        return (f"**{self.name}**: {self.family_name},{extra} {c.num_labels} labels, backbone `{c.backbone}`, "
                f"{c.image_size} px")


def load_model(name: str, source: str) -> LoadedModel:
    """Model and image processor of a local folder or Hub id; any failure is one page message."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    if os.path.isabs(source) and not os.path.isdir(source):
        raise UserFacingError(f"Could not load model **{name}**: its folder does not exist. Pick another model.")
    try:
        model = AutoModelForImageClassification.from_pretrained(source)
        processor = AutoImageProcessor.from_pretrained(source)
    except Exception as err:  # anything: missing, offline, corrupt weights, wrong format
        detail = scrub(str(err).strip().splitlines()[0] if str(err).strip() else "")[:200]
        raise UserFacingError(
            f"Could not load model **{name}** ({type(err).__name__}{': ' + detail if detail else ''}). "
            "Pick another model."
        ) from None
    family = getattr(model.config, "model_type", "")
    if family not in ("query2label", "ml_decoder"):
        raise UserFacingError(f"**{name}** is a `{family}` model, not a Query2Label or ML-Decoder one.")
    return LoadedModel(name, model.eval(), processor, family, threading.RLock())


class ModelStore:
    """Loads models on first use and keeps the most recent few in memory.

    A model loads under its own lock, so a slow first load (a large download) holds up only the
    requests for that model; the others are served meanwhile.
    """

    _load = staticmethod(load_model)  # (name, source) -> LoadedModel; a subclass may wrap it

    def __init__(self, sources: "OrderedDict[str, str]", capacity: int = MAX_LOADED_MODELS):
        self.sources = sources
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # guards the two dicts only, never held while loading
        self._loading: dict[str, threading.Lock] = {}

    def _cached(self, name: str) -> LoadedModel | None:
        with self._lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            return None

    def get(self, name: str) -> LoadedModel:
        if name not in self.sources:
            raise UserFacingError("Unknown model: pick one from the list.")
        loaded = self._cached(name)
        if loaded is not None:
            return loaded
        with self._lock:
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load per model at a time
            loaded = self._cached(name)  # loaded by the request we waited for
            if loaded is not None:
                return loaded
            loaded = self._load(name, self.sources[name])
            with self._lock:
                self._models[name] = loaded
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            return loaded
