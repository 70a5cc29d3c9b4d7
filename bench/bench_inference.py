"""Inference fast-path candidates against the plain eager forward, at batch 2, fp32, on this CPU.

    nice python bench/bench_inference.py                        # q2l-r101-448 and mldecoder-tresnetl-448 (~5 min)
    nice python bench/bench_inference.py --compile              # also torch.compile(freezing) (+5 min per model)

"Official forward" is our model in plain eager fp32 under ``torch.no_grad`` (equal to the
official code's logits within 1e-4, per the converter parity tests); random weights (the cost
does not depend on them). Candidates, each on its own copy of the model:

* ``channels_last``: model and input in channels-last memory format, ``torch.inference_mode``;
* ``jit freeze``: ``torch.jit.trace`` of the forward, ``torch.jit.freeze`` (which folds batch
  norms into the convolutions) and ``torch.jit.optimize_for_inference`` (oneDNN weight
  prepacking); build time reported apart;
* ``oneDNN prepacked``: every linear and zero-padded convolution run by oneDNN on weights
  reordered once (``bench/_onednn_prepacked.py``); no tracing, nothing folded or fused;
* ``prepacked + fused backbone``: the same, with the backbone traced, frozen and run under
  oneDNN Graph fusion (``torch.jit.enable_onednn_fusion``: convolutions fused with their batch
  norms, activations and residual adds); the whole model does not run under that fusion (a
  scalar argument in the head fails in the TorchScript interpreter);
* ``compile (freezing)``, with ``--compile``: ``torch.compile`` with inductor's ``freezing``
  (constant folding, batch norms folded, prepacked weights); compile time reported apart; where it
  fails to compile (Query2Label here: a view of an expanded tensor), the results say why.

Timing: interleaved rounds in one process (eager, candidate, ... the order rotated every round),
at least 5 rounds, each call timed once; the speed-up is eager's time over the candidate's in the
same round, median with min-max. One torch thread and the process's CPU time by default (both
sides single-threaded, so CPU time leaves out the time other jobs hold the cores; ``--clock wall``
and ``--threads`` to change). Every candidate's logits are compared with eager's (max abs
difference, over every call). Each model's multiply-adds per call are counted with
``torch.utils.flop_counter``, so every row also gives its arithmetic rate (GMAC/s), set against
the best rate a single large fp32 GEMM reaches here (oneDNN, prepacked, same clock and
threads): what a speed-up would require of the hardware. Results go to bench/results/inference.md for
``python bench/write_docs.py``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, interleaved, median, spread  # noqa: E402
from _onednn_prepacked import PackedLinear, fused_backbone_copy, prepacked_copy  # noqa: E402

from hf_mlcls.presets import create_model  # noqa: E402

PRESETS = ["q2l-r101-448", "mldecoder-tresnetl-448"]
TARGET = 1.3


class _Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values, return_dict=False)[0]


def candidates(model, x, use_compile: bool) -> tuple[dict, dict, dict]:
    """name -> callable returning logits; name -> build seconds; name -> why it failed to build."""
    out, build, failed = {}, {}, {}

    def add(name, make, grad_mode=torch.no_grad, timed_build=True, may_fail=False):
        """``make()`` builds the candidate (timed, warnings off) and returns its zero-argument forward."""
        t0 = time.perf_counter()
        try:
            with grad_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                forward = make()
                forward()  # first call: tracing, profiling, compiling
        except Exception as exc:  # noqa: BLE001 - reported in the results, not hidden
            if not may_fail:
                raise
            lines = str(exc).strip().splitlines() or [""]
            failed[name] = next((line for line in lines if "Error:" in line), f"{type(exc).__name__}: {lines[0]}")[:160]
            return
        if timed_build:
            build[name] = time.perf_counter() - t0

        def call():
            with grad_mode():
                return forward()

        out[name] = call

    def channels_last():
        cl, x_cl = copy.deepcopy(model).to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        return lambda: cl(pixel_values=x_cl).logits

    def jit_freeze():
        traced = torch.jit.trace(_Logits(copy.deepcopy(model)).eval(), x, check_trace=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        return lambda: frozen(x)

    def onednn_prepacked():
        packed = prepacked_copy(model, x)
        return lambda: packed(pixel_values=x).logits

    def fused_backbone():
        fused = fused_backbone_copy(model, x)
        return lambda: fused(pixel_values=x).logits

    def compiled():
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        forward = torch.compile(_Logits(copy.deepcopy(model)).eval())
        return lambda: forward(x)

    add("channels_last", channels_last, torch.inference_mode, timed_build=False)
    add("jit freeze", jit_freeze)
    add("oneDNN prepacked", onednn_prepacked, torch.inference_mode)
    add("prepacked + fused backbone", fused_backbone)
    if use_compile:  # inductor's freezing fails on some models: said in the results
        add("compile (freezing)", compiled, may_fail=True)
    return out, build, failed


def multiply_adds(model, x) -> float:
    """Multiply-adds of one forward on ``x`` (torch.utils.flop_counter counts 2 flops per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).requires_grad_(False)
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=x)
    return counter.get_total_flops() / 2


def gemm_rate(clock, rounds: int) -> float:
    """Median GMAC/s of one large fp32 product (392 x 2048 by 2048 x 8192: a Query2Label
    feed-forward layer at 448 px, batch 2) on prepacked oneDNN weights: the best sustained
    arithmetic rate measured here."""
    torch.manual_seed(0)
    x, w, b = torch.randn(392, 2048), torch.randn(8192, 2048) * 0.02, torch.zeros(8192)
    layer = PackedLinear(w, b)
    rates = []
    with torch.inference_mode():
        layer(x)
        for _ in range(rounds):
            t0 = clock()
            layer(x)
            rates.append(392 * 2048 * 8192 / (clock() - t0) / 1e9)
    return median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=PRESETS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--compile", action="store_true", help="also torch.compile with freezing (minutes per model)")
    parser.add_argument("--results", default="inference",
                        help="name of the results fragment: bench/results/NAME.md, for python bench/write_docs.py")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds: at least 5")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    report = Fragment(args.results)
    report.add(f"Batch {args.batch}, fp32, random weights; {args.threads} torch thread(s), {args.clock} time; "
               f"{args.rounds} interleaved rounds; each cell the median with the min-max over the rounds, the "
               "speed-up taken round by round.")
    report.add()
    peak = gemm_rate(clock, max(args.rounds, 7))
    report.add(f"Best sustained fp32 rate measured here: {peak:.1f} GMAC/s (one 392 x 2048 by 2048 x 8192 product on "
               "prepacked oneDNN weights, median of rounds); GMAC/s below is each forward's multiply-adds over its time.")
    report.add()
    table = report.table(["preset", "forward", "s per call", "speed-up vs eager", "GMAC/s", "max abs diff vs eager",
                          "build s"], ["l", "l", "r", "r", "r", "r", "r"])
    verdicts = []
    for preset in args.presets:
        torch.manual_seed(0)
        model = create_model(preset).eval()
        size = model.config.image_size
        x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            reference = model(pixel_values=x).logits
        macs = multiply_adds(model, x)
        fns, build, failed = candidates(model, x, args.compile)
        diffs = {name: 0.0 for name in fns}

        def checked(name, fn):
            def call():
                diffs[name] = max(diffs[name], float((fn() - reference).abs().max()))
            return call

        def eager():
            with torch.no_grad():
                return model(pixel_values=x).logits

        timed = {"eager": eager}
        timed.update({name: checked(name, fn) for name, fn in fns.items()})
        times = interleaved(timed, repeats=args.rounds, warmup=1, clock=clock)
        eager_s = median(times["eager"])
        table.add(preset, "eager fp32 NCHW (official forward)", spread(times["eager"], "{:.2f}"), "1.00x",
                  f"{macs / eager_s / 1e9:.1f}", "", "")
        best = None
        for name in fns:
            ratio = [e / c for e, c in zip(times["eager"], times[name])]
            table.add(preset, name, spread(times[name], "{:.2f}"), spread(ratio, "{:.2f}", "x"),
                      f"{macs / median(times[name]) / 1e9:.1f}", f"{diffs[name]:.1e}", f"{build[name]:.0f}" if name in build else "")
            if best is None or sorted(ratio)[len(ratio) // 2] > best[1]:
                best = (name, sorted(ratio)[len(ratio) // 2], min(ratio), max(ratio))
        verdicts.extend(f"{preset}: `{name}` failed to build ({why})" for name, why in failed.items())
        verdicts.append(f"{preset}: best candidate `{best[0]}` at {best[1]:.2f}x (rounds {best[2]:.2f}-{best[3]:.2f}); "
                        f"target >= {TARGET}x {'met' if best[1] >= TARGET else 'NOT met'}; {macs / 1e9:.1f} GMAC per call, "
                        f"so {TARGET}x needs {TARGET * macs / eager_s / 1e9:.1f} GMAC/s over the whole forward, "
                        f"{100 * TARGET * macs / eager_s / 1e9 / peak:.0f}% of the best rate measured")

    report.add_verdicts(verdicts)
    report.write()


if __name__ == "__main__":
    main()
