"""`hf-mlcls`: one command, one sub-command per module in `hf_mlcls/commands/`.

Each module there defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status.
User errors (bad paths, bad files, missing tokens) print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from . import commands
from .errors import UserError  # noqa: F401  (hf_mlcls.cli.UserError: the same class, kept importable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-mlcls", description="Query2Label and ML-Decoder multi-label classification")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars or step lines (also HF_MLCLS_QUIET=1; off by default when CI is set)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


#: errors a user causes and can fix; printed as one line (set HF_MLCLS_TRACEBACK=1 to see the traceback)
USER_ERRORS = (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError, PermissionError)


def _is_user_error(err: BaseException) -> bool:
    if isinstance(err, USER_ERRORS):
        return True
    # the default text encoder missing (the zero_shot extra): an OSError, told apart by its class, which is
    # looked up only where already loaded so that the CLI does not import torch to know it
    text_encoding = sys.modules.get("hf_mlcls.models.text_encoding")
    return text_encoding is not None and isinstance(err, text_encoding.MissingTextEncoderError)


def run_user_command(prog: str, func, *args, **kwargs) -> int:
    """Call ``func``; a user error becomes one line ``PROG: error: ...`` on stderr and exit status 2.

    The one error boundary of `hf-mlcls` and of the example scripts. ``HF_MLCLS_TRACEBACK=1`` re-raises.
    Ctrl-C is one line too, ``PROG: interrupted`` (with the note training adds: where it stopped and the last
    checkpoint), and exit status 130.
    """
    try:
        return int(func(*args, **kwargs) or 0)
    except KeyboardInterrupt as err:
        if os.environ.get("HF_MLCLS_TRACEBACK"):
            raise
        notes = [n.removeprefix("hf_mlcls: ") for n in getattr(err, "__notes__", []) if n.startswith("hf_mlcls: ")]
        # on a line of its own: a progress bar it interrupted has no line end
        print(f"\n{prog}: interrupted" + (f": {notes[-1]}" if notes else ""), file=sys.stderr, flush=True)
        return 130
    except Exception as err:
        if not _is_user_error(err) or os.environ.get("HF_MLCLS_TRACEBACK"):
            raise
        print(f"{prog}: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        from .progress import set_quiet

        set_quiet()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_user_command(f"hf-mlcls {args.command}", args.func, args)


if __name__ == "__main__":
    # `python -m hf_mlcls.cli` runs this file as a second module, __main__, whose UserError is not the one the
    # commands raise (they import hf_mlcls.cli): run the package's own main so those are caught as user errors.
    from hf_mlcls.cli import main as package_main

    sys.exit(package_main())
