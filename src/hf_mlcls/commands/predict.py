"""`hf-mlcls predict MODEL IMAGE_OR_FOLDER ...`: labels above a threshold (or the top k), as JSON or CSV."""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("model", help="a saved model folder or a Hub id")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--threshold", type=float, default=0.5, help="keep labels scoring at least this (default 0.5)")
    parser.add_argument("--top-k", type=int, default=None, help="keep the k best labels instead of a threshold")
    parser.add_argument("--output", "-o", default=None, help="file to write (.json or .csv); default: standard output")
    parser.add_argument("--format", choices=("json", "csv"), default=None, help="output format (default from --output, else json)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def run(args) -> int:
    from ..inference import check_output_file, find_images, load_model, predict_files, write_predictions

    # every argument and path is checked before the model is loaded
    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be >= 1")
    if not 0 <= args.threshold <= 1:  # NaN fails this too
        raise ValueError("--threshold must be between 0 and 1")
    if args.batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {args.batch_size}")
    paths = find_images(args.inputs)
    if args.output is not None:
        check_output_file(args.output, "--output", paths)
    model = load_model(args.model, device=args.device)
    results = predict_files(model, paths, threshold=args.threshold, top_k=args.top_k, batch_size=args.batch_size)
    text = write_predictions(results, args.output, args.format)
    if args.output is None:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    else:
        print(f"wrote predictions for {len(results)} images to {args.output}", file=sys.stderr)
    return 1 if any(r.get("error") for r in results) and len(results) == 1 else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="predict labels for images", description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)
