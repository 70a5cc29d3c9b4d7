"""One rule for class names, wherever they come from (a class list, a label cell, COCO categories, VOC
objects, Open Images descriptions): a name is a string; it is NFC-normalised, every Unicode space (NBSP,
thin space ...) becomes a plain space, and white space and invisible format characters (zero-width space,
byte-order mark ...) at either end are removed. What is left must be non-empty and hold no control or
invisible format character. Two names equal after this are the same name: in a class list that is a
duplicate (an error), in label cells it is one class."""

from __future__ import annotations

import functools
import unicodedata
from typing import Any, Sequence

from ..errors import DatasetLayoutError

__all__ = ["check_class_names", "normalise_class_name"]


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf")


@functools.lru_cache(maxsize=65536)
def _clean(text: str) -> tuple[str, str]:
    """(normalised name, "") or ("", why it is refused)."""
    if text.isascii() and text.isprintable() and text == text.strip():
        return (text, "") if text else ("", "is empty")
    name = unicodedata.normalize("NFC", text)
    name = "".join(" " if unicodedata.category(c) == "Zs" else c for c in name)
    start, end = 0, len(name)
    while start < end and (name[start].isspace() or _invisible(name[start])):
        start += 1
    while end > start and (name[end - 1].isspace() or _invisible(name[end - 1])):
        end -= 1
    name = name[start:end]
    if not name:
        return "", "is empty (or only white space and invisible characters)"
    hidden = next((c for c in name if _invisible(c)), None)
    if hidden is not None:
        return "", f"holds the invisible character U+{ord(hidden):04X} ({unicodedata.name(hidden, 'control')}); remove it"
    return name, ""


def normalise_class_name(value: Any, where: str) -> str:
    """``value`` as a class name under the rule above, or a :class:`DatasetLayoutError` naming ``where``."""
    if not isinstance(value, str):
        raise DatasetLayoutError(
            f"{where}: class name {value!r} is a {type(value).__name__}, not a string; write each name as text"
        )
    name, why = _clean(value)
    if why:
        raise DatasetLayoutError(f"{where}: class name {value!r} {why}")
    return name


def check_class_names(names: Sequence[Any], source: str) -> list[str]:
    """A class list, each name normalised; empty lists and names equal after normalisation are refused."""
    names = [normalise_class_name(n, f"{source}: entry {i + 1}") for i, n in enumerate(names)]
    if not names:
        raise DatasetLayoutError(f"{source}: the class list is empty")
    seen: dict[str, int] = {}
    dupes = []
    for i, n in enumerate(names):
        if n in seen:
            dupes.append(n)
        seen[n] = i
    if dupes:
        raise DatasetLayoutError(
            f"{source}: duplicated class name(s) {sorted(set(dupes))} (names are compared after Unicode NFC "
            "normalisation and removing white space at the ends); give each class one name"
        )
    return names
