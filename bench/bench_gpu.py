"""Training-step benchmark on a GPU: the optimised step against a plain AMP step, and the
achieved TFLOP/s against the card's bf16 peak.

    python bench/bench_gpu.py --device cuda                              # all presets, batch 32
    python bench/bench_gpu.py --device cuda --presets q2l-r101-448 --batch 48 --peak-tflops 989
    python bench/bench_gpu.py --device cuda --quick                      # Q2L R101-448 only, 5 x 5 steps
    python bench/bench_gpu.py --device cpu --dry-run                     # code-path check on a tiny model

Two training steps per preset (forward, asymmetric loss, backward, AdamW step), timed in
interleaved repetitions after warm-up (compilation included in the warm-up, reported
separately):

* **baseline**: fp16 autocast with a ``GradScaler``, NCHW (contiguous) layout, eager,
  ``torch.optim.AdamW`` (its default multi-tensor implementation);
* **optimised**: bf16 autocast (no scaler), ``channels_last``, ``torch.compile``, and
  ``torch.optim.AdamW(fused=True)``.

FLOPs per step are counted once with ``torch.utils.flop_counter.FlopCounterMode``
(forward + backward of the model; matmuls, convolutions, attention; the optimizer's
elementwise work is not counted), so "TFLOP/s" is model FLOPs / step time and
"% of peak" divides by ``--peak-tflops`` (H100 SXM dense bf16: 989; H100 PCIe: 756;
A100: 312). Peak memory is ``torch.cuda.max_memory_allocated``.

Targets (issue 8): optimised step >= 1.3x the baseline step of the same model, and >= 35%
of the bf16 peak for the Query2Label R101-448 step.

Without a CUDA device the script refuses to run, except with ``--dry-run``, which runs
every code path once on a tiny model (a timm test backbone at 64 px) on the CPU to show
that it works; its figures are CPU figures and mean nothing for a GPU.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, Table, interleaved, median, ratios, spread  # noqa: E402

import hf_mlcls  # noqa: E402

PRESETS = [
    "q2l-r101-448",
    "q2l-tresnetl-448",
    "q2l-swinl-384",
    "q2l-cvt-w24-384",
    "mldecoder-tresnetm-224",
    "mldecoder-tresnetl-448",
]
DRY_RUN_MODEL = dict(backbone="test_resnet", hidden_dim=96, dim_feedforward=64, image_size=64)


def build(preset: str, dry_run: bool):
    if dry_run:
        return hf_mlcls.create_model("q2l-r101-448", **DRY_RUN_MODEL)
    return hf_mlcls.create_model(preset)


def count_flops(model, x, labels, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            loss = model(pixel_values=x, labels=labels).loss
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def make_step(model, x, labels, device, optimised: bool, compile_model: bool):
    """One training step closure; returns (step, seconds spent compiling in the first calls)."""
    model = model.to(device)
    if optimised:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        dtype, scaler = torch.bfloat16, None
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4, fused=True)
    else:
        x = x.contiguous()
        dtype = torch.float16
        scaler = torch.amp.GradScaler(device.type)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    forward = torch.compile(model) if (optimised and compile_model) else model

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=dtype):
            loss = forward(pixel_values=x, labels=labels).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--presets", nargs="*", default=PRESETS, choices=PRESETS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation happens here)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak (H100 SXM: 989)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="q2l-r101-448 only, 5 repetitions of 5 steps")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, any device (CPU allowed), 1 step")
    parser.add_argument("--results", default=None,
                        help="name of the results fragment bench/results/NAME.md, for python bench/write_docs.py "
                             "(default: gpu; gpu-dry-run with --dry-run, which the docs never include)")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: --device cuda asked for, but torch sees no CUDA device on this machine.")
    if device.type != "cuda" and not args.dry_run:
        sys.exit(
            f"bench_gpu: refusing to run on {device.type!r}: this benchmark measures GPU training steps "
            "(bf16, channels_last, torch.compile, fused AdamW) against a GPU's bf16 peak. Run it with "
            "--device cuda on a GPU machine, or add --dry-run to check the code path on a tiny model."
        )
    presets = args.presets
    if args.quick:
        presets, args.repeats, args.steps = ["q2l-r101-448"], 5, 5
    if args.dry_run:
        presets, args.batch, args.steps, args.repeats, args.warmup = ["tiny (test_resnet Query2Label)"], 2, 1, 2, 1

    report = Fragment(args.results or ("gpu-dry-run" if args.dry_run else "gpu"))
    with report.capture():
        run(args, device, presets)
    report.write()


def run(args, device, presets) -> None:
    print(f"Device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else "") + ".")
    if args.dry_run:
        print("DRY RUN: tiny model; these figures only show that the code path works, they are not GPU figures.")
    print(f"Batch {args.batch}, {args.repeats} interleaved repetitions of {args.steps} steps; medians with the "
          "min-max of the repetitions, the speed-up taken repetition by repetition; img/s, TFLOP/s and % of peak "
          "from the median; "
          f"peak {args.peak_tflops:g} TFLOP/s (bf16 dense).\n")
    table = Table(["preset", "step", "img/s", "ms/step", "speed-up", "GFLOP/step", "TFLOP/s", "% of peak",
                   "peak memory GiB", "warm-up s (compile incl.)"])
    for preset in presets:
        torch.manual_seed(0)
        base_model = build(preset, args.dry_run)
        size = base_model.config.image_size
        x = torch.rand(args.batch, 3, size, size, device=device)
        labels = (torch.rand(args.batch, base_model.config.num_labels, device=device) < 0.05).float()
        flops = count_flops(base_model.to(device), x, labels, device)
        steps, compile_s, memory = {}, {}, {}
        for name, optimised in (("baseline: fp16 AMP, NCHW, eager, AdamW", False),
                                ("bf16, channels_last, compile, fused AdamW", True)):
            model = copy.deepcopy(base_model)
            step = make_step(model, x, labels, device, optimised, not args.no_compile)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
                memory[name] = torch.cuda.max_memory_allocated(device) / 2**30
            compile_s[name] = time.perf_counter() - t0
            steps[name] = lambda step=step: [step() for _ in range(args.steps)]
        times = interleaved(steps, repeats=args.repeats, warmup=0, device=device.type)
        names = list(steps)
        for name in names:
            t = median(times[name]) / args.steps
            tflops = flops / t / 1e12
            ms = [v / args.steps * 1e3 for v in times[name]]
            speedup = ratios(times, names[0], name)  # round by round, against the baseline of the same round
            table.add(preset, name, args.batch / t, spread(ms, "{:.1f}"), spread(speedup, "{:.2f}", "x"),
                      flops / 1e9, f"{tflops:.3g}", f"{100 * tflops / args.peak_tflops:.1f}%",
                      memory.get(name, float("nan")), compile_s[name])
        del base_model, steps
        if device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
    print("\nFLOPs per step counted by FlopCounterMode (model forward + backward, bf16 autocast); "
          "'speed-up' is against the baseline step of the same preset.")


if __name__ == "__main__":
    main()
