"""Checks of the paths a user names for output, made before any work (light: no torch, no transformers)."""

from __future__ import annotations

import os


def check_writable_folder(path: str, flag: str) -> None:
    """Refuse, with a ``ValueError`` naming ``flag``, a folder path that cannot be created or written: an
    existing file, a path under a file, or a place without write permission. Nothing is created."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a file, not a folder; give a folder (new or one of yours)")
    ancestor = os.path.abspath(path)
    while not os.path.exists(ancestor):
        parent = os.path.dirname(ancestor)
        if parent == ancestor:
            break
        ancestor = parent
    if not os.path.isdir(ancestor):
        raise ValueError(f"{flag} {path!r} lies under {ancestor!r}, which is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r}: no permission to write in {ancestor!r}; choose a folder you can write")
