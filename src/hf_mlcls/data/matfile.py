"""A minimal reader for MATLAB level-5 MAT files (the format of ``save`` up to ``-v7``).

Written here because the Stanford Cars devkit ships its annotations as ``.mat`` files
and scipy (whose ``scipy.io.loadmat`` reads them) is not a dependency of this package.
It reads what such annotation files hold: numeric arrays, character arrays, cell
arrays and struct arrays, each possibly zlib-compressed (``miCOMPRESSED``, the ``-v7``
default), little- or big-endian. Sparse, object and function-handle arrays and the
HDF5-based ``-v7.3`` files are refused with a message naming the file.
Format: MathWorks, "MAT-File Format", level 5 (the ``miMATRIX`` layout).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from .core import DatasetLayoutError

__all__ = ["MatFileError", "read_mat"]

# data types of a data element's tag
_NUMERIC_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
MI_MATRIX, MI_COMPRESSED, MI_UTF8, MI_UTF16, MI_UTF32 = 14, 15, 16, 17, 18
# array classes of a miMATRIX's flags
MX_CELL, MX_STRUCT, MX_OBJECT, MX_CHAR, MX_SPARSE = 1, 2, 3, 4, 5
_NUMERIC_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}


class MatFileError(DatasetLayoutError):
    """A MAT file this reader cannot read, or a damaged one (names the file)."""


class _Reader:
    def __init__(self, data: bytes, order: str, path: str) -> None:
        self.data, self.order, self.path, self.pos = data, order, path, 0

    def fail(self, message: str) -> MatFileError:
        return MatFileError(f"{self.path}: {message}")

    def tag(self) -> tuple[int, int, int]:
        """(type, byte count, start of data); advances past the tag."""
        if self.pos + 8 > len(self.data):
            raise self.fail(f"truncated data element tag at byte {self.pos}")
        first, second = struct.unpack_from(self.order + "II", self.data, self.pos)
        if first >> 16:  # small data element: type and size packed in 4 bytes, data in the next 4
            start = self.pos + 4
            self.pos += 8
            return first & 0xFFFF, first >> 16, start
        start = self.pos + 8
        if start + second > len(self.data):
            raise self.fail(f"data element at byte {self.pos} claims {second} bytes, past the end of the file")
        self.pos = start + second + (-second % 8 if first != MI_COMPRESSED else 0)
        return first, second, start

    def element(self) -> tuple[int, bytes]:
        kind, size, start = self.tag()
        return kind, self.data[start : start + size]

    def numbers(self, what: str) -> np.ndarray:
        kind, raw = self.element()
        if kind not in _NUMERIC_TYPES:
            raise self.fail(f"{what}: expected numbers, found data type {kind}")
        dtype = np.dtype(_NUMERIC_TYPES[kind]).newbyteorder(self.order)
        if len(raw) % dtype.itemsize:
            raise self.fail(f"{what}: {len(raw)} bytes is not a whole number of {dtype.itemsize}-byte values")
        return np.frombuffer(raw, dtype=dtype)


def _text(kind: int, raw: bytes, order: str) -> str:
    if kind in (MI_UTF8, 1, 2):
        return raw.decode("utf-8", errors="replace")
    if kind in (MI_UTF16, 4, 3):
        return raw.decode("utf-16-le" if order == "<" else "utf-16-be", errors="replace")
    if kind in (MI_UTF32, 6, 5):
        return raw.decode("utf-32-le" if order == "<" else "utf-32-be", errors="replace")
    raise ValueError(kind)


def _matrix(raw: bytes, order: str, path: str, name_hint: str) -> tuple[str, Any]:
    """(name, value) of the contents of one miMATRIX element."""
    if not raw:
        return "", np.zeros((0, 0))
    r = _Reader(raw, order, path)
    flags = r.numbers(f"{name_hint}: array flags")
    if flags.size < 1:
        raise r.fail(f"{name_hint}: empty array flags")
    cls, complex_ = int(flags[0]) & 0xFF, bool(int(flags[0]) & 0x0800)
    dims = tuple(int(d) for d in r.numbers(f"{name_hint}: dimensions"))
    kind, name_raw = r.element()
    name = name_raw.decode("latin-1").rstrip("\x00")
    where = name or name_hint
    count = int(np.prod(dims)) if dims else 0
    if cls in _NUMERIC_CLASSES:
        real = r.numbers(f"{where}: values").astype(_NUMERIC_CLASSES[cls])
        if real.size != count:
            raise r.fail(f"{where}: {real.size} values for dimensions {dims}")
        if complex_:
            real = real + 1j * r.numbers(f"{where}: imaginary values")
        return name, real.reshape(dims, order="F")
    if cls == MX_CHAR:
        kind, chars = r.element()
        try:
            if kind in (1, 2, 3, 4, 5, 6):  # code units stored as integers
                dtype = np.dtype(_NUMERIC_TYPES[kind]).newbyteorder(order)
                units = np.frombuffer(chars, dtype=dtype).reshape(dims, order="F") if count else np.zeros(dims, dtype=dtype)
                rows = ["".join(chr(int(c)) for c in row) for row in units.reshape(dims[0], -1)] if count else []
            else:
                text = _text(kind, chars, order)
                rows = [text] if len(dims) == 2 and dims[0] == 1 else [text[i::dims[0]] for i in range(dims[0])] if count else []
        except (ValueError, KeyError):
            raise r.fail(f"{where}: unreadable character data (type {kind})") from None
        return name, rows[0] if len(rows) == 1 else rows
    if cls == MX_CELL:
        cells = np.empty(count, dtype=object)
        for i in range(count):
            kind, sub = r.element()
            if kind != MI_MATRIX:
                raise r.fail(f"{where}{{{i + 1}}}: expected an array, found data type {kind}")
            cells[i] = _matrix(sub, order, path, f"{where}{{{i + 1}}}")[1]
        return name, cells.reshape(dims, order="F")
    if cls == MX_STRUCT:
        length = r.numbers(f"{where}: field name length")
        if length.size != 1 or int(length[0]) <= 0:
            raise r.fail(f"{where}: bad field name length")
        width = int(length[0])
        _, names_raw = r.element()
        fields = [names_raw[i : i + width].split(b"\x00", 1)[0].decode("latin-1") for i in range(0, len(names_raw), width)]
        items = np.empty(count, dtype=object)
        for i in range(count):
            record = {}
            for f in fields:
                kind, sub = r.element()
                if kind != MI_MATRIX:
                    raise r.fail(f"{where}({i + 1}).{f}: expected an array, found data type {kind}")
                record[f] = _matrix(sub, order, path, f"{where}({i + 1}).{f}")[1]
            items[i] = record
        return name, items.reshape(dims, order="F")
    kinds = {MX_SPARSE: "sparse", MX_OBJECT: "object", 16: "function handle", 17: "opaque"}
    raise r.fail(f"{where}: {kinds.get(cls, f'class {cls}')} arrays are not supported by this reader")


def read_mat(path: str) -> dict[str, Any]:
    """The variables of a level-5 MAT file: ``{name: value}``.

    Numeric arrays come back as numpy arrays of the file's shape (column-major, as
    MATLAB's), character arrays as ``str`` (one row) or a list of ``str``, cell arrays as
    object arrays, struct arrays as object arrays of ``{field: value}`` dicts.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise MatFileError(f"{path}: cannot read: {exc}") from exc
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise MatFileError(f"{path}: a MATLAB -v7.3 (HDF5) file; only level-5 MAT files (save -v7 or older) are read")
    if len(data) < 128 or not data[:6] == b"MATLAB":
        raise MatFileError(f"{path}: not a MATLAB level-5 MAT file (no 'MATLAB' header)")
    marker = data[126:128]
    if marker == b"IM":
        order = "<"
    elif marker == b"MI":
        order = ">"
    else:
        raise MatFileError(f"{path}: not a MATLAB level-5 MAT file (endian marker {marker!r})")
    out: dict[str, Any] = {}
    top = _Reader(data, order, path)
    top.pos = 128
    index = 0
    while top.pos < len(data):
        if len(data) - top.pos < 8:
            break  # trailing padding
        kind, raw = top.element()
        index += 1
        if kind == MI_COMPRESSED:
            try:
                raw = zlib.decompress(raw)
            except zlib.error as exc:
                raise MatFileError(f"{path}: variable {index}: damaged compressed data ({exc})") from None
            inner = _Reader(raw, order, path)
            kind, raw = inner.element()
        if kind != MI_MATRIX:
            continue  # MATLAB writes only arrays at the top level; skip anything else
        name, value = _matrix(raw, order, path, f"variable {index}")
        out[name or f"variable{index}"] = value
    return out
