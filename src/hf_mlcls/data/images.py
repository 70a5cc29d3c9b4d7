"""Safe image opening: any file PIL reads becomes an 8-bit RGB image (or a (3, H, W)
uint8 tensor), and a cheap load-time check tells a usable file from a missing, empty,
truncated or corrupt one.

Decoding follows the one policy of the model's image processor,
:func:`hf_mlcls.models.image_processing_multilabel.to_rgb` (re-exported here as ``to_rgb``):
EXIF orientation applied, transparency composited on white, 16-bit and float images
scaled to 8 bits (see docs/preprocessing.md)."""

from __future__ import annotations

import io
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence, Union

import numpy as np
import PIL.Image

from ..errors import ImageOpenError
from ..models.image_processing_multilabel import to_rgb

__all__ = [
    "VERIFY_LEVELS",
    "ImageOpenError",
    "PathGuard",
    "check_image_file",
    "check_image_files",
    "open_rgb",
    "open_rgb_tensor",
    "to_rgb",
]

#: Levels of the load-time image check, cheapest first.
#: ``"none"``: trust the paths; ``"exists"``: one ``stat`` per file (exists, regular,
#: non-empty); ``"header"``: also let PIL parse and ``verify()`` the file and, for a JPEG,
#: find its end-of-image marker (a full decode only when that marker is missing);
#: ``"decode"``: fully decode every image.
VERIFY_LEVELS = ("none", "exists", "header", "decode")

ImageLike = Union[PIL.Image.Image, str, os.PathLike, bytes, dict]


def _source_name(source: Any) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or "<bytes>")
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    return os.fspath(source)


def open_rgb(source: ImageLike, draft_size: Optional[tuple[int, int]] = None) -> PIL.Image.Image:
    """Open ``source`` and return a loaded 8-bit RGB image.

    ``source`` is a PIL image, a path, raw bytes, or a ``datasets.Image`` storage dict
    (``{"path": ..., "bytes": ...}``: bytes win when present). ``draft_size=(width,
    height)`` lets a JPEG be decoded at 1/2, 1/4 or 1/8 scale as long as the result
    is still at least that large: a cheap speed-up when the target is much smaller
    than the file, at the cost of a slightly different (DCT-domain) downscale.
    Any failure raises :class:`ImageOpenError` naming the file.
    """
    if isinstance(source, PIL.Image.Image):
        return to_rgb(source)
    name = _source_name(source)
    try:
        if isinstance(source, dict):
            data = source.get("bytes")
            if data is not None:
                fp: Any = io.BytesIO(data)
            elif source.get("path"):
                fp = source["path"]
            else:
                raise ValueError("storage dict has neither bytes nor path")
        elif isinstance(source, (bytes, bytearray)):
            fp = io.BytesIO(source)
        else:
            fp = os.fspath(source)
        with PIL.Image.open(fp) as image:
            if draft_size is not None and image.format == "JPEG":
                image.draft("RGB", tuple(draft_size))
            image.load()
            return to_rgb(image)
    except ImageOpenError:
        raise
    except Exception as exc:  # PIL raises many types: OSError, SyntaxError, ValueError...
        raise ImageOpenError(f"cannot read image {name}: {type(exc).__name__}: {exc}") from exc


def _read_source(source: Any) -> bytes:
    if isinstance(source, dict):
        data = source.get("bytes")
        if data is not None:
            return bytes(data)
        if not source.get("path"):
            raise ValueError("storage dict has neither bytes nor path")
        source = source["path"]
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    with open(os.fspath(source), "rb") as fh:
        return fh.read()


def _rgb_to_tensor(image: PIL.Image.Image):
    import torch

    # np.array (not asarray): a writable copy, so the tensor may be changed in place
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def open_rgb_tensor(source: ImageLike, draft_size: Optional[tuple[int, int]] = None):
    """Open ``source`` as a (3, H, W) uint8 RGB tensor.

    A colour or greyscale JPEG is decoded by ``torchvision.io.decode_jpeg`` (libjpeg-turbo,
    the same library and settings Pillow uses: the pixels equal :func:`open_rgb`'s), which
    skips PIL's image object and the copy out of it. Everything else goes through
    :func:`open_rgb`: other formats, CMYK JPEGs, JPEGs with an EXIF orientation, a JPEG that ``draft_size`` lets decode at
    a reduced scale (a DCT-domain downscale, faster than any decode at full size), and a
    JPEG torchvision refuses (PIL then reads it, or raises). The tensor may be a
    channels-last view (strides (1, 3W, 3)) of the decoded pixels. Any failure raises
    :class:`ImageOpenError` naming the file.
    """
    import torch

    if isinstance(source, PIL.Image.Image):
        return _rgb_to_tensor(to_rgb(source))
    name = _source_name(source)
    try:
        data = _read_source(source)
    except Exception as exc:
        raise ImageOpenError(f"cannot read image {name}: {type(exc).__name__}: {exc}") from exc
    if data[:3] == b"\xff\xd8\xff":
        try:
            with PIL.Image.open(io.BytesIO(data)) as header:  # reads the header only
                mode, size = header.mode, header.size
                if header.getexif().get(0x0112, 1) not in (None, 0, 1):
                    mode = None  # EXIF-rotated: open_rgb turns it upright (decode_jpeg would not)
                reduced = False
                if draft_size is not None:
                    header.draft("RGB", tuple(draft_size))
                    reduced = header.size != size
                if reduced:
                    header.load()
                    return _rgb_to_tensor(to_rgb(header))
        except Exception:
            mode = None  # let open_rgb name the problem
        if mode in ("RGB", "L"):
            from torchvision.io import ImageReadMode, decode_jpeg

            try:
                return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
            except RuntimeError:
                pass  # truncated or unusual: PIL decides (it raises, or reads it if told to)
    return _rgb_to_tensor(open_rgb({"bytes": data, "path": name}))


def _jpeg_has_end_marker(path: str, size: int) -> bool:
    # A complete JPEG ends with FF D9; tolerate a little trailing padding.
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 1024))
        tail = fh.read()
    return b"\xff\xd9" in tail


class PathGuard:
    """Tells whether an image path, symlinks resolved, stays inside one of ``roots`` (the dataset folder and
    the layout's image folder, each itself resolved: an image folder that is a link to another disk is the
    user's choice and stays allowed). A link *inside* them that points elsewhere is what it catches.

    Each folder is resolved once (``realpath`` of every distinct parent, cached); each file costs one
    ``lstat``, plus a ``realpath`` only when it is itself a link.
    """

    def __init__(self, roots: Sequence[str]):
        self.roots = tuple(dict.fromkeys(os.path.realpath(r) for r in roots))
        self._prefixes = tuple(r.rstrip(os.sep) + os.sep for r in self.roots)
        self._dirs: dict[str, str] = {}

    def _inside(self, path: str) -> bool:
        return path in self.roots or path.startswith(self._prefixes)

    def outside_target(self, path: str) -> Optional[str]:
        """None when ``path`` resolves inside the roots (or does not exist), else where it really points."""
        folder, name = os.path.split(path)
        real = self._dirs.get(folder)
        if real is None:
            real = self._dirs[folder] = os.path.realpath(folder)
        target = os.path.join(real, name)
        if os.path.islink(target):
            target = os.path.realpath(target)
        return None if self._inside(target) else target


def check_image_file(path: str, level: str = "header", guard: Optional[PathGuard] = None) -> Optional[str]:
    """Return ``None`` when the file passes the ``level`` check, else a reason.

    Reasons start with one of ``missing``, ``empty``, ``not a file``, ``corrupt`` or
    ``truncated`` (the part before ``:`` is what the load report counts), or ``escapes``
    when ``guard`` finds the path, links resolved, outside the dataset folder. Anything
    but a regular file (a named pipe, a socket, a device) is "not a file" and never opened.
    """
    if level == "none":
        return None
    if guard is not None:
        try:
            target = guard.outside_target(path)
        except OSError as exc:
            return f"missing: {exc.strerror}"
        if target is not None:
            return f"escapes: a link to {target}, outside {' and '.join(guard.roots)}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"missing: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a file"
    if st.st_size == 0:
        return "empty"
    if level == "exists":
        return None
    try:
        with PIL.Image.open(path) as image:
            fmt = image.format
            image.verify()
    except Exception as exc:
        return f"corrupt: {type(exc).__name__}: {exc}"
    need_decode = level == "decode"
    if fmt == "JPEG" and not need_decode:
        try:
            need_decode = not _jpeg_has_end_marker(path, st.st_size)
        except OSError as exc:
            return f"corrupt: {exc}"
    if need_decode:
        try:
            with PIL.Image.open(path) as image:
                image.load()
        except Exception as exc:
            text = str(exc)
            kind = "truncated" if "truncated" in text.lower() else "corrupt"
            return f"{kind}: {type(exc).__name__}: {text}"
    return None


def check_image_files(
    paths: Sequence[str], level: str = "header", num_threads: int = 8, guard: Optional[PathGuard] = None
) -> list[Optional[str]]:
    """:func:`check_image_file` over many files; file checks are I/O bound, so
    ``"header"`` and ``"decode"`` use a thread pool."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify level must be one of {VERIFY_LEVELS}, got {level!r}")
    if level == "none":
        return [None] * len(paths)
    from ..progress import progress

    paths = list(paths)
    shown = dict(desc=f"checking images ({level})", total=len(paths), unit="img", min_total=2000)
    if level == "exists" or num_threads <= 1 or len(paths) < 64:
        return [check_image_file(p, level, guard) for p in progress(paths, **shown)]
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        return list(progress(pool.map(lambda p: check_image_file(p, level, guard), paths), **shown))
