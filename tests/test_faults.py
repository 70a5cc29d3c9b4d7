"""Faults during training end with a clear message and an intact last checkpoint.

- A run killed at any moment (SIGKILL), even while saving, resumes to the uninterrupted result
  (subprocesses, as a real kill); also through ``examples/train.py --resume_from_checkpoint True``.
  The kill step is drawn from the fault seed pytest prints (``HF_MLCLS_FAULT_SEED=N`` replays it).
- In process, with the test's tiny trainer: a data-loading worker that dies, a disk that fills up
  while a checkpoint is written (each writer in turn: weights, optimizer, RNG state, EMA; with and
  without ``save_total_limit``), an evaluation set where a class (or every class) has no positive.
  Each time the previous complete checkpoint is still there and loads, the half-written one is never
  picked up, and the run resumes from it.
"""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainerCallback

from hf_mlcls.training import INCOMPLETE_MARKER, last_complete_checkpoint, load_ema

SCRIPT = r'''
import json, os, signal, sys
sys.path.insert(0, os.environ["TESTS_DIR"])
from transformers import TrainerCallback
from hf_mlcls.data import load_multilabel_dataset
from hf_mlcls.training import MultiLabelTrainer
from test_training import make_trainer

demo = load_multilabel_dataset("demo", os.environ["DEMO_DIR"], num_train=64, num_validation=24, image_size=32)
trainer = make_trainer(demo, os.environ["OUT_DIR"], epochs=2, save_strategy="steps", save_steps=2, eval_strategy="no")
kill_at = int(os.environ.get("KILL_AT", "0"))
kill_in_save = int(os.environ.get("KILL_IN_SAVE", "0"))

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

if kill_at:
    trainer.add_callback(Kill())
if kill_in_save:
    original = MultiLabelTrainer._save_optimizer_and_scheduler
    def dying(self, output_dir):
        if self.state.global_step == kill_in_save:  # the weights are written, the rest is not
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, output_dir)
    MultiLabelTrainer._save_optimizer_and_scheduler = dying
resume = os.environ.get("RESUME")
trainer.train(resume_from_checkpoint=True if resume == "last" else resume)
trainer.use_ema_weights()
trainer.save_model(os.path.join(os.environ["OUT_DIR"], "final"))
metrics = trainer.evaluate()
json.dump(metrics, open(os.path.join(os.environ["OUT_DIR"], "metrics.json"), "w"))
'''


def run(tmp_path, out, **env_vars):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TESTS_DIR=str(Path(__file__).parent), DEMO_DIR=str(tmp_path / "demo"), OUT_DIR=str(out))
    env.update({k: str(v) for k, v in env_vars.items()})
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("faults")
    result = run(tmp_path, tmp_path / "full")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path


def assert_same_result(a: Path, b: Path):
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)
    ma, mb = json.loads((a / "metrics.json").read_text()), json.loads((b / "metrics.json").read_text())
    for key in ("eval_mAP", "eval_mAP_voc", "eval_CF1", "eval_OF1", "eval_loss"):
        assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-4), key


def test_sigkill_at_a_random_step_then_resume_equals_an_uninterrupted_run(uninterrupted, fault_rng):
    tmp_path = uninterrupted
    kill_at = fault_rng.randint(3, 7)  # 8 steps in all, checkpoints every 2
    print(f"SIGKILL at step {kill_at}")
    out = tmp_path / f"killed{kill_at}"
    killed = run(tmp_path, out, KILL_AT=kill_at)
    assert killed.returncode == -9
    # killed in on_step_end of step k, before that step's save: the last checkpoint is from an earlier step
    assert last_complete_checkpoint(str(out)).endswith(f"checkpoint-{(kill_at - 1) // 2 * 2}")
    resumed = run(tmp_path, out, RESUME="last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(out, tmp_path / "full")


def test_the_random_fault_points_come_from_the_printed_seed(tmp_path, monkeypatch):
    """A run prints its fault seed; the same seed in HF_MLCLS_FAULT_SEED draws the same fault points."""
    import re
    import shutil

    import conftest

    shutil.copy(Path(__file__).parent / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_draw.py").write_text("def test_draw(fault_rng):\n    print('DRAW', fault_rng.randint(0, 10**9))\n")

    def pytest_run(seed=None):
        env = {k: v for k, v in os.environ.items() if k != "HF_MLCLS_FAULT_SEED"}
        env.update({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"} if seed is None else {"HF_MLCLS_FAULT_SEED": seed, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_draw.py"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)

    first = pytest_run()
    assert first.returncode == 0, first.stdout[-3000:]
    seed = re.search(r"drawn from fault seed (\d+) \(reproduce with HF_MLCLS_FAULT_SEED=\1\)", first.stdout).group(1)
    again = pytest_run(seed)
    draw = re.compile(r"DRAW (\d+)")
    assert draw.search(again.stdout).group(1) == draw.search(first.stdout).group(1)
    monkeypatch.setenv("HF_MLCLS_FAULT_SEED", "soon")
    monkeypatch.setitem(conftest._fault_seed, "value", None)
    with pytest.raises(pytest.UsageError, match=r"HF_MLCLS_FAULT_SEED='soon': the fault seed must be a whole number"):
        conftest.pytest_configure(None)


def test_a_checkpoint_half_written_by_a_crash_is_never_picked_up(uninterrupted):
    tmp_path = uninterrupted
    out = tmp_path / "killed_in_save"
    killed = run(tmp_path, out, KILL_IN_SAVE=4)
    assert killed.returncode == -9
    assert (out / "checkpoint-4" / "model.safetensors").exists()  # weights were written...
    assert (out / "checkpoint-4" / INCOMPLETE_MARKER).exists()  # ...but the checkpoint is marked incomplete
    assert last_complete_checkpoint(str(out)).endswith("checkpoint-2")
    refused = run(tmp_path, out, RESUME=str(out / "checkpoint-4"))
    assert refused.returncode != 0 and "not completely written" in refused.stderr
    resumed = run(tmp_path, out, RESUME="last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (out / "checkpoint-4" / INCOMPLETE_MARKER).exists()
    assert_same_result(out, tmp_path / "full")


# ============================================================================== in-process faults


# The same through the command line: examples/train.py, killed by SIGKILL at a random step (a
# callback added to every MultiLabelTrainer the script builds), then run again with
# --resume_from_checkpoint True.
KILL_WRAPPER = r"""
import os, runpy, signal, sys
from transformers import TrainerCallback
from hf_mlcls.training import MultiLabelTrainer

kill_at = int(os.environ.get("KILL_AT", "0"))

class Kill(TrainerCallback):
    first_step = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.first_step is None:  # where the run started: 1, or the step after the resumed checkpoint
            self.first_step = state.global_step
            with open(os.path.join(args.output_dir, "first_step.txt"), "w") as fh:
                fh.write(str(state.global_step))
        if state.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

init = MultiLabelTrainer.__init__
def with_kill(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.add_callback(Kill())
MultiLabelTrainer.__init__ = with_kill
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def train_script(tmp_path, out, *extra, **env_vars):
    from test_training import ROOT, TINY

    wrapper = tmp_path / "kill_wrapper.py"
    wrapper.write_text(KILL_WRAPPER)
    env = dict(os.environ, HF_MLCLS_CACHE=str(tmp_path / "cache"), **{k: str(v) for k, v in env_vars.items()})
    cmd = [
        sys.executable, str(wrapper), str(ROOT / "examples" / "train.py"), str(ROOT / "examples" / "configs" / "demo.yaml"),
        "--model_overrides", json.dumps(TINY), "--dataset_options", json.dumps({"num_train": 48, "num_validation": 16, "image_size": 32}),
        "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--save_total_limit", "2",
        "--output_dir", str(out), "--use_cpu", "true", *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_train_script_killed_then_resumed_with_the_flag_equals_an_uninterrupted_run(tmp_path, fault_rng):
    full = train_script(tmp_path, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    kill_at = fault_rng.randint(7, 11)  # 12 steps, a checkpoint each epoch (6 steps)
    print(f"SIGKILL at step {kill_at}")
    out = tmp_path / "killed"
    killed = train_script(tmp_path, out, KILL_AT=kill_at)
    assert killed.returncode == -9
    assert last_complete_checkpoint(str(out)).endswith("checkpoint-6")
    resumed = train_script(tmp_path, out, "--resume_from_checkpoint", "True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "first_step.txt").read_text() == "7"  # it went on from checkpoint-6, not from the start
    wa, wb = load_file(out / "model.safetensors"), load_file(tmp_path / "full" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=key)
    ma, mb = (json.loads((d / "eval_results.json").read_text()) for d in (out, tmp_path / "full"))
    for key in ("eval_mAP", "eval_mAP_voc", "eval_CF1", "eval_OF1"):
        assert ma[key] == pytest.approx(mb[key], rel=1e-4, abs=1e-4), key


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from hf_mlcls.data import load_multilabel_dataset

    root = tmp_path_factory.mktemp("faults_demo")
    return load_multilabel_dataset("demo", str(root), num_train=32, num_validation=16, image_size=32)


def trainer_for(demo, out, **args):
    """The tiny trainer of tests/test_training.py: 2 steps per epoch, a checkpoint at every step."""
    from test_training import make_trainer

    settings = dict(epochs=2, eval_strategy="no", save_strategy="steps", save_steps=1)
    return make_trainer(demo, out, **{**settings, **args})


def stopped(caught) -> str:
    return " ".join(getattr(caught.value, "__notes__", []))


def assert_intact(out: Path, step: int) -> None:
    """checkpoint-{step} is the last complete one, and everything in it loads."""
    last = last_complete_checkpoint(str(out))
    assert last == str(out / f"checkpoint-{step}"), (last, sorted(os.listdir(out)))
    assert json.loads((Path(last) / "trainer_state.json").read_text())["global_step"] == step
    model = AutoModelForImageClassification.from_pretrained(last)
    assert load_ema(model, last)
    torch.load(Path(last) / "optimizer.pt", weights_only=True)
    torch.load(Path(last) / "scheduler.pt", weights_only=True)


def assert_resumes(demo, out: Path, steps: int = 4, **args) -> None:
    trainer = trainer_for(demo, out, **args)
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == steps
    assert_intact(out, steps)


class DiesWhenFlagged(torch.utils.data.Dataset):
    """A training set whose data-loading workers die (``os._exit``, or SIGKILL as the OOM killer sends)
    once ``flag`` exists."""

    def __init__(self, inner, flag: Path, how: str):
        self.inner, self.flag, self.how = inner, str(flag), how

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        if os.path.exists(self.flag):
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        return self.inner[index]


class FlagAfterSave(TrainerCallback):
    def __init__(self, flag: Path, step: int):
        self.flag, self.step = flag, step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.flag.touch()


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_data_loading_worker_that_dies_ends_with_a_clear_message(how, demo, tmp_path):
    out = tmp_path / "run"
    trainer = trainer_for(demo, out, dataloader_num_workers=2)
    flag = tmp_path / "die"
    trainer.train_dataset = DiesWhenFlagged(trainer.train_dataset, flag, how)
    trainer.add_callback(FlagAfterSave(flag, 2))  # the second epoch's workers die at their first sample
    with pytest.raises(RuntimeError, match="DataLoader worker") as caught:
        trainer.train()
    note = stopped(caught)
    assert "training stopped at step 2" in note and "a data-loading worker failed" in note, note
    assert f"the last complete checkpoint is {out / 'checkpoint-2'}: resume with resume_from_checkpoint=True" in note
    assert_intact(out, 2)
    if how == "exit":
        assert_resumes(demo, out)


def _disk_full(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _fill_the_disk(monkeypatch, trainer, writer: str, at_step: int = 2) -> None:
    """Make ``writer`` fail as a full disk does while checkpoint-{at_step} is written."""
    import transformers.modeling_utils

    import hf_mlcls.training

    def now():
        return trainer.state.global_step == at_step

    if writer == "weights":  # safetensors reports the OS error inside its own exception type
        from safetensors import SafetensorError

        real = transformers.modeling_utils.safe_save_file

        def save_weights(tensors, filename, *args, **kwargs):
            if now():
                open(filename, "wb").close()  # the file was created, then nothing fitted
                raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
            return real(tensors, filename, *args, **kwargs)

        monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", save_weights)
    elif writer in ("optimizer", "rng"):
        real_save = torch.save
        name = {"optimizer": "optimizer.pt", "rng": "rng_state.pth"}[writer]

        def save(obj, f, *args, **kwargs):
            if now() and str(f).endswith(name):
                if writer == "optimizer":
                    raise _disk_full(f)
                # torch's zip writer says only this; the disk itself must tell
                raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4160 vs 4048")
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", save)
        if writer == "rng":
            from collections import namedtuple

            usage = namedtuple("usage", "total used free")
            monkeypatch.setattr(hf_mlcls.training.checkpoints.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    elif writer == "ema":
        real_file = hf_mlcls.training.ema.save_file

        def save_ema_file(tensors, filename, *args, **kwargs):
            if now():
                raise _disk_full(filename)
            return real_file(tensors, filename, *args, **kwargs)

        monkeypatch.setattr(hf_mlcls.training.ema, "save_file", save_ema_file)


@pytest.mark.parametrize(
    "writer, limit",
    [("weights", None), ("optimizer", None), ("rng", None), ("ema", 1)],
    ids=["weights", "optimizer", "rng-state", "ema-with-save_total_limit-1"],
)
def test_a_full_disk_while_saving_keeps_the_last_complete_checkpoint(writer, limit, demo, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = trainer_for(demo, out, save_total_limit=limit)
    _fill_the_disk(monkeypatch, trainer, writer)
    with pytest.raises(Exception) as caught:
        trainer.train()
    note = stopped(caught)
    assert "training stopped at step 2" in note and "the disk is full" in note, note
    assert "checkpoint-2 was not completely written and is never resumed from" in note, note
    assert f"the last complete checkpoint is {out / 'checkpoint-1'}" in note, note
    assert (out / "checkpoint-2" / INCOMPLETE_MARKER).exists()
    assert_intact(out, 1)  # with save_total_limit=1 too: the old checkpoint goes only once the new one is whole
    if limit:
        monkeypatch.undo()  # space was freed
        assert_resumes(demo, out, save_total_limit=limit)
        assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4"]


def test_an_evaluation_class_without_positives_is_skipped_and_named(demo, tmp_path, caplog):
    """Training goes on; the class is left out of mAP, counted, named in a warning; the best checkpoint is kept."""
    names = demo["train"].features["labels"].feature.names
    data = dict(demo, validation=demo["validation"].filter(lambda row: 0 not in row["labels"]))
    out = tmp_path / "run"
    trainer = trainer_for(data, out, eval_strategy="steps", eval_steps=2, save_steps=2, max_steps=2,
                          metric_for_best_model="ema_mAP", load_best_model_at_end=True)
    with caplog.at_level(logging.WARNING, logger="hf_mlcls.training"):
        trainer.train()
    warned = [r.getMessage() for r in caplog.records if "no positive in the evaluation set" in r.getMessage()]
    assert len(warned) == 1 and f"1 of {len(names)} classes" in warned[0] and f"({names[0]})" in warned[0], warned
    metrics = next(m for m in trainer.state.log_history if "eval_ema_mAP" in m)
    assert metrics["eval_ema_num_classes_skipped"] == 1 and 0 <= metrics["eval_ema_mAP"] <= 100
    assert trainer.state.best_model_checkpoint == str(out / "checkpoint-2")
    assert_intact(out, 2)


def test_an_evaluation_set_without_any_positive_says_so(demo, tmp_path, caplog):
    """No class has a positive: every mAP is NaN (never a made-up number), and the warning says why no
    checkpoint can be chosen as the best."""
    data = dict(demo, validation=demo["validation"].map(lambda row: {"labels": []}))
    trainer = trainer_for(data, tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="hf_mlcls.training"):
        metrics = trainer.evaluate()
    assert metrics["eval_num_classes_skipped"] == metrics["eval_ema_num_classes_skipped"] == 10
    assert metrics["eval_mAP"] != metrics["eval_mAP"] and metrics["eval_ema_mAP"] != metrics["eval_ema_mAP"]  # NaN
    warned = [r.getMessage() for r in caplog.records if "positive" in r.getMessage()]
    assert len(warned) == 1 and "no class has a positive in the evaluation set (16 images, 10 classes)" in warned[0]
    assert "no checkpoint can be chosen as the best" in warned[0]


def test_a_file_written_through_atomic_path_is_whole_or_the_old_one(tmp_path):
    # evaluation reports, predictions and EMA weights are written this way
    from hf_mlcls.paths import atomic_path
    from hf_mlcls.training.reports import write_report

    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(str(target)) as tmp:
            Path(tmp).write_text("half of the new fi")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    with atomic_path(str(target)) as tmp:
        Path(tmp).write_text("new")
        assert target.read_text() == "old"  # replaced only once the block ends
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # the usual permissions, not mkstemp's 0600
    path = write_report(str(tmp_path), "report.json", {"mAP": 1.0})
    assert json.loads(Path(path).read_text()) == {"mAP": 1.0} and os.listdir(tmp_path / "eval") == ["report.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
