"""How the heads scale with the number of classes.

    nice python bench/bench_scale.py            # full table (~10 min on 2 CPU cores)
    nice python bench/bench_scale.py --quick    # fewer repetitions, Query2Label up to 1,000 classes,
                                                # whole-model rows for 80 classes only (2-4 min)

Head only: the backbone of a real model is swapped for a module that returns a fixed
feature map, so ``model(pixel_values)`` runs exactly the code of the model's head
(input projection, decoder, classifier) and nothing else.

* **ML-Decoder** (the ``mldecoder-tresnetm-224`` preset's head): features (B, 2048, 7, 7),
  TResNet-M at 224. 80, 1,000, 9,605 and 20,000 classes at K = 100 and 200 groups asked
  (queries; K cannot exceed the class count, so 80 classes runs with K = 80 whatever is
  asked, as the official code does). Forward (eval, no grad) and forward + backward (train
  mode, asymmetric loss). The target (9,605 classes at most 1.1x the time of 80 at the same
  group count) is measured on its own at K = 80, the only count both allow.
* **Query2Label** (the ``q2l-r101-448`` preset's head): features (1, 2048, 14, 14), ResNet-101
  at 448; one query per class, so its cost grows linearly with the class count. Forward only
  (at 20,000 classes one forward is ~1.7 TMAC); 9,605 and 20,000 classes are timed once
  each (tens of seconds per call on this CPU), the smaller counts interleaved.
* **Whole model**: ``mldecoder-tresnetm-224`` forward against the same backbone alone and
  with global average pooling + linear, to give the head's share of a forward pass.

Every ratio comes from contenders timed in interleaved repetitions in the same process:
the median of the per-round ratios (each round times every contender once, back to back,
so a ratio is taken under one machine load). One torch thread by default: on a shared
machine it gives far steadier ratios than two. Peak memory is the RSS growth during one
call (``_common.rss_peak``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, Table, interleaved, median, rss_peak, stable_malloc  # noqa: E402

import hf_mlcls  # noqa: E402

CLASS_COUNTS = (80, 1000, 9605, 20000)
GROUPS = (100, 200)


def round_ratio(times: dict, num, den) -> float:
    """Median over rounds of time[num] / time[den] (the same round: the same machine load)."""
    return median([a / b for a, b in zip(times[num], times[den])])


class FixedFeatures(nn.Module):
    """Stands in for a backbone: returns a fixed (B, C, H, W) feature map."""

    def __init__(self, features: torch.Tensor):
        super().__init__()
        self.features = features
        self.num_channels = features.shape[1]
        self.num_prefix_tokens = 0

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.features


def head_only(preset: str, features: torch.Tensor, **overrides):
    model = hf_mlcls.create_model(preset, **overrides)
    model.model.backbone = FixedFeatures(features)
    return model


def head_fns(model, batch: int, num_labels: int):
    pixel_values = torch.zeros(batch, 3, 1, 1)  # only checked, never used
    labels = (torch.rand(batch, num_labels) < 0.01).float()

    def forward():
        model.eval()
        with torch.no_grad():
            model(pixel_values)

    def forward_backward():
        model.train()
        model.zero_grad(set_to_none=True)
        model(pixel_values, labels=labels).loss.backward()

    return forward, forward_backward


def ml_decoder_rows(batch: int, repeats: int, class_counts, groups) -> None:
    features = torch.rand(batch, 2048, 7, 7)
    table = Table(["classes", "groups asked", "K used", "logits per group", "fwd ms", "fwd+bwd ms",
                   "fwd vs 80 classes", "fwd+bwd vs 80 classes", "fwd peak MiB", "fwd+bwd peak MiB",
                   "head params (M)"])
    models = {}
    for c in class_counts:
        for k in groups:
            used = min(c, k)
            if (c, used) not in models:
                models[(c, used)] = (k, head_only("mldecoder-tresnetm-224", features, num_labels=c, num_groups=used))
    fns = {}
    for key, (_, model) in models.items():
        f, fb = head_fns(model, batch, key[0])
        fns[(key, "fwd")] = f
        fns[(key, "fwdbwd")] = fb
    times = interleaved(fns, repeats=repeats, warmup=1)
    base = (class_counts[0], min(class_counts[0], groups[0]))
    for (c, used), (asked, model) in models.items():
        params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("model.backbone")) / 1e6
        table.add(
            f"{c:,}", asked if used == asked else f"{asked} (and more)", used, model.classifier.group_size,
            median(times[((c, used), "fwd")]) * 1e3, median(times[((c, used), "fwdbwd")]) * 1e3,
            f"{round_ratio(times, ((c, used), 'fwd'), (base, 'fwd')):.2f}x",
            f"{round_ratio(times, ((c, used), 'fwdbwd'), (base, 'fwdbwd')):.2f}x",
            rss_peak(fns[((c, used), "fwd")]) / 2**20, rss_peak(fns[((c, used), "fwdbwd")]) / 2**20, params,
        )
    print(f"\nML-Decoder head, batch {batch}, TResNet-M 224 features (B, 2048, 7, 7). 'vs 80 classes' divides by "
          f"the 80-class head (K = 80: 80 classes allow no more groups), so at K = 100 and 200 it mixes the class "
          "count with the group count; the same-K comparison is the next table.")


def ml_decoder_target(batch: int, repeats: int, groups: int = 80) -> None:
    """The issue's target, measured on its own with more repetitions: 9,605 against 80 classes at
    the same number of groups (80, the most 80 classes allow)."""
    features = torch.rand(batch, 2048, 7, 7)
    models = {c: head_only("mldecoder-tresnetm-224", features, num_labels=c, num_groups=groups) for c in (80, 9605)}
    fns = {}
    for c, model in models.items():
        f, fb = head_fns(model, batch, c)
        fns[(c, "fwd")], fns[(c, "fwd+bwd")] = f, fb
    times = interleaved(fns, repeats=repeats, warmup=1)
    table = Table(["pass", "80 classes ms", "9,605 classes ms", "9,605 / 80 (median of rounds)", "target", "met",
                   "per-round ratios, 10th-90th percentile"])
    for kind in ("fwd", "fwd+bwd"):
        ratio = round_ratio(times, (9605, kind), (80, kind))
        per_round = sorted(y / x for x, y in zip(times[(80, kind)], times[(9605, kind)]))
        lo, hi = per_round[len(per_round) // 10], per_round[-1 - len(per_round) // 10]
        table.add(kind, median(times[(80, kind)]) * 1e3, median(times[(9605, kind)]) * 1e3, f"{ratio:.3f}x",
                  "<= 1.1x", "yes" if ratio <= 1.1 else "no", f"{lo:.2f}-{hi:.2f}")
    print(f"\nK = {groups} groups, batch {batch}, {repeats} interleaved rounds.")


def query2label_rows(repeats: int, class_counts) -> None:
    """Batch 1. Counts up to 1,000 are interleaved; larger ones take tens of seconds per call
    and are timed once, in the same call that measures their peak memory."""
    features = torch.rand(1, 2048, 14, 14)
    table = Table(["classes", "fwd ms", "ms per class", "vs 80 classes", "fwd peak MiB", "head params (M)", "timing"])
    small = [c for c in class_counts if c <= 1000]
    large = [c for c in class_counts if c > 1000]
    models = {c: head_only("q2l-r101-448", features, num_labels=c) for c in small}
    fns = {c: head_fns(m, 1, c)[0] for c, m in models.items()}
    times = interleaved(fns, repeats=repeats, warmup=1)
    t80 = median(times[small[0]])

    def params(model):
        return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("model.backbone")) / 1e6

    for c, model in models.items():
        t = median(times[c])
        table.add(f"{c:,}", t * 1e3, t * 1e3 / c, f"{t / t80:.1f}x", rss_peak(fns[c]) / 2**20, params(model),
                  f"median of {len(times[c])}")
    for c in large:
        model = head_only("q2l-r101-448", features, num_labels=c)
        fn = head_fns(model, 1, c)[0]
        fn()  # warm-up
        elapsed = []

        def timed(fn=fn):
            t0 = time.perf_counter()
            fn()
            elapsed.append(time.perf_counter() - t0)

        mem = rss_peak(timed) / 2**20
        table.add(f"{c:,}", elapsed[0] * 1e3, elapsed[0] * 1e3 / c, f"{elapsed[0] / t80:.1f}x", mem, params(model),
                  "one call")
        del model, fn
    print("\nQuery2Label head (q2l-r101-448: 1 encoder + 2 decoder layers, width 2048, FFN 8192), batch 1, "
          "ResNet-101 448 features (1, 2048, 14, 14). 'ms per class' falls towards the decoder's per-query "
          "cost as the fixed encoder cost is shared by more classes.")


class GapLinear(nn.Module):
    def __init__(self, backbone: nn.Module, num_labels: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.num_channels, num_labels)

    def forward(self, x):
        return self.fc(self.backbone(x).mean((2, 3)))


def whole_model_rows(batch: int, repeats: int, class_counts=(80, 9605)) -> None:
    table = Table(["classes", "K", "model fwd ms", "backbone + GAP + linear ms", "backbone alone ms",
                   "head overhead vs GAP+linear", "head overhead vs backbone alone", "target <= 15% (vs GAP+linear)"])
    x = torch.rand(batch, 3, 224, 224)
    for c in class_counts:
        model = hf_mlcls.create_model("mldecoder-tresnetm-224", num_labels=c).eval()
        backbone = model.model.backbone
        gap = GapLinear(backbone, c).eval()

        def run(module):
            def fn():
                with torch.no_grad():
                    module(x)
            return fn

        times = interleaved({"model": run(model), "gap": run(gap), "backbone": run(backbone)}, repeats=repeats, warmup=1)
        r_g = round_ratio(times, "model", "gap")
        r_b = round_ratio(times, "model", "backbone")
        table.add(f"{c:,}", model.config.num_queries, *(median(times[k]) * 1e3 for k in ("model", "gap", "backbone")),
                  f"{(r_g - 1) * 100:+.1f}%", f"{(r_b - 1) * 100:+.1f}%", "yes" if r_g <= 1.15 else "no")
        del model, backbone, gap
    print(f"\nmldecoder-tresnetm-224 forward, eval, fp32, batch {batch}, 224 x 224, {repeats} interleaved rounds "
          "(overheads: median of the per-round ratios).")


def group_wise_linear_rows(batch: int, repeats: int, class_counts) -> None:
    """Query2Label's GroupWiseLinear: the straightforward elementwise product (a (B, C, D)
    temporary) and sum, against the layer as it runs now (one batched dot product)."""
    from hf_mlcls.models.layers import GroupWiseLinear

    table = Table(["classes", "mul+sum fwd ms", "GroupWiseLinear fwd ms", "speed-up", "mul+sum fwd peak MiB",
                   "GroupWiseLinear fwd peak MiB", "max abs diff"])
    for c in class_counts:
        layer = GroupWiseLinear(c, 2048)
        hidden = torch.randn(batch, c, 2048)

        def straightforward():
            with torch.no_grad():
                return (layer.W * hidden).sum(-1) + layer.b

        def current():
            with torch.no_grad():
                return layer(hidden)

        diff = (current() - straightforward()).abs().max().item()
        times = interleaved({"ref": straightforward, "cur": current}, repeats=repeats, warmup=1)
        table.add(f"{c:,}", median(times["ref"]) * 1e3, median(times["cur"]) * 1e3,
                  f"{round_ratio(times, 'ref', 'cur'):.2f}x", rss_peak(straightforward) / 2**20,
                  rss_peak(current) / 2**20, f"{diff:.1e}")
    print(f"\nGroupWiseLinear (Query2Label's classifier, width 2048), batch {batch}, forward: `(W * h).sum(-1) + b` "
          "against the layer's `einsum('bcd,cd->bc', h, W[0]) + b`.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="batch of the ML-Decoder head runs")
    parser.add_argument("--model-batch", type=int, default=2, help="batch of the whole-model runs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", default=None,
                        help="name of the results fragment bench/results/NAME.md, for python bench/write_docs.py "
                             "(default: scale, or scale-quick with --quick)")
    args = parser.parse_args()
    stable_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    q2l_counts = CLASS_COUNTS
    model_counts = (80, 9605)
    if args.quick:
        args.repeats = 3
        q2l_counts = (80, 1000)
        model_counts = (80,)
    torch.manual_seed(0)
    report = Fragment(args.results or ("scale-quick" if args.quick else "scale"))
    with report.capture():
        run(args, q2l_counts, model_counts)
    report.write()


def run(args, q2l_counts, model_counts) -> None:
    print(f"{torch.get_num_threads()} torch threads.\n")
    print("#### ML-Decoder head\n")
    ml_decoder_rows(args.batch, args.repeats, CLASS_COUNTS, GROUPS)
    print("\n#### ML-Decoder target: 9,605 against 80 classes, same group count\n")
    ml_decoder_target(args.batch, 9 if args.quick else 21)
    print("\n#### Query2Label head\n")
    query2label_rows(3, q2l_counts)
    print("\n#### Head share of a TResNet-M 224 forward\n")
    whole_model_rows(args.model_batch, 5 if args.quick else 9, model_counts)
    print("\n#### Query2Label's per-class classifier: straightforward against one einsum\n")
    group_wise_linear_rows(args.batch, args.repeats, CLASS_COUNTS)


if __name__ == "__main__":
    main()
