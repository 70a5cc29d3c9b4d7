"""Label vectors from a word-vector file: GloVe / word2vec text, or a torch array such as the ML-Decoder
authors' ``wordvec_array.pth`` (read with ``weights_only=True``).

Relative imports only: this file ships with a saved model as Hub remote code.
"""

from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import json
import os
import re
import threading
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from .label_encoder import LabelEncoder, file_state

__all__ = ["ARRAY_SUFFIXES", "TEXT_SUFFIXES", "UnknownWordsWarning", "WordVectorEncoder"]

ARRAY_SUFFIXES = (".pth", ".pt")  # torch files
TEXT_SUFFIXES = (".txt", ".vec", ".gz", ".glove", ".w2v")


class UnknownWordsWarning(UserWarning):
    """Some words of some labels have no vector in the word-vector file."""


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
        self.kind = "array" if self.path.lower().endswith(ARRAY_SUFFIXES) else "text"
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
            state = file_state(self.path)
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
        parts = [f"wordvec:{self.kind}", file_state(self.path)]
        if self.vocabulary is not None:
            parts.append(hashlib.sha256("\n".join(self.vocabulary).encode()).hexdigest())
        elif self.kind == "array":
            parts.append(file_state(os.path.join(os.path.dirname(self.path), "data.csv")))
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
