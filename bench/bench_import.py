#!/usr/bin/env python
"""Start-up cost: `python -c "import hf_mlcls"` and `hf-mlcls --help` against `python -c "import torch"`.

Each round runs the three commands as fresh processes, in an order that rotates from round to round, and
takes each command's time over the reference's in that round. Prints the median and min-max of the ratios,
and the load average before and after. Target (issue: a cheap import): both ratios at most 1.5.

    python bench/bench_import.py --rounds 9
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time


def commands() -> dict[str, list[str]]:
    cli = shutil.which("hf-mlcls")
    return {
        "import torch": [sys.executable, "-c", "import torch"],
        "import hf_mlcls": [sys.executable, "-c", "import hf_mlcls"],
        "hf-mlcls --help": [cli, "--help"] if cli else [sys.executable, "-m", "hf_mlcls", "--help"],
    }


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def write_results(path: str, result: dict, names: list[str], argv: list[str]) -> None:
    import platform

    import torch

    lb, la = result["load_before"], result["load_after"]
    lines = [
        f"Written by `python bench/bench_import.py {' '.join(argv)}`.".replace(" `.", "`."),
        f"Machine: {os.cpu_count()}-core {platform.machine()} CPU, Python {platform.python_version()}, torch "
        f"{torch.__version__}; load average (1 / 5 / 15 min) {lb[0]:.1f} / {lb[1]:.1f} / {lb[2]:.1f} at the start, "
        f"{la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} at the end.",
        "",
        f"Each of {result['rounds']} rounds starts the three commands as fresh processes, in an order that rotates; "
        "ratios are per round (wall clock).",
        "",
        "| command | median s (min-max) | time / `import torch` |",
        "|---|---:|---:|",
    ]
    for name in names:
        row = result["rows"][name]
        lines.append(f"| `{name}` | {row['median_s']:.3f} ({row['min_s']:.3f}-{row['max_s']:.3f}) | "
                     f"{row['ratio_median']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) |")
    worst = max(result["rows"][n]["ratio_median"] for n in names[1:])
    lines += ["", f"- Both at most 1.5x `import torch`: {'met' if worst <= 1.5 else 'not met'} (worst median {worst:.2f}x)."]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "import.md"),
                        help="markdown for docs/benchmarks.md (spliced in by bench/write_docs.py)")
    args = parser.parse_args(argv)
    cmds = commands()
    names = list(cmds)
    for name in names:  # warm the file cache once
        timed(cmds[name])
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % 3:] + names[: r % 3]:
            times[name].append(timed(cmds[name]))
    load_after = os.getloadavg()
    ref = times["import torch"]
    result = {"rounds": args.rounds, "load_before": load_before, "load_after": load_after, "rows": {}}
    print(f"{args.rounds} interleaved rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{'command':<18} {'median s':>9} {'min-max s':>13} {'ratio to import torch':>24}")
    for name in names:
        ratios = [t / b for t, b in zip(times[name], ref)]
        row = {
            "median_s": statistics.median(times[name]), "min_s": min(times[name]), "max_s": max(times[name]),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        }
        result["rows"][name] = row
        print(f"{name:<18} {row['median_s']:>9.3f} {row['min_s']:>6.3f}-{row['max_s']:<6.3f} "
              f"{row['ratio_median']:>10.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})")
    worst = max(result["rows"][n]["ratio_median"] for n in names[1:])
    print(f"target <= 1.5x import torch: {'met' if worst <= 1.5 else 'NOT met'} (worst median {worst:.2f}x)")
    write_results(args.results, result, names, sys.argv[1:] if argv is None else argv)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
