"""Progress bars for long work (checking a dataset's images, converting, predicting, evaluating).

One switch turns them off: ``HF_MLCLS_QUIET=1`` in the environment (what ``hf-mlcls --quiet`` and
``evaluate.py --quiet`` set), and they are off by default when ``CI`` is set. Short jobs show no bar.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Optional

_FALSE = ("", "0", "false", "no", "off")


def is_quiet() -> bool:
    """True when progress should not be shown: ``HF_MLCLS_QUIET`` set, or running under CI."""
    quiet = os.environ.get("HF_MLCLS_QUIET")
    if quiet is not None:
        return quiet.strip().lower() not in _FALSE
    return os.environ.get("CI", "").strip().lower() not in _FALSE


def set_quiet(quiet: bool = True) -> None:
    """Turn our progress bars, and those of transformers, datasets and huggingface_hub, off (or on)."""
    os.environ["HF_MLCLS_QUIET"] = "1" if quiet else "0"
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"


def progress(iterable: Iterable, *, desc: str, total: Optional[int] = None, unit: str = "it", min_total: int = 0) -> Any:
    """``iterable`` wrapped in a tqdm bar on stderr, unless quiet or shorter than ``min_total``."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if is_quiet() or (total is not None and total < min_total):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, dynamic_ncols=True)


def step(message: str) -> None:
    """One line on stderr for a long step with no natural count (e.g. conversion stages), unless quiet."""
    if not is_quiet():
        import sys

        print(f"... {message}", file=sys.stderr, flush=True)
