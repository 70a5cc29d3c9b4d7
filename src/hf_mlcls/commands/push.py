"""`hf-mlcls push FOLDER REPO_ID`: a saved model, its card and evaluation results to the Hub in one commit."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a saved model folder with a generated model card (one commit)",
        description=(
            "Upload weights, config, image processor, remote code, a model card rendered from the package's card "
            "template (hf_mlcls/hub/templates/, or HF_MLCLS_CARD_TEMPLATES) "
            "and evaluation results to a Hub model repository, in one commit. With --dry-run DIR, write "
            "exactly that folder into DIR and upload nothing."
        ),
    )
    parser.add_argument("folder", metavar="FOLDER", help="model folder written by save_pretrained / train.py / convert")
    parser.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, owner/name (created if missing)")
    parser.add_argument("--dry-run", metavar="DIR", help="write the upload folder into DIR (new or empty) and stop")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or the `hf auth login` one)")
    parser.add_argument("--eval-json", metavar="F", help="evaluation JSON from examples/evaluate.py (see docs/hub.md)")
    parser.add_argument(
        "--eval-artifact", metavar="F", action="append", default=[],
        help="further evaluation file to upload under eval/ (per-class AP CSV, figure); repeatable",
    )
    parser.add_argument("--license", default="apache-2.0", help="license id for the card (default apache-2.0)")
    parser.add_argument("--dataset", action="append", default=None, help="dataset id for the card; repeatable")
    parser.add_argument("--base-model", help="base model id for the card (default: the backbone's timm weights)")
    parser.add_argument("--provenance", help="how the weights were made, one or two sentences for the card")
    parser.add_argument("--commit-message", help="commit message")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..paths import check_writable_folder

    if args.dry_run is not None:
        check_writable_folder(args.dry_run, "--dry-run")  # before the model folder is read
    from ..hub import push_to_hub

    result = push_to_hub(
        args.folder,
        args.repo_id,
        dry_run=args.dry_run,
        token=args.token,
        private=args.private,
        commit_message=args.commit_message,
        eval_json=args.eval_json,
        eval_artifacts=args.eval_artifact or None,  # none named: the eval folder's own files
        license=args.license,
        datasets=args.dataset,
        base_model=args.base_model,
        provenance=args.provenance,
    )
    if result["skipped"]:
        print(f"left out (not needed on the Hub): {', '.join(result['skipped'])}")
    if args.dry_run:
        print(f"dry run: {len(result['files'])} files written to {args.dry_run}, nothing uploaded:")
        for name in result["files"]:
            print(f"  {name}")
    else:
        print(f"uploaded {len(result['files'])} files to {args.repo_id}: {result['commit_url']}")
    return 0
