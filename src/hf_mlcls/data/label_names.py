"""Class names and label tokens, the same way for every loader: what a label cell may hold, how a
class name is normalised, and how tokens become class indices once every split has been read."""

from __future__ import annotations

import ast
import json
import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

import numpy as np

from .class_names import _clean, check_class_names, normalise_class_name
from .core import DatasetLayoutError, require_file, unknown_names_error, utf8_text

if TYPE_CHECKING:
    from .tabular import _RawSplit

__all__ = ["MAX_INDEX_CLASSES", "parse_label_cell", "read_class_list"]


#: Labels given as bare indices (no ``classes=``) name classes "0".."N-1"; an index this
#: large is a typo or an id column, not a class (Open Images has 19,958 labels in all).
MAX_INDEX_CLASSES = 100_000

_INT_TEXT = re.compile(r"-?[0-9]+")


class QuotedName(str):
    """A label written as a quoted string inside a list (``["3"]`` in JSON, ``['3']`` in a Python literal):
    a class name even when it looks like a number. Bare text cells (``3|5``) stay plain ``str``, which
    ``label_type="auto"`` may read as indices."""


def _label_token(value: Any) -> Union[int, str]:
    """One element of a label list: an int (not a bool) is an index, a string a (normalised) name;
    anything else (null, a float, a list, an object) is refused, never turned into text."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str):
        return QuotedName(_text_token(value))
    raise ValueError(
        f"label {value!r} is a {type(value).__name__}; a label is a class name (a string) or a class index (an integer)"
    )


def _text_token(text: str) -> str:
    name, why = _clean(text)
    if why:
        raise ValueError(f"label {text!r} {why}")
    return name


def parse_label_cell(cell: Any, separator: str = "|") -> list:
    """A label cell as a list of tokens: ``int`` indices, ``str`` names (normalised, see
    :mod:`.class_names`).

    A list holds ints (indices) and strings (names: :class:`QuotedName`); a string that starts with ``[``
    is read as a JSON or Python list literal (``["cat", "dog"]``, ``['cat', 'dog']``, ``[0, 3]``) under
    the same rule; any other string is split on ``separator``; empty or null means no label. Anything
    else (a boolean, a float, an object, a nested list) is a ``ValueError`` naming the value.
    """
    if cell is None:
        return []
    if isinstance(cell, (list, tuple)):
        return [_label_token(v) for v in cell]
    if isinstance(cell, (bool, np.bool_)) or not isinstance(cell, (str, int, np.integer)):
        raise ValueError(
            f"label cell {cell!r} is a {type(cell).__name__}; expected a list of names or indices, or a string"
        )
    if isinstance(cell, (int, np.integer)):
        return [int(cell)]
    text = cell.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            try:
                value = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
                shown = text if len(text) <= 80 else text[:77] + "..."
                raise ValueError(f"label list {shown!r} is neither JSON nor a Python list literal ({str(exc)[:200]})") from None
        if not isinstance(value, (list, tuple)):
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise ValueError(f"label list {shown!r} is not a list")
        return [_label_token(v) for v in value]
    return [_text_token(t) for t in text.split(separator) if t.strip()]


def read_class_list(path: str) -> list[str]:
    """Class names from a text file, one per line (blank lines ignored)."""
    require_file(path, "class list", "  one class name per line")
    with open(path, encoding="utf-8-sig") as fh, utf8_text(path):
        names = [normalise_class_name(line.rstrip("\r\n"), f"{path}:{n}") for n, line in enumerate(fh, 1) if line.strip()]
    return check_class_names(names, path)


def _class_option(classes: Union[None, str, Sequence[str]], data_dir: Optional[str]) -> Optional[list[str]]:
    if classes is None:
        if data_dir and os.path.isfile(os.path.join(data_dir, "classes.txt")):
            return read_class_list(os.path.join(data_dir, "classes.txt"))
        return None
    if isinstance(classes, (str, os.PathLike)):
        path = os.fspath(classes)
        if data_dir and not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        return read_class_list(path)
    return check_class_names(list(classes), "classes=")


def _is_int_token(t: Any) -> bool:
    """An index: an int, or bare text of ASCII digits (a quoted name never is; nor are Unicode digits)."""
    if isinstance(t, bool):
        return False
    if isinstance(t, (int, np.integer)):
        return True
    return isinstance(t, str) and not isinstance(t, QuotedName) and _INT_TEXT.fullmatch(t.strip()) is not None



class _LabelResolver:
    """Turns label tokens into class indices once every split has been read, so the
    class list (given, or the sorted union of names) is the same for all splits."""

    def __init__(self, classes: Optional[list[str]], label_type: str, drop_unlisted: bool):
        if label_type not in ("auto", "name", "index"):
            raise ValueError(f"label_type must be 'auto', 'name' or 'index', got {label_type!r}")
        self.classes = classes
        self.label_type = label_type
        self.drop_unlisted = drop_unlisted
        self.dropped: dict[str, int] = {}

    def finalize(self, splits: Iterable[_RawSplit]) -> list[str]:
        splits = list(splits)
        all_tokens = [t for s in splits for col in (s.tokens, s.unknown_tokens or []) for row in col for t in row]
        mode = self.label_type
        if mode == "auto":
            if self.classes is not None and all(not isinstance(t, int) and t in self._index() for t in all_tokens):
                mode = "name"
            elif all_tokens and all(_is_int_token(t) for t in all_tokens):
                mode = "index"
            else:
                mode = "name"
        self.mode = mode
        if self.classes is None:
            if mode == "index":
                bad = next(
                    ((s.refs[r], t) for s in splits for col in (s.tokens, s.unknown_tokens or [])
                     for r, row in enumerate(col) for t in row if not _is_int_token(t)),
                    None,
                )
                if bad is not None:
                    raise DatasetLayoutError(f"{bad[0]}: label {bad[1]!r} is not a class index (label_type='index')")
                top = max((int(t) for t in all_tokens), default=-1)
                if top >= MAX_INDEX_CLASSES:
                    where = next(
                        (s.refs[r] for s in splits for col in (s.tokens, s.unknown_tokens or [])
                         for r, row in enumerate(col) if any(_is_int_token(t) and int(t) == top for t in row)),
                        "?",
                    )
                    raise DatasetLayoutError(
                        f"{where}: label index {top} would make {top + 1} classes (unnamed indices must be below "
                        f"{MAX_INDEX_CLASSES}); pass classes= (a list or a classes.txt) to name the classes"
                    )
                self.classes = [str(i) for i in range(top + 1)]
            else:
                self.classes = sorted({str(t) for t in all_tokens if not isinstance(t, int)})
        if not self.classes:
            raise DatasetLayoutError(
                f"{', '.join(s.source for s in splits)}: no row holds a label and no classes= was given, so there is no "
                "class; label the rows or pass classes= (a list or a classes.txt)"
            )
        return self.classes

    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_idx"):
            self._idx = {c: i for i, c in enumerate(self.classes or [])}
        return self._idx

    def convert(self, raw: _RawSplit, tokens: list[list]) -> list[list[int]]:
        index = self._index()
        n = len(self.classes)
        out, unknown = [], {}
        for row, toks in enumerate(tokens):
            ids = set()
            for t in toks:
                if self.mode == "index":
                    if not _is_int_token(t) or not 0 <= int(t) < n:
                        raise DatasetLayoutError(f"{raw.refs[row]}: label {t!r} is not a class index in [0, {n})")
                    ids.add(int(t))
                else:
                    if isinstance(t, int):
                        raise DatasetLayoutError(
                            f"{raw.refs[row]}: label {t!r} is an index, but this dataset's labels are class names; "
                            "write every label the same way (all names, or all indices with label_type='index')"
                        )
                    i = index.get(t)
                    if i is None:
                        if self.drop_unlisted:
                            self.dropped[str(t)] = self.dropped.get(str(t), 0) + 1
                        else:
                            unknown.setdefault(str(t), raw.refs[row])
                        continue
                    ids.add(i)
            out.append(sorted(ids))
        if unknown:
            first = "; ".join(f"{k!r} at {v}" for k, v in list(unknown.items())[:5])
            raise unknown_names_error(
                raw.source, unknown, self.classes, f" First seen: {first}. Pass drop_unlisted_labels=True to drop them."
            )
        return out
