"""A training step with the input checks as they are now (values checked once per batch on
the host, by the collator; the model checks values only on the CPU) against the previous
checks (every forward: ``isfinite(pixel_values).all()``, a label-value ``.all()``, both read
back by the host; the collator checked nothing).

    nice python bench/bench_train_step.py              # mldecoder-tresnetm-224, batch 8 (~2 min)
    nice python bench/bench_train_step.py --size 64    # a quick look

A step: collate 8 rows (uint8 images, as the default training transform gives them), forward
with labels, backward, SGD update; fp32 on the CPU. The previous checks are restored in the
same process for the reference (the old functions are copied into this file), so the two
alternate in interleaved rounds (at least 5, the same number of steps on both sides); the
losses of the two must be equal. Timed in the process's CPU time by default (``--clock wall``
for wall time): a step takes seconds to a minute on a shared 2-core machine, and the wall time
of two identical steps in a row differs by far more than a check costs. Results go to
bench/results/train_step.md.

On a CPU a check's ``.all()`` costs one pass over the batch and no waiting, so the two are
expected to be level here. On a GPU each of those reads stalls the host until every kernel
queued before it has run, so the next step's work cannot be queued while this one computes:

    python bench/bench_train_step.py --device cuda --batch 64 --steps 20 --clock wall

runs the same comparison on a GPU, as the Trainer feeds one: the collated batch pinned and
copied without blocking, the loss kept on the device (no ``.item()`` per step), each timed
sample ``--steps`` steps back to back from the same weights with one wait for the device at
the end; losses compared within 1e-4 (the GPU's kernels need not sum in the same order).
Results go to bench/results/train_step-cuda.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment, interleaved, ratios, spread  # noqa: E402

import hf_mlcls  # noqa: E402
from hf_mlcls.data import MultiLabelCollator, collate as collate_module  # noqa: E402
from hf_mlcls.models import modeling_common, modeling_ml_decoder  # noqa: E402


def old_check_pixel_values(pixel_values):
    if not torch.is_tensor(pixel_values) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise ValueError("pixel_values must be a (batch, 3, height, width) tensor")
    if not pixel_values.is_floating_point():
        raise ValueError("pixel_values must be a floating-point tensor")
    if not torch.isfinite(pixel_values).all():
        raise ValueError("pixel_values contains NaN or inf values")


def old_check_labels(labels, logits):
    if labels.shape != logits.shape:
        raise ValueError("labels must have shape (batch, num_labels)")
    valid = (labels == 0) | (labels == 1) | (labels == -1)
    if not valid.all():
        raise ValueError("labels may only hold 1 (present), 0 (absent) and -1 (unknown)")


@contextlib.contextmanager
def previous_checks():
    saved = (modeling_ml_decoder.check_pixel_values, modeling_ml_decoder.check_labels, modeling_common.check_labels,
             collate_module._check_values)
    modeling_ml_decoder.check_pixel_values = old_check_pixel_values
    modeling_ml_decoder.check_labels = modeling_common.check_labels = old_check_labels
    collate_module._check_values = lambda *args, **kwargs: None
    try:
        yield
    finally:
        (modeling_ml_decoder.check_pixel_values, modeling_ml_decoder.check_labels, modeling_common.check_labels,
         collate_module._check_values) = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the GPU comparison (use --clock wall)")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed sample, back to back")
    parser.add_argument("--results", default=None,
                        help="results fragment bench/results/NAME.md (default train_step, or train_step-cuda on a GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type != "cpu" and args.clock == "cpu":
        parser.error("--clock cpu would count only the host's time: use --clock wall on a GPU")
    if args.rounds < 5:
        parser.error("--rounds: at least 5")
    torch.manual_seed(0)
    model = hf_mlcls.create_model("mldecoder-tresnetm-224", num_labels=80, image_size=args.size).to(device).train()
    gen = torch.Generator().manual_seed(0)
    rows = [{"pixel_values": torch.randint(0, 256, (3, args.size, args.size), dtype=torch.uint8, generator=gen),
             "labels": (torch.rand(80, generator=gen) < 0.05).float()} for _ in range(args.batch)]
    collator = MultiLabelCollator(image_mean=[0.0] * 3, image_std=[1.0] * 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    losses = {"now": [], "previous": []}

    def step(name):
        model.load_state_dict(state)  # every sample starts from the same weights and seed: equal losses expected
        torch.manual_seed(0)
        for _ in range(args.steps):
            batch = collator(rows)
            if device.type != "cpu":  # as the Trainer's loader gives it: pinned, copied without blocking
                batch = {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses[name].append(loss.detach())  # read after the timing, as the Trainer reads it only to log

    def previous():
        with previous_checks():
            step("previous")

    report = Fragment(args.results or ("train_step" if device.type == "cpu" else f"train_step-{device.type}"))
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = interleaved({"now": lambda: step("now"), "previous": previous}, repeats=args.rounds, clock=clock,
                        device=device.type)
    now, before = (torch.stack(losses[k]).double().cpu() for k in ("now", "previous"))
    now, before = now.view(-1, args.steps), before.view(-1, args.steps)  # one row per timed sample
    tolerance = {"rtol": 0.0, "atol": 0.0} if device.type == "cpu" else {"rtol": 1e-4}  # exact on the CPU
    equal = all(torch.allclose(losses_of, now[0].expand_as(losses_of), **tolerance) for losses_of in (now, before))
    where = "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device)
    report.add(f"Training steps of `mldecoder-tresnetm-224` (80 labels, random weights) at {args.size} px, batch "
               f"{args.batch}, fp32, {torch.get_num_threads()} torch threads, {where}, torch {torch.__version__}; "
               f"{args.steps} step(s) back to back per sample; {args.rounds} interleaved rounds, {args.clock} time.")
    report.add()
    table = report.table(["input checks", "steps/s", "vs previous", "loss"], ["l", "r", "r", "l"])
    steps_per_s = {k: [args.steps / t for t in v] for k, v in times.items()}
    table.add("now: host-side, once per batch (collator)", spread(steps_per_s["now"], "{:.3f}"),
              spread(ratios(times, "previous", "now"), "{:.3f}", "x"), "equal" if equal else "DIFFER")
    table.add("previous: in the forward, read back", spread(steps_per_s["previous"], "{:.3f}"), "1x", "")
    if not equal:
        raise SystemExit(f"losses differ: {losses}")
    report.write()


if __name__ == "__main__":
    main()
