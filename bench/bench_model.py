"""Model throughput and memory: each preset family against its own backbone + GAP + linear.

    nice python bench/bench_model.py --quick         # ML-Decoder TResNet-M 224 only, eager, ~3 min
    nice python bench/bench_model.py --models q2l-r101-448 --no-bf16 --no-channels-last --compile none
                                                     # one family, fp32 NCHW only, ~3 min
    nice python bench/bench_model.py --models mldecoder-tresnetm-224 --no-bf16 --no-channels-last \
        --compile mldecoder-tresnetm-224 --compile-passes fwd        # compiled forward, ~5 min
    nice python bench/bench_model.py                 # everything (well over an hour on 2 CPU cores)

For every preset family at its published resolution, forward (``torch.no_grad``, eval
mode) and forward + backward (train mode, the model's asymmetric loss, ``zero_grad``
between steps) are timed for the model and for a baseline made of the *same backbone
instance* followed by global average pooling and one linear layer (what a plain
multi-label classifier does); "head overhead" is ``time(model) / time(baseline) - 1``.
The two contenders alternate (interleaved repetitions); the overhead is the median of the
per-round ratios, each taken under one machine load. Variants: fp32 or bf16 autocast, NCHW or
``channels_last``, eager or ``torch.compile`` (compile only where ``--compile`` names the
preset: compiling on a 2-core CPU takes minutes per model and variant).

Swin-L and CvT-w24 are too large for a 2-core CPU run; they are benchmarked as the same
architecture (same depths, window, stride and head layout) at a smaller width, built
through ``backbone_kwargs`` (timm) / ``backbone_config`` (transformers); the table says
which width was used. All models have random weights (``use_pretrained_backbone`` off).

Time is the process's CPU time by default (``--clock cpu``, with one torch thread): on a
shared machine wall time swings with other jobs (head overheads from -29% to +42% were
seen for the same model within one wall-clock run at load 9), CPU time much less; use
``--clock wall`` with more threads or on a quiet machine.

Peak memory is the growth of the process RSS during one call (see ``_common.rss_peak``),
a lower bound that includes the autograd graph for forward + backward.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, Table, interleaved, median, rss_peak, stable_malloc  # noqa: E402

import hf_mlcls  # noqa: E402
from hf_mlcls.presets import CVT_W24  # noqa: E402

# preset -> (overrides for create_model, note shown in the table)
_SWIN_SMALL = dict(embed_dim=64, depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16))
_CVT_SMALL = dict(CVT_W24, embed_dim=[64, 256, 384], num_heads=[1, 4, 6])
FAMILIES: dict[str, tuple[dict, str]] = {
    "q2l-r101-448": ({}, "ResNet-101, 448"),
    "q2l-tresnetl-448": ({}, "TResNet-L, 448"),
    "q2l-swinl-384": (
        dict(backbone_kwargs=_SWIN_SMALL, hidden_dim=512),
        "Swin-L layout at width 64 (Swin-L: 192), 384",
    ),
    "q2l-cvt-w24-384": (
        dict(backbone_config=_CVT_SMALL, hidden_dim=384),
        "CvT-w24 layout at widths 64/256/384 (w24: 192/768/1024), 384",
    ),
    "mldecoder-tresnetm-224": ({}, "TResNet-M, 224"),
    "mldecoder-tresnetl-448": ({}, "TResNet-L v2, 448"),
}


CLOCK = [time.process_time]


class GapLinear(nn.Module):
    """The same backbone, global average pooling, one linear layer: the plain classifier."""

    def __init__(self, backbone: nn.Module, num_labels: int, loss_fct: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.num_channels, num_labels)
        self.loss_fct = loss_fct

    def forward(self, pixel_values, labels=None):
        features = self.backbone(pixel_values)
        pooled = features.mean((2, 3)) if features.ndim == 4 else features.mean(1)
        logits = self.fc(pooled)
        loss = self.loss_fct(logits, labels) if labels is not None else None
        return loss, logits


def build(preset: str):
    overrides, note = FAMILIES[preset]
    model = hf_mlcls.create_model(preset, **copy.deepcopy(overrides))
    baseline = GapLinear(model.model.backbone, model.config.num_labels, model.loss_fct)
    return model, baseline, note


def step_fns(module: nn.Module, x: torch.Tensor, labels: torch.Tensor, train: bool, bf16: bool, is_model: bool):
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def forward():
        with torch.no_grad(), autocast():
            module(x)

    def forward_backward():
        module.zero_grad(set_to_none=True)
        with autocast():
            out = module(pixel_values=x, labels=labels)
            loss = out.loss if is_model else out[0]
        loss.backward()

    return forward_backward if train else forward


def run_variant(model, baseline, batch, size, num_labels, train, bf16, channels_last, compiled, repeats, table, name, note):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    baseline.to(memory_format=fmt)
    model.train(train)
    baseline.train(train)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=fmt)
    labels = (torch.rand(batch, num_labels) < 0.05).float()
    m, b = model, baseline
    compile_s = float("nan")
    if compiled:
        t0 = time.perf_counter()
        m, b = torch.compile(model), torch.compile(baseline)
    fns = {
        "model": step_fns(m, x, labels, train, bf16, True),
        "baseline": step_fns(b, x, labels, train, bf16, False),
    }
    if compiled:
        for fn in fns.values():  # compile (and first run) outside the timing
            fn()
        compile_s = time.perf_counter() - t0
    times = interleaved(fns, repeats=repeats, warmup=1, clock=CLOCK[0])
    model.zero_grad(set_to_none=True)  # so that the gradients count in the peak
    mem_model = rss_peak(fns["model"]) / 2**20
    model.zero_grad(set_to_none=True)
    mem_base = rss_peak(fns["baseline"]) / 2**20
    t_m, t_b = median(times["model"]), median(times["baseline"])
    ratio = median([a / b for a, b in zip(times["model"], times["baseline"])])
    table.add(
        name,
        note,
        "fwd+bwd" if train else "fwd",
        "bf16" if bf16 else "fp32",
        "channels_last" if channels_last else "NCHW",
        f"yes ({compile_s:.0f} s)" if compiled else "no",
        batch,
        batch / t_m,
        batch / t_b,
        f"{(ratio - 1) * 100:+.1f}%",
        mem_model,
        mem_base,
    )
    model.zero_grad(set_to_none=True)
    return t_m, t_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine one thread gives steadier ratios)")
    parser.add_argument("--compile", nargs="*", default=None,
                        help="presets to also run compiled, fp32 NCHW (default: mldecoder-tresnetm-224; none with "
                             "--quick; the flag alone: every preset in --models)")
    parser.add_argument("--compile-passes", nargs="*", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"],
                        help="which passes to compile (compiling fwd+bwd takes several minutes more per model)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="process CPU time (default; steady on a shared machine with one thread) or wall time")
    parser.add_argument("--passes", nargs="*", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"],
                        help="eager passes to run (forward + backward of a 448 model takes ~10 s per call here)")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--quick", action="store_true", help="ML-Decoder TResNet-M 224 only, eager, 5 repetitions")
    parser.add_argument("--results", default=None,
                        help="name of the results fragment bench/results/NAME.md, for python bench/write_docs.py "
                             "(default: model-quick with --quick, else model-<first preset>-<passes>)")
    args = parser.parse_args()
    stable_malloc()
    if args.quick:
        args.models = ["mldecoder-tresnetm-224"]
        args.repeats = 5
        args.compile = [] if args.compile is None else args.compile
    if args.compile is None:
        args.compile = ["mldecoder-tresnetm-224"]
    elif args.compile == []:
        args.compile = [] if args.quick else list(args.models)
    if args.threads:
        torch.set_num_threads(args.threads)
    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    name = args.results or ("model-quick" if args.quick else f"model-{args.models[0]}-{'-'.join(args.passes)}")
    report = Fragment(name.replace("+", "_"))
    with report.capture():
        run(args)
    report.write()


def run(args) -> None:
    print(f"{torch.get_num_threads()} torch threads, {'process CPU time' if args.clock == 'cpu' else 'wall time'}; "
          f"batch {args.batch}, {args.repeats} interleaved repetitions: times are medians, the overhead the median "
          "of the per-round ratios.\n")
    table = Table(
        [
            "preset", "backbone as run", "pass", "precision", "layout", "compile", "batch",
            "model img/s", "GAP+linear img/s", "head overhead", "model peak MiB", "GAP+linear peak MiB",
        ],
        ["l", "l", "l", "l", "l", "l", "r", "r", "r", "r", "r", "r"],
    )
    for preset in args.models:
        model, baseline, note = build(preset)
        size = model.config.image_size
        for train in [p == "fwd+bwd" for p in args.passes]:
            for bf16 in (False,) if args.no_bf16 else (False, True):
                for cl in (False,) if args.no_channels_last else (False, True):
                    run_variant(model, baseline, args.batch, size, model.config.num_labels, train, bf16, cl, False,
                                args.repeats, table, preset, note)
        if preset in (args.compile or []):
            for train in [p == "fwd+bwd" for p in args.compile_passes]:
                try:
                    run_variant(model, baseline, args.batch, size, model.config.num_labels, train, False, False, True,
                                args.repeats, table, preset, note)
                except Exception as exc:  # inductor needs a C++ toolchain; say why it did not run
                    print(f"| {preset} | {note} | {'fwd+bwd' if train else 'fwd'} | fp32 | NCHW | "
                          f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} |", flush=True)
                torch._dynamo.reset()
        del model, baseline
    print("\nhead overhead = time(model) / time(same backbone + GAP + linear) - 1, same batch, same run.")


if __name__ == "__main__":
    main()
