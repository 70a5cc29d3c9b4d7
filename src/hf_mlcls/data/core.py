"""What every loader shares: errors, safe image paths, the load-time image check, the
load report, and turning parsed rows into a ``datasets.Dataset`` without a per-row
Python encode."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DatasetLayoutError, InvalidImageError, MissingDatasetFileError, SkippedImagesWarning
from .class_names import check_class_names  # noqa: F401  (importable from here as before)
from .images import VERIFY_LEVELS, PathGuard, check_image_files

__all__ = [
    "DatasetLayoutError",
    "MissingDatasetFileError",
    "InvalidImageError",
    "SkippedImagesWarning",
    "SplitRows",
    "build_dataset",
    "load_report",
    "resolve_image_path",
    "resolve_splits",
    "require_file",
]

#: ``verify_images="auto"`` checks headers up to this many images per split, and only
#: existence/size above it (see docs/datasets.md for the measured cost).
AUTO_HEADER_LIMIT = 50_000

REPORT_KEY = "hf_mlcls"


def write_folder_atomically(folder: str, build: Callable[[str], None], is_current: Callable[[str], bool]) -> None:
    """Build a generated dataset in a temporary sibling of ``folder`` (``build(tmp)``) and rename it into place.

    A crash never leaves a half-written set: the old folder is moved aside until the new one is in place, and
    removed after. When another process renames its copy in first, that copy is kept if ``is_current(folder)``
    says it is the same set; otherwise the old folder comes back and the error is raised.
    """
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=parent)
    try:
        build(tmp)
        old = None
        if os.path.exists(folder):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.old-", dir=parent)
            os.rename(folder, os.path.join(old, "data"))
        try:
            os.rename(tmp, folder)
        except OSError:
            # another process put a folder there first; use it when it is the same set
            if not is_current(folder):
                if old is not None and not os.path.exists(folder):
                    os.rename(os.path.join(old, "data"), folder)
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def warn_skipped(message: str) -> None:
    """Warn with :class:`SkippedImagesWarning`, attributed to the first caller outside
    this package (the line that asked for the dataset)."""
    here = os.path.dirname(os.path.abspath(__file__))
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, SkippedImagesWarning, stacklevel=level + 1)


def require_file(path: str, what: str, layout: str, *, directory: bool = False) -> str:
    """Return ``path`` or raise :class:`MissingDatasetFileError` naming it and the layout."""
    ok = os.path.isdir(path) if directory else os.path.isfile(path)
    if not ok:
        kind = "folder" if directory else "file"
        raise MissingDatasetFileError(f"{what}: expected {kind} {path} does not exist.\nExpected layout:\n{layout}")
    return path


def is_valid_path_text(text: str) -> bool:
    """Non-empty, no NUL byte, and encodable for the file system (a JSON ``\\ud800``
    escape gives a lone surrogate, which no file name can hold)."""
    if not text or "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def utf8_text(path: str):
    """Around the reading of a text file: a byte sequence that is not UTF-8 becomes a
    :class:`DatasetLayoutError` naming the file and line (instead of a bare
    ``UnicodeDecodeError`` that names neither)."""
    try:
        yield
    except UnicodeDecodeError as exc:
        line = ""
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            raw.decode("utf-8")
        except UnicodeDecodeError as again:
            line = ":" + str(raw.count(b"\n", 0, again.start) + 1)
        except OSError:
            pass
        raise DatasetLayoutError(
            f"{path}{line}: not UTF-8 text ({exc.reason}: byte {exc.object[exc.start:exc.start + 1]!r}); "
            "save the file as UTF-8"
        ) from None


def resolve_image_path(root: str, image_dir: str, name: str, where: str) -> str:
    """Join ``name`` onto ``image_dir`` and refuse anything that lands outside ``root``.

    This check is lexical (``normpath``: ``../`` and absolute paths); links are resolved
    when the images are checked (:class:`~hf_mlcls.data.images.PathGuard`, through
    ``SplitRows.image_roots``), where a link out of the dataset folder and image folder
    is refused while an image folder that is itself a link to another disk still works.
    ``where`` names the row for the error (file and line, or image id).
    """
    text = str(name)
    if not is_valid_path_text(text):
        raise DatasetLayoutError(f"{where}: invalid image path {text!r}")
    path = os.path.normpath(os.path.join(image_dir, text))
    if path != root and not path.startswith(root + os.sep):
        raise DatasetLayoutError(f"{where}: image path {text!r} escapes the dataset folder {root}; refusing it")
    return path


@dataclass
class SplitRows:
    """Parsed rows of one split before the image check.

    ``labels`` / ``unknown_labels`` / ``negative_labels`` hold class indices per row.
    ``refs`` names each row for messages (``file:line`` or ``image id``).
    """

    paths: list[str] = field(default_factory=list)
    labels: Any = field(default_factory=list)
    unknown_labels: Any = None
    negative_labels: Any = None
    refs: Any = None
    source: str = ""
    extra_report: dict = field(default_factory=dict)
    #: folders the images must resolve into, links included (the dataset folder, the layout's image folder)
    image_roots: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def ref(self, i: int) -> Optional[str]:
        if self.refs is None:
            return None
        return self.refs(i) if callable(self.refs) else self.refs[i]


def resolve_splits(
    splits: Union[None, str, Sequence[str], Mapping[str, Any]],
    layout_splits: Mapping[str, Any],
    required: Sequence[str],
    exists: "callable",
) -> tuple[dict[str, Any], set[str]]:
    """Decide which splits to load.

    ``layout_splits`` maps our split names to the layout's own (file or set names).
    ``splits=None`` loads the ``required`` splits (each must exist) and every other
    layout split found on disk; a list of names loads exactly those; a mapping
    ``{our_name: native_name}`` renames. Returns the mapping and the set of splits
    the caller must treat as required (missing -> error naming the path).
    """
    if splits is None:
        chosen = {name: native for name, native in layout_splits.items() if name in required or exists(native)}
        return chosen, set(required)
    if isinstance(splits, str):
        splits = [splits]
    if isinstance(splits, Mapping):
        chosen = dict(splits)
    else:
        chosen = {}
        for name in splits:
            if name not in layout_splits:
                raise ValueError(f"unknown split {name!r}; this layout has {sorted(layout_splits)} (or pass a mapping {{split: native name}})")
            chosen[name] = layout_splits[name]
    if not chosen:
        raise ValueError("splits= selects no split")
    return chosen, set(chosen)


def _verify_level(verify_images: Union[bool, str], n: int) -> str:
    if verify_images is True:
        return "header"
    if verify_images is False or verify_images is None:
        return "none"
    if verify_images == "auto":
        return "header" if n <= AUTO_HEADER_LIMIT else "exists"
    if verify_images not in VERIFY_LEVELS:
        raise ValueError(f"verify_images must be True, False, 'auto' or one of {VERIFY_LEVELS}, got {verify_images!r}")
    return verify_images


def _label_feature(class_names: Sequence[str]) -> datasets.List:
    return datasets.List(datasets.ClassLabel(names=list(class_names)))


def build_features(class_names: Sequence[str], unknown: bool = False, negative: bool = False) -> datasets.Features:
    spec: dict[str, Any] = {"image": datasets.Image(), "labels": _label_feature(class_names)}
    if unknown:
        spec["unknown_labels"] = _label_feature(class_names)
    if negative:
        spec["negative_labels"] = _label_feature(class_names)
    return datasets.Features(spec)


def _string_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.string())
    return pa.array(values, type=pa.string())


def _list_array(rows: Any) -> pa.Array:
    """Class-index lists as an arrow ``list<int64>`` (loaders that already built one
    with ``pa.ListArray.from_arrays`` skip the Python lists entirely)."""
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    if isinstance(rows, pa.Array):
        return rows.cast(pa.list_(pa.int64()))
    return pa.array(rows, type=pa.list_(pa.int64()))


def screen_images(
    paths: Sequence[str],
    level: str,
    ref: Optional[Callable[[int], Any]],
    *,
    dataset_name: str,
    split: str,
    strict: bool,
    num_threads: int = 8,
    guard: Optional[PathGuard] = None,
) -> tuple[Optional[list[int]], list[int], Counter, list[dict]]:
    """Check a split's image files at ``level``: ``(keep, bad, counts by reason, up to 20 examples)``;
    ``keep`` is None when every image is good (no index list for a split of millions).

    Bad images are refused with ``strict`` (InvalidImageError listing them), refused when none is left
    (DatasetLayoutError), and otherwise skipped with one warning; ``ref(i)`` names row i in the examples.
    A path that ``guard`` finds resolving outside the dataset folder (a link out) is refused, whatever ``strict``.
    """
    n = len(paths)
    reasons = check_image_files(paths, level, num_threads=num_threads, guard=guard)
    out = next((i for i, r in enumerate(reasons) if r is not None and r.startswith("escapes")), None)
    if out is not None:
        row = f"{ref(out)}: " if ref is not None else ""
        raise DatasetLayoutError(
            f"{dataset_name} split {split!r}: {row}image {paths[out]} escapes the dataset folder: "
            f"{reasons[out].split(': ', 1)[1]}; refusing it "
            "(copy the file into the dataset folder, or link the whole image folder)"
        )
    bad = [i for i, r in enumerate(reasons) if r is not None]
    counts: Counter = Counter()
    examples: list[dict] = []
    if not bad:
        return None, bad, counts, examples
    for i in bad:
        counts[reasons[i].split(":", 1)[0]] += 1
    for i in bad[:20]:
        entry = {"path": paths[i], "reason": reasons[i]}
        if ref is not None:
            entry["row"] = ref(i)
        examples.append(entry)
    if strict:
        lines = "\n".join(f"  {e['path']}: {e['reason']}" + (f" ({e['row']})" if "row" in e else "") for e in examples)
        raise InvalidImageError(f"{dataset_name} split {split!r}: {len(bad)} bad image(s) with strict=True:\n{lines}")
    keep = [i for i, r in enumerate(reasons) if r is None]
    if not keep:
        raise DatasetLayoutError(
            f"{dataset_name} split {split!r}: every one of its {n} images is unusable "
            f"({dict(counts)}); first: {examples[0]['path']} ({examples[0]['reason']})"
        )
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    warn_skipped(
        f"{dataset_name} split {split!r}: skipped {len(bad)} of {n} images ({summary}); "
        f"first: {examples[0]['path']} ({examples[0]['reason']}). Counts are in the split's load report."
    )
    return keep, bad, counts, examples


def first_repeat(paths) -> Optional[tuple[int, int, str]]:
    """``(first, again, path)`` for the first path listed twice (a list or an Arrow array), else None."""
    if isinstance(paths, (pa.Array, pa.ChunkedArray)):
        if pc.count_distinct(paths).as_py() == len(paths):
            return None
        paths = paths.to_pylist()
    first: dict[str, int] = {}
    for i, p in enumerate(paths):
        j = first.setdefault(p, i)
        if j != i:
            return j, i, p
    return None


def _refuse_repeated_images(rows: SplitRows, dataset_name: str, split: str) -> None:
    """Two rows naming one image file (two COCO ids, two list lines) would train and score it twice, maybe
    with two label sets: refused, naming both rows."""
    repeat = first_repeat(rows.paths)
    if repeat is not None:
        j, i, p = repeat
        a, b = rows.ref(j) or f"row {j}", rows.ref(i) or f"row {i}"
        raise DatasetLayoutError(
            f"{dataset_name} split {split!r}: {b} names the image file {p} again (first at {a}); "
            "give each image one row holding all its labels"
        )


def build_dataset(
    rows: SplitRows,
    class_names: Sequence[str],
    *,
    dataset_name: str,
    split: str,
    verify_images: Union[bool, str] = "auto",
    strict: bool = False,
    options: Optional[dict] = None,
    num_threads: int = 8,
) -> datasets.Dataset:
    """Check the images, drop (or, with ``strict``, refuse) bad ones, and build the split.

    The load report (counts of skipped rows by reason, examples, the options that
    shaped the split) goes into ``dataset.info.description`` as JSON under the key
    ``"hf_mlcls"``; :func:`load_report` reads it back. It survives
    ``save_to_disk``/``load_from_disk``, ``select``, ``filter`` and ``with_transform``.
    """
    if len(rows) == 0:
        raise DatasetLayoutError(f"{dataset_name} split {split!r} is empty ({rows.source or 'no rows'})")
    level = _verify_level(verify_images, len(rows))
    path_list = rows.paths
    _refuse_repeated_images(rows, dataset_name, split)
    if isinstance(path_list, (pa.Array, pa.ChunkedArray)) and level != "none":
        path_list = path_list.to_pylist()
    keep, bad, counts, examples = screen_images(
        path_list, level, rows.ref if rows.refs is not None else None,
        dataset_name=dataset_name, split=split, strict=strict, num_threads=num_threads,
        guard=PathGuard(rows.image_roots) if rows.image_roots else None,
    )
    if bad:
        keep_array = pa.array(keep, type=pa.int64())

        def pick(col):
            if col is None:
                return None
            if isinstance(col, (pa.Array, pa.ChunkedArray)):
                return col.take(keep_array)
            return [col[i] for i in keep]

        paths, labels = pick(rows.paths), pick(rows.labels)
        unknown, negative = pick(rows.unknown_labels), pick(rows.negative_labels)
    else:
        paths, labels, unknown, negative = rows.paths, rows.labels, rows.unknown_labels, rows.negative_labels

    features = build_features(class_names, unknown is not None, negative is not None)
    n = len(paths)
    columns = {
        "image": pa.StructArray.from_arrays(
            [pa.nulls(n, type=pa.binary()), _string_array(paths)], names=["bytes", "path"]
        ),
        "labels": _list_array(labels),
    }
    if unknown is not None:
        columns["unknown_labels"] = _list_array(unknown)
    if negative is not None:
        columns["negative_labels"] = _list_array(negative)
    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    skipped = {"total": len(bad), **dict(sorted(counts.items()))}
    report = {
        "dataset": dataset_name,
        "split": split,
        "source": rows.source,
        "num_rows": n,
        "num_classes": len(class_names),
        "verify_images": level,
        "skipped": skipped,
        "skipped_examples": examples,
        "options": options or {},
        **rows.extra_report,
    }
    info = datasets.DatasetInfo(
        description=json.dumps({REPORT_KEY: report}, sort_keys=True),
        features=features,
        dataset_name=dataset_name,
    )
    return datasets.Dataset(table, info=info, split=datasets.NamedSplit(split))


def load_report(dataset: Union[datasets.Dataset, datasets.DatasetDict]) -> dict:
    """The load report of a split (or ``{split: report}`` for a ``DatasetDict``).

    Keys: ``dataset``, ``split``, ``source``, ``num_rows``, ``num_classes``,
    ``verify_images`` (the level used), ``skipped`` (``{"total": n, reason: n}``),
    ``skipped_examples`` (up to 20 ``{"path", "reason", "row"}``), ``options``, and
    loader-specific counts (e.g. ``dropped_labels``). Empty dict when the dataset did
    not come from this package.
    """
    if isinstance(dataset, datasets.DatasetDict):
        return {name: load_report(ds) for name, ds in dataset.items()}
    text = dataset.info.description or ""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data.get(REPORT_KEY, {}) if isinstance(data, dict) else {}


def skipped_count(dataset: Union[datasets.Dataset, datasets.DatasetDict]) -> Union[int, dict]:
    """Number of rows skipped at load time (per split for a ``DatasetDict``)."""
    if isinstance(dataset, datasets.DatasetDict):
        return {name: skipped_count(ds) for name, ds in dataset.items()}
    return int(load_report(dataset).get("skipped", {}).get("total", 0))


def unknown_names_error(source: str, unknown: Iterable[str], class_names: Sequence[str], hint: str = "") -> DatasetLayoutError:
    unknown = sorted(set(unknown))
    shown = ", ".join(repr(u) for u in unknown[:50]) + (" ..." if len(unknown) > 50 else "")
    known = ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")
    return DatasetLayoutError(
        f"{source}: {len(unknown)} label name(s) not in the class list: {shown}. Known classes ({len(class_names)}): {known}.{hint}"
    )


def merge_dict(splits: Mapping[str, datasets.Dataset]) -> datasets.DatasetDict:
    dd = datasets.DatasetDict()
    for name, ds in splits.items():
        dd[name] = ds
    return dd


def read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DatasetLayoutError(f"{what}: cannot read {path}: {exc}") from exc


def parse_json_bytes(raw: bytes, path: str, what: str) -> Any:
    """Parse JSON (with ``orjson`` when it is installed: 2-3x faster), with the
    garbage collector paused: a big annotation file makes millions of containers,
    and the collections they trigger would double the parse time. A syntax error
    names the file, line and column."""
    if raw[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark (Windows editors write one): not part of the JSON
        raw = raw[3:]
    enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            import orjson
        except ImportError:
            return json.loads(raw)
        return orjson.loads(raw)
    except RecursionError:  # the standard library's parser on absurdly deep nesting
        raise DatasetLayoutError(f"{what}: malformed JSON in {path}: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise DatasetLayoutError(f"{what}: malformed JSON in {path} at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DatasetLayoutError(f"{what}: {path} is not UTF-8 text ({exc})") from None
    finally:
        if enabled:
            gc.enable()


def read_json_file(path: str, what: str) -> Any:
    """:func:`parse_json_bytes` of a file."""
    return parse_json_bytes(read_bytes(path, what), path, what)
