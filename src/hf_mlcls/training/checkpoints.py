"""Crash safety: checkpoints that are whole or marked incomplete, and the note that says where a run stopped."""

from __future__ import annotations

import errno
import os
import shutil

from ..paths import check_writable_folder

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


# ---- the output folder: checked before any work, and locked while a run writes it ----------------------

#: files and folders that say a folder already holds a model or a training run
RUN_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
             "trainer_state.json", "training_args.bin", "all_results.json", "train_results.json")
LOCK_NAME = ".hf_mlcls.lock"


def is_checkpoint(folder: str) -> bool:
    """A folder the Trainer can resume from: it has the ``trainer_state.json`` every checkpoint holds."""
    return os.path.isfile(os.path.join(folder, "trainer_state.json"))


def check_output_dir(output_dir: str, overwrite: bool = False, resume=None) -> None:
    """Before a training run reads any data: refuse an ``output_dir`` it could not write, or one that
    already holds another model or run (its weights would be replaced) unless ``overwrite``; and a
    ``resume`` (``resume_from_checkpoint``) that names no checkpoint. Raises ``ValueError`` naming the
    argument as examples/train.py spells it; writes nothing.

    Resuming (``resume`` True, or a checkpoint path) continues the run in ``output_dir``, so its files are
    no reason to refuse."""
    check_writable_folder(output_dir, "--output_dir")
    if resume is True:
        if last_complete_checkpoint(output_dir) is None:
            raise ValueError(
                f"--resume_from_checkpoint true: there is no complete checkpoint-N folder in {output_dir!r} to resume "
                "from; leave --resume_from_checkpoint out to start a new run"
            )
        return
    if isinstance(resume, str):
        if not os.path.isdir(resume):
            raise ValueError(f"--resume_from_checkpoint {resume!r} does not exist; give a checkpoint-N folder or true")
        if os.path.exists(os.path.join(resume, INCOMPLETE_MARKER)):
            raise ValueError(
                f"--resume_from_checkpoint {resume!r} was not completely written (the run stopped while saving it); "
                "resume from an earlier checkpoint or pass --resume_from_checkpoint true to pick the last complete one"
            )
        if not is_checkpoint(resume):
            raise ValueError(
                f"--resume_from_checkpoint {resume!r} is not a checkpoint (no trainer_state.json); give a "
                "checkpoint-N folder written by a training run, or true for the last one in --output_dir"
            )
        return
    if overwrite or not os.path.isdir(output_dir):
        return
    names = sorted(os.listdir(output_dir))
    found = [n for n in names if n in RUN_FILES or (n.startswith("checkpoint-") and n[11:].isdigit())]
    if found:
        raise ValueError(
            f"--output_dir {output_dir!r} already holds a model or a training run ({', '.join(found[:3])}); its files "
            "would be replaced. Choose a new folder, pass --resume_from_checkpoint true to continue that run, or "
            "--overwrite_output_dir true to replace it"
        )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class OutputDirLock:
    """A lock file (``.hf_mlcls.lock``, holding the pid) that keeps two runs from writing one output folder.

    Taken with ``O_CREAT | O_EXCL`` (atomic), so of two runs started at once exactly one gets it; the other
    raises ``ValueError`` naming the folder and the pid. A lock left by a process that no longer runs (a
    killed run) is taken over. The folder is created if needed, and removed again on release if the run
    wrote nothing else into it. A context manager; use on the main process only.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_NAME)
        self._created_dir = False
        self._held = False

    def acquire(self) -> OutputDirLock:
        if not os.path.isdir(self.output_dir):
            os.makedirs(self.output_dir, exist_ok=True)
            self._created_dir = True
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        pid = int(fh.read().strip() or 0)
                except (OSError, ValueError):
                    pid = 0  # unreadable or half-written: treat as stale only if it stays so
                if pid and pid != os.getpid() and _pid_alive(pid):
                    self._cleanup_dir()
                    raise ValueError(
                        f"--output_dir {self.output_dir!r} is being written by another training run (pid {pid}, lock "
                        f"file {self.path}); wait for it to finish or choose another --output_dir"
                    ) from None
                try:
                    os.remove(self.path)  # stale: its process is gone
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()}\n")
            self._held = True
            return self
        self._cleanup_dir()
        raise ValueError(f"--output_dir {self.output_dir!r}: could not take the lock file {self.path}; try again")

    def release(self) -> None:
        if self._held:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self._held = False
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._created_dir:
            try:
                os.rmdir(self.output_dir)  # only if nothing else was written
            except OSError:
                pass
            self._created_dir = False

    def __enter__(self) -> OutputDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
