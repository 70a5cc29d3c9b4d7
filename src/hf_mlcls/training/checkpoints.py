"""Crash safety: checkpoints that are whole or marked incomplete, and the note that says where a run stopped."""

from __future__ import annotations

import errno
import os
import shutil

# Present in a checkpoint folder while it is being written; a crash leaves it behind.
INCOMPLETE_MARKER = ".incomplete"


def stopped_note(err: BaseException, output_dir: str | None, step: int) -> str:
    """One sentence for an exception that ended training: where it stopped, what was not
    completely written, and the checkpoint to resume from."""
    parts = [f"hf_mlcls: training stopped at step {step}"]
    has_dir = bool(output_dir) and os.path.isdir(output_dir)
    incomplete = sorted(
        name for name in (os.listdir(output_dir) if has_dir else [])
        if name.startswith("checkpoint-") and os.path.exists(os.path.join(output_dir, name, INCOMPLETE_MARKER))
    )
    last = last_complete_checkpoint(output_dir) if has_dir else None
    full = _disk_full_error(err)
    if full is not None:
        where = f" while writing {full.filename}" if getattr(full, "filename", None) else ""
        parts.append(f"the disk is full{where}: free some space (or set save_total_limit) before resuming")
    elif incomplete and last:
        # torch.save reports a full disk as a RuntimeError ("unexpected pos ..."): look at the disk itself
        free, needed = shutil.disk_usage(output_dir).free, _folder_size(last)
        if free < needed:
            parts.append(
                f"the disk is full: {free / 2**20:.1f} MB free where {output_dir} is, less than one checkpoint "
                f"({needed / 2**20:.1f} MB); free some space (or set save_total_limit) before resuming"
            )
    if "DataLoader worker" in str(err):
        parts.append(
            "a data-loading worker failed (its error is above; a worker killed by a signal is often out of memory: "
            "lower dataloader_num_workers or the batch size)"
        )
    if incomplete:
        parts.append(f"{', '.join(incomplete)} was not completely written and is never resumed from")
    if last:
        parts.append(
            f"the last complete checkpoint is {last}: resume with resume_from_checkpoint=True "
            "(examples/train.py: --resume_from_checkpoint true)"
        )
    else:
        parts.append(f"there is no complete checkpoint in {output_dir!r} to resume from")
    return "; ".join(parts) + "."


def _disk_full_error(err: BaseException) -> BaseException | None:
    """The exception in ``err``'s chain that says the disk is full: an ``OSError`` with ``ENOSPC``, or
    one whose text carries the system's words for it (safetensors reports a full disk as a
    ``SafetensorError`` with the OS message inside)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return err
        if os.strerror(errno.ENOSPC) in str(err) or f"os error {errno.ENOSPC})" in str(err):
            return err
        err = err.__cause__ or err.__context__
    return None


def _folder_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder in `output_dir` that was completely written."""
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if name.startswith("checkpoint-") and name[11:].isdigit() and os.path.isdir(path):
            if not os.path.exists(os.path.join(path, INCOMPLETE_MARKER)):
                steps.append((int(name[11:]), path))
    return max(steps)[1] if steps else None
