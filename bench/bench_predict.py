"""Prediction: label selection against the per-label loop it replaced, and `predict_files`
over a folder of JPEGs against a raw batched forward on the same tensors.

    nice python bench/bench_predict.py            # ~2 min on 2 cores
    nice python bench/bench_predict.py --images 8 # shorter
    nice python bench/bench_predict.py --clock wall  # wall time (needs a quiet machine)

1. ``select_labels`` on sigmoid scores of 9,605 labels (OpenImages-sized), with a
   threshold and with ``top_k``, against the previous code's loop (for each image, an
   argsort, then the labels one at a time in Python), copied into this file as the
   reference. Outputs must be equal (random scores: no ties).
2. ``predict_files`` (decode, resize, normalise, forward, select) over generated 448x448
   JPEGs with ``mldecoder-tresnetm-224`` (random weights, 80 labels), against the
   model's forward alone on the very tensors those files become, pre-decoded and stacked
   in the same batches, plus the sigmoid: what prediction costs beyond the network. Both
   sides run the forward ``predict_files`` runs, the fast CPU path (``fast_cpu.fast_model``,
   its copy built before the timing: docs/benchmarks.md, "Inference fast path"). The
   labels predict_files returns must equal those selected from the raw forward's scores.

Both run in interleaved rounds in this one process (ours, reference, reference, ours, ...),
at least 5, equal calls on both sides; per round one ratio; median and min-max over the
rounds. torch's default threads. Label selection is timed in wall clock; prediction in the
process's CPU time by default (``--clock cpu``; ``--clock wall`` for wall time): a forward
takes seconds here, and on a shared machine the wall time of two identical forwards in a
row differs by more than the 10 % being measured, while CPU time counts only the work this
process did (decoding included). Results go to bench/results/predict.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import PIL.Image
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, interleaved, median, ratios, spread  # noqa: E402

import hf_mlcls  # noqa: E402
from hf_mlcls.data.transforms import transforms_from_image_processor  # noqa: E402
from hf_mlcls.inference import predict_files, select_labels  # noqa: E402
from hf_mlcls.models.fast_cpu import fast_model  # noqa: E402


def select_labels_loop(scores, id2label, threshold=0.5, top_k=None):
    """The previous select_labels: a Python loop over each image's labels."""
    rows = []
    for row in scores:
        order = torch.argsort(row, descending=True).tolist()
        chosen = order[:top_k] if top_k else [i for i in order if row[i] >= threshold]
        rows.append([{"label": id2label[i], "score": round(float(row[i]), 6)} for i in chosen])
    return rows


def make_jpegs(folder: str, n: int, size: int = 448, seed: int = 0) -> list[str]:
    """size x size JPEGs (quality 90): a smooth colour field with grain."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        field = PIL.Image.fromarray((rng.random((6, 6, 3)) * 255).astype(np.uint8)).resize((size, size), PIL.Image.BICUBIC)
        pixels = np.asarray(field).astype(np.float32) + rng.normal(0, 6, (size, size, 3))
        path = os.path.join(folder, f"{i:04d}.jpg")
        PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def bench_select(report: Fragment, rounds: int, images: int) -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.sigmoid(torch.randn(images, 9605, generator=gen) * 2 - 4)  # ~3 % of the labels above 0.5
    id2label = {i: f"label {i}" for i in range(9605)}
    report.add(f"`select_labels`, {images} images x 9,605 labels (sigmoid of N(-4, 2) logits: "
               f"{(scores >= 0.5).float().mean().item() * 100:.1f} % at or above 0.5); times per image.")
    report.add()
    table = report.table(["selection", "ours (ms/image)", "per-label loop (ms/image)", "speed-up", "outputs"],
                         ["l", "r", "r", "r", "l"])
    for label, kwargs in (("threshold 0.5", {"threshold": 0.5}), ("top_k 10", {"top_k": 10})):
        ours = select_labels(scores, id2label, **kwargs)
        ref = select_labels_loop(scores, id2label, **kwargs)
        times = interleaved({"ours": lambda: select_labels(scores, id2label, **kwargs),
                             "loop": lambda: select_labels_loop(scores, id2label, **kwargs)}, repeats=rounds)
        per_image = {k: [1e3 * t / images for t in v] for k, v in times.items()}
        table.add(label, spread(per_image["ours"]), spread(per_image["loop"], "{:.1f}"),
                  spread(ratios(times, "loop", "ours"), "{:.0f}", "x"), "equal" if ours == ref else "DIFFER")
        if ours != ref:
            raise SystemExit(f"select_labels differs from the loop ({label})")


def bench_predict(report: Fragment, rounds: int, images: int, batch_size: int, clock: str) -> None:
    torch.manual_seed(0)
    model = hf_mlcls.create_model("mldecoder-tresnetm-224").eval()
    transform = transforms_from_image_processor(model.build_image_processor(), train=False)
    with tempfile.TemporaryDirectory() as folder:
        paths = make_jpegs(folder, images)
        batches = [torch.stack([transform(p) for p in paths[i : i + batch_size]]) for i in range(0, images, batch_size)]

        def raw():
            with torch.no_grad():
                return torch.cat([fast_model(model)(b).logits.float().sigmoid() for b in batches])

        def ours():
            return predict_files(model, paths, batch_size=batch_size, progress=False)

        expected = select_labels(raw(), model.config.id2label)
        got = [r["labels"] for r in ours()]
        times = interleaved({"predict_files": ours, "forward": raw}, repeats=rounds,
                            clock=time.process_time if clock == "cpu" else time.perf_counter)
    cost = ratios(times, "predict_files", "forward")
    report.add()
    report.add(f"`predict_files` over {images} generated 448x448 JPEGs, `mldecoder-tresnetm-224` ({model.config.num_labels:,} "
               f"labels, random weights), batch {batch_size}, fp32, {torch.get_num_threads()} torch threads; the raw "
               f"forward (the fast CPU path, as in predict_files) runs on the same tensors, decoded and stacked "
               f"beforehand; {clock} time.")
    report.add()
    table = report.table(["contender", f"{clock} s per image", "time / raw forward", "labels"], ["l", "r", "r", "l"])
    table.add("predict_files (decode once, batched)", spread([t / images for t in times["predict_files"]], "{:.3f}"),
              spread(cost, "{:.3f}", "x"), "equal" if got == expected else "DIFFER")
    table.add("raw batched forward + sigmoid", spread([t / images for t in times["forward"]], "{:.3f}"), "1x", "")
    report.add()
    verdict = "met" if median(cost) <= 1.1 and got == expected else "NOT met"
    report.add(f"- `predict_files` within 1.1x of the raw forward: {median(cost):.3f}x (rounds {min(cost):.3f}-"
               f"{max(cost):.3f}), {verdict}.")
    if got != expected:
        raise SystemExit("predict_files labels differ from the raw forward's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5)")
    parser.add_argument("--images", type=int, default=16, help="JPEGs predicted per round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="how prediction is timed")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds: at least 5")
    report = Fragment("predict")
    bench_select(report, args.rounds, 32)
    bench_predict(report, args.rounds, args.images, args.batch_size, args.clock)
    report.write()


if __name__ == "__main__":
    main()
