"""`hf-mlcls deploy-space REPO_ID`: the Gradio Space (package data of `hf_mlcls.space`) to a Hub Space in one commit."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "deploy-space",
        help="upload the Gradio demo Space (shipped inside the package) to a Hub Space repository",
        description=(
            "Upload the Space that ships inside the installed package (app.py, requirements.txt, README.md with "
            "the Space metadata, example images; spaces/ in a checkout) and, by default, the hf_mlcls package "
            "source beside app.py, to a Space repository (sdk gradio), "
            "in one commit. With --dry-run DIR, write exactly that folder into DIR and upload nothing."
        ),
    )
    parser.add_argument("repo_id", metavar="REPO_ID", help="Space repository, owner/name (created if missing)")
    parser.add_argument("--dry-run", metavar="DIR", help="write the Space folder into DIR (new or empty) and stop")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or the `hf auth login` one)")
    parser.add_argument(
        "--models", help="comma-separated default model list for the Space (Hub ids); HF_MLCLS_MODELS overrides it"
    )
    parser.add_argument(
        "--requirement", metavar="SPEC",
        help="install hf_mlcls in the Space from PyPI with this requirement (e.g. 'hf_mlcls==0.1.0') "
        "instead of shipping the package source",
    )
    parser.add_argument("--commit-message", help="commit message")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..paths import check_writable_folder

    if args.dry_run is not None:
        check_writable_folder(args.dry_run, "--dry-run")
    from ..hub import deploy_space

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models is not None else None
    if models is not None and not models:
        from ..errors import UserError

        raise UserError(f"--models {args.models!r} names no model; give comma-separated Hub ids, or leave it out")
    result = deploy_space(
        args.repo_id,
        dry_run=args.dry_run,
        token=args.token,
        private=args.private,
        models=models,
        hf_mlcls_requirement=args.requirement,
        commit_message=args.commit_message,
    )
    if args.dry_run:
        print(f"dry run: {len(result['files'])} files written to {args.dry_run}, nothing uploaded")
    else:
        print(f"Space uploaded to {args.repo_id}: {result['url']}")
    return 0
