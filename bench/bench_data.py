"""Data pipeline throughput per worker: hf_mlcls's transforms against the plain PIL /
torchvision pipeline of the official training scripts, in the same run.

    nice python bench/bench_data.py            # 200 images, 224 and 448 (~5 min on 2 cores)
    nice python bench/bench_data.py --quick    # 60 images, 5 passes (~1 min)
    nice python bench/bench_data.py --quick --sizes 448 --no-eval   # the 448 training pipelines only

Input: generated 640x480 JPEGs (quality 90, smooth colour fields with edges and grain,
~70 KB each, a COCO-like size) in a temporary folder, read from the page cache.

Train pipelines (size s = 224 and 448), each ending with its collator on batches of 32
(the collator runs in the worker too):

* **plain**, the official scripts' pipeline: ``PIL.Image.open(path).convert("RGB")`` ->
  ``transforms.Resize((s, s))`` -> CutoutPIL (drawn as the official code draws it, with
  ``ImageDraw.rectangle``) -> timm's PIL RandAugment with the official configuration (our
  ``build_randaugment(fast=False)``: timm's ops untouched) -> ``ToTensor`` -> ``Normalize``,
  then ``torch.stack``. The official CutoutPIL draws the hole centre with
  ``np.random.randint``; here ``random.randrange`` (the same uniform law) so that both
  pipelines consume the same random draws and can be compared image by image.
* **hf_mlcls default (torchvision)**: ``build_train_transform(s, mean, std)``
  (libjpeg-turbo decode to a tensor, torchvision's uint8 antialiased resize, Cutout,
  RandAugment with the fast shear/translate/sharpness ops) + ``MultiLabelCollator``.
* **hf_mlcls backend=pil**: ``backend="pil"`` (PIL decode with JPEG draft mode, PIL
  resize: the official pipeline's pixels) + fast RandAugment.
* **hf_mlcls backend=pil, timm ops**: the same with ``fast_randaugment=False``.
* **hf_mlcls torchvision, uint8**: the default with ``uint8_output=True``; the collator
  scales and normalises the batch.

Eval pipelines: plain (``Resize`` -> ``ToTensor`` -> ``Normalize``) against
``build_eval_transform`` with each backend.

The hf_mlcls pipelines are called as the training loop calls them: the DataLoader fetches a
batch of rows at once (``datasets``' ``__getitems__``), so ``with_transform`` hands the
batch's images to ``ImageTransform.batch``, which writes them into one batch tensor that the
collator takes without a copy; the plain pipeline transforms image by image and stacks, as
a map-style ``Dataset`` with ``default_collate`` does.

Each pass runs one pipeline over all images with the same seed (so every pipeline
draws the same augmentations); passes alternate between pipelines (interleaved, order
rotated), at least 5 passes each; images/s is the median pass with the min-max, and "vs
plain" is taken pass by pass (plain's time in that round over the pipeline's), median and
min-max. One torch thread, as in a DataLoader worker; CPU time of the process by default
(``--clock wall`` for wall time). Results go to bench/results/data.md for
``python bench/write_docs.py``.

Agreement: with the same seeds, each output is compared with the plain pipeline's in
0-255 levels (the normalisation undone): the largest difference and the share of values
that differ. Distribution: plain and the torchvision pipeline are run with *independent*
seeds over the same images; the mean and standard deviation of the output levels, the
mean absolute change the augmentation makes against the un-augmented image, and how
often RandAugment ops fire are compared, the differences paired by image (so the image
content cancels) with their standard errors.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, interleaved, median, ratios, spread  # noqa: E402

from hf_mlcls.data import (  # noqa: E402
    MultiLabelCollator,
    build_eval_transform,
    build_train_transform,
)
from hf_mlcls.data.transforms import build_randaugment  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BATCH = 32


def make_images(folder: str, n: int, seed: int = 0) -> list[str]:
    """640x480 JPEGs: a smooth random colour field, a few hard-edged shapes, sensor-like grain."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.random((6, 8, 3)) * 255
        image = PIL.Image.fromarray(coarse.astype(np.uint8)).resize((640, 480), PIL.Image.BICUBIC)
        draw = PIL.ImageDraw.Draw(image)
        for _ in range(4):
            x0, y0 = rng.integers(0, 560), rng.integers(0, 400)
            box = [int(x0), int(y0), int(x0 + rng.integers(20, 200)), int(y0 + rng.integers(20, 200))]
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        pixels = np.asarray(image).astype(np.float32) + rng.normal(0, 6, (480, 640, 3))
        path = os.path.join(folder, f"{i:04d}.jpg")
        PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


class CutoutPIL:
    """The official scripts' Cutout: ImageDraw.rectangle with the official hole geometry."""

    def __init__(self, cutout_factor: float = 0.5):
        self.cutout_factor = cutout_factor

    def __call__(self, x: PIL.Image.Image) -> PIL.Image.Image:
        draw = PIL.ImageDraw.Draw(x)
        h, w = x.size[0], x.size[1]  # (as the official code names them; images here are square)
        h_cut, w_cut = int(self.cutout_factor * h + 0.5), int(self.cutout_factor * w + 0.5)
        y_c, x_c = random.randrange(h), random.randrange(w)  # official: np.random.randint, same law
        y1, y2 = np.clip(y_c - h_cut // 2, 0, h), np.clip(y_c + h_cut // 2, 0, h)
        x1, x2 = np.clip(x_c - w_cut // 2, 0, w), np.clip(x_c + w_cut // 2, 0, w)
        fill = (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))
        draw.rectangle([int(x1), int(y1), int(x2), int(y2)], fill=fill)
        return x


class PlainTrain:
    def __init__(self, size: int):
        from torchvision import transforms as T

        self.randaugment = build_randaugment(fast=False)
        self.compose = T.Compose([
            T.Resize((size, size)), CutoutPIL(0.5), self.randaugment, T.ToTensor(), T.Normalize(MEAN, STD),
        ])

    def __call__(self, path: str) -> torch.Tensor:
        return self.compose(PIL.Image.open(path).convert("RGB"))


def plain_train(size: int) -> PlainTrain:
    return PlainTrain(size)


def plain_eval(size: int):
    from torchvision import transforms as T

    compose = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(MEAN, STD)])
    return lambda path: compose(PIL.Image.open(path).convert("RGB"))


def stack_collate(images):
    return torch.stack(images)


def ours_collate(images):
    return MultiLabelCollator()([{"pixel_values": x, "labels": _LABELS} for x in images])["pixel_values"]


def ours_u8_collate(images):
    return _U8_COLLATOR([{"pixel_values": x, "labels": _LABELS} for x in images])["pixel_values"]


_LABELS = torch.zeros(80)
_U8_COLLATOR = MultiLabelCollator(image_mean=MEAN, image_std=STD)


def pipelines(size: int, train: bool):
    if not train:
        return {
            "plain (Resize, ToTensor, Normalize)": (plain_eval(size), stack_collate),
            "hf_mlcls eval, backend=pil (default)": (build_eval_transform(size, MEAN, STD), ours_collate),
            "hf_mlcls eval, backend=torchvision": (build_eval_transform(size, MEAN, STD, backend="torchvision"), ours_collate),
        }
    return {
        "plain (official scripts)": (plain_train(size), stack_collate),
        "hf_mlcls default (torchvision)": (build_train_transform(size, MEAN, STD), ours_collate),
        "hf_mlcls backend=pil": (build_train_transform(size, MEAN, STD, backend="pil"), ours_collate),
        "hf_mlcls backend=pil, timm ops": (
            build_train_transform(size, MEAN, STD, backend="pil", fast_randaugment=False), ours_collate),
        "hf_mlcls torchvision, uint8 + collator": (
            build_train_transform(size, backend="torchvision", uint8_output=True), ours_u8_collate),
    }


def one_pass(transform, collate, paths, seed=0):
    random.seed(seed)
    np.random.seed(seed)
    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        # ours as the training loop runs them: the DataLoader asks the dataset for a batch of rows
        # (datasets' __getitems__), whose with_transform calls ImageTransform.batch on the batch
        collate(transform.batch(chunk) if hasattr(transform, "batch") else [transform(p) for p in chunk])


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Normalised float (3, H, W) or uint8 -> 0-255 levels."""
    if x.dtype == torch.uint8:
        return x.int()
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return ((x * std + mean) * 255).round().int()


def agreement(reference, transform, paths, seeds):
    worst, differing, total = 0, 0, 0
    for seed in seeds:
        for path in paths:
            random.seed(seed), np.random.seed(seed)
            a = to_levels(reference(path))
            random.seed(seed), np.random.seed(seed)
            b = to_levels(transform(path))
            d = (a - b).abs()
            worst = max(worst, int(d.max()))
            differing += int((d > 0).sum())
            total += d.numel()
    return worst, differing / total


def throughput(size, train, paths, repeats, seeds_for_agreement, table, clock, verdicts):
    pipes = pipelines(size, train)
    fns = {name: (lambda t=t, c=c: one_pass(t, c, paths)) for name, (t, c) in pipes.items()}
    times = interleaved(fns, repeats=repeats, warmup=1, clock=clock)
    names = list(pipes)
    ref_name = names[0]
    reference = pipes[ref_name][0]
    sample = paths[: min(len(paths), 40)]
    for name in names:
        if name == ref_name:
            worst, frac = 0, 0.0
        else:
            worst, frac = agreement(reference, pipes[name][0], sample, seeds_for_agreement)
        speed = ratios(times, ref_name, name)  # per round: plain's time / this pipeline's
        table.add("train" if train else "eval", size, name, spread([len(paths) / t for t in times[name]], "{:.1f}"),
                  spread(speed, "{:.2f}", "x"), worst, f"{frac:.1e}")
        if train and name == "hf_mlcls default (torchvision)":
            met = "met" if median(speed) >= 1.5 else "NOT met"
            verdicts.append(f"default training pipeline at {size} >= 1.5x the official PIL pipeline: "
                            f"{median(speed):.2f}x (rounds {min(speed):.2f}-{max(speed):.2f}), {met}")


def _counting(fn, name, counts):
    def counted(*args, **kwargs):
        counts[name] += 1
        return fn(*args, **kwargs)

    return counted


def distribution(size, paths, seeds, report):
    """Plain vs hf_mlcls torchvision pipeline, independent seeds, statistics paired by image."""
    runs = {"plain": (plain_train(size), 0),
            "torchvision": (build_train_transform(size, MEAN, STD, backend="torchvision"), 10_000)}
    eval_tf = build_eval_transform(size, MEAN, STD)
    clean = [to_levels(eval_tf(p)).float() for p in paths]
    stats, ops = {}, {}
    for name, (transform, seed0) in runs.items():
        ra = transform.randaugment if isinstance(transform, PlainTrain) else transform.pil_augment[1]
        counts: Counter = Counter()
        originals = {op: op.aug_fn for op in ra.ops}
        for op in ra.ops:
            op.aug_fn = _counting(op.aug_fn, op.name, counts)
        rows = []
        try:
            for s in seeds:
                for i, p in enumerate(paths):
                    random.seed(seed0 + s * 1000 + i)
                    np.random.seed(seed0 + s * 1000 + i)
                    x = to_levels(transform(p)).float()
                    rows.append((float(x.mean()), float(x.std()), float((x - clean[i]).abs().mean())))
        finally:
            for op, fn in originals.items():
                op.aug_fn = fn
        stats[name] = np.array(rows)
        ops[name] = counts
    n = len(stats["plain"])
    table = report.table(["statistic (size %d, %d outputs each)" % (size, n), "plain (official scripts)",
                   "hf_mlcls backend=torchvision", "difference, paired by image"])
    for j, label in enumerate(("mean level", "std of levels", "mean abs. change vs the un-augmented image")):
        a, b = stats["plain"][:, j], stats["torchvision"][:, j]
        d = b - a
        table.add(label, f"{a.mean():.2f} ± {a.std() / np.sqrt(n):.2f}", f"{b.mean():.2f} ± {b.std() / np.sqrt(n):.2f}",
                  f"{d.mean():+.2f} ± {d.std() / np.sqrt(n):.2f}")
    geometric = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
    for label, keys in (("RandAugment ops applied per image", None), ("geometric ops per image", geometric)):
        a = sum(v for k, v in ops["plain"].items() if keys is None or k in keys) / n
        b = sum(v for k, v in ops["torchvision"].items() if keys is None or k in keys) / n
        se = np.sqrt((a + b) / n)
        table.add(label, f"{a:.3f} ± {np.sqrt(a / n):.3f}", f"{b:.3f} ± {np.sqrt(b / n):.3f}", f"{b - a:+.3f} ± {se:.3f}")
    expected = 2 * 0.5
    report.add()
    report.add(f"± is one standard error. Expected ops per image: {expected:.1f} (2 layers, p = 0.5 each); "
               f"geometric: {expected * 5 / 14:.3f} (5 of the 14 ops).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="*", default=[224, 448])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved passes per pipeline (at least 5)")
    parser.add_argument("--dist-seeds", type=int, default=5, help="seeds per image for the distribution table")
    parser.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True, help="also time the eval pipelines")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="cpu: the process's CPU time (one thread, so the work done; steady on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="60 images, 5 passes, 2 distribution seeds")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats, args.dist_seeds = 60, 5, 2
    if args.repeats < 5:
        parser.error("--repeats: at least 5")
    torch.set_num_threads(1)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    report = Fragment("data")
    with tempfile.TemporaryDirectory() as folder:
        paths = make_images(folder, args.images)
        kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        report.add(f"{len(paths)} generated 640x480 JPEGs, {kb:.0f} KB on average; batches of {BATCH}; 1 torch thread "
                   f"(a DataLoader worker's setting); {args.repeats} interleaved passes per pipeline, {args.clock} time; "
                   "each cell the median with the min-max over the passes, 'vs plain' taken pass by pass.")
        report.add()
        table = report.table(["transform", "size", "pipeline", "images/s", "vs plain", "max diff vs plain (levels)",
                              "values differing"], ["l", "r", "l", "r", "r", "r", "r"])
        verdicts = []
        for train in (True, False) if args.eval else (True,):
            for size in args.sizes:
                throughput(size, train, paths, args.repeats, range(2), table, clock, verdicts)
        report.add()
        report.add("'max diff' and 'values differing': outputs compared with the plain pipeline's under the same "
                   "seeds, in 0-255 levels, on the first 40 images x 2 seeds.")
        report.add_verdicts(verdicts)
        report.add()
        size = 448 if 448 in args.sizes else args.sizes[-1]
        distribution(size, paths[: min(len(paths), 100)], range(args.dist_seeds), report)
    report.write()


if __name__ == "__main__":
    main()
