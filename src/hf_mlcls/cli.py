"""`hf-mlcls`: one command, one sub-command per module in `hf_mlcls/commands/`.

Each module there defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit status.
User errors (bad paths, bad files, missing tokens) print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import UserError  # noqa: F401  (hf_mlcls.cli.UserError: the same class, kept importable)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-mlcls", description="Query2Label and ML-Decoder multi-label classification")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, ValueError, PermissionError) as err:
        print(f"hf-mlcls {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # `python -m hf_mlcls.cli` runs this file as a second module, __main__, whose UserError is not the one the
    # commands raise (they import hf_mlcls.cli): run the package's own main so those are caught as user errors.
    from hf_mlcls.cli import main as package_main

    sys.exit(package_main())
