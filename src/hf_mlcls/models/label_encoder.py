"""The interface every label encoder of zero-shot ML-Decoder implements (``text_encoding`` picks one).

Relative imports only: this file ships with a saved model as Hub remote code.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence

from torch import Tensor

__all__ = ["LabelEncoder", "file_state"]


def file_state(path: str) -> str:
    """A file's path, size and modification time (or "missing"): part of an encoder's fingerprint."""
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


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
