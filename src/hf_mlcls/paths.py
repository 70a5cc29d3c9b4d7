"""Checks of the paths a user names for output, made before any work, and how reports, predictions
and EMA weights are written whole (light: no torch, no transformers). The label-embedding cache in
models/ keeps its own copy of the pattern: that package ships as a model's remote code and may
import nothing from outside it."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator


def nearest_existing(path: str) -> str:
    """``path`` made absolute if it exists, else the nearest path above it that does (at most the root)."""
    above = os.path.abspath(path)
    while not os.path.exists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    return above


def check_writable_folder(path: str, flag: str) -> None:
    """Refuse, with a ``ValueError`` naming ``flag``, a folder path that cannot be created or written: an
    existing file, a path under a file, or a place without write permission. Nothing is created."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a file, not a folder; give a folder (new or one of yours)")
    ancestor = nearest_existing(path)
    if not os.path.isdir(ancestor):
        raise ValueError(f"{flag} {path!r} lies under {ancestor!r}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r}: no permission to write in {ancestor!r}; choose a folder you can write")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` to write the new file to: when the block ends without an error, the
    file written there replaces ``path`` in one step, so a reader (or a crash) never meets a half-written
    file and the previous version stays whole until then; on an error the temporary file is removed and
    the error goes on. The file is created by the caller, with the usual permissions."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
