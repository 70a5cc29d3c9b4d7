"""Put the benchmarks' results into docs/benchmarks.md: the one way its result tables are written.

    python bench/write_docs.py            # after running the benchmarks whose results changed
    python bench/write_docs.py --check    # exit 1 if the docs differ from the results

Each benchmark script writes its results (tables, load average, command, machine) to
``bench/results/<name>.md``; the docs hold, for each, a pair of markers

    <!-- results: bench/results/<name>.md -->
    ...
    <!-- end results -->

and everything between them is replaced by that file, unchanged. A marker naming a file
that does not exist is an error (exit 2, naming it), so a section cannot silently keep
figures that no run produced.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- results: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end results -->)", re.S)


def splice(text: str, root: str = ROOT) -> tuple[str, list[str]]:
    """``text`` with every results block replaced by its file; also the files used."""
    used: list[str] = []

    def replace(match: re.Match) -> str:
        path = os.path.join(root, match["path"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{match['path']}: named by a results marker but missing; run its benchmark first")
        with open(path, encoding="utf-8") as fh:
            body = fh.read()
        used.append(match["path"])
        return match.group(1) + body.rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(replace, text), used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--check", action="store_true", help="only report whether the docs are up to date")
    args = parser.parse_args()
    with open(args.docs, encoding="utf-8") as fh:
        text = fh.read()
    try:
        new, used = splice(text)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        print("up to date" if new == text else f"{args.docs} differs from bench/results: run python bench/write_docs.py")
        return 0 if new == text else 1
    if new != text:
        with open(args.docs + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(new)
        os.replace(args.docs + ".tmp", args.docs)
    print(f"{args.docs}: {len(used)} result blocks ({', '.join(used) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
