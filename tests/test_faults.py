"""A run killed at any moment (SIGKILL), even while saving, resumes to the uninterrupted result."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_mlcls.training import INCOMPLETE_MARKER, last_complete_checkpoint

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


def test_sigkill_at_a_random_step_then_resume_equals_an_uninterrupted_run(uninterrupted):
    tmp_path = uninterrupted
    kill_at = random.Random(os.getpid()).randint(3, 7)  # 8 steps in all, checkpoints every 2
    out = tmp_path / f"killed{kill_at}"
    killed = run(tmp_path, out, KILL_AT=kill_at)
    assert killed.returncode == -9
    # killed in on_step_end of step k, before that step's save: the last checkpoint is from an earlier step
    assert last_complete_checkpoint(str(out)).endswith(f"checkpoint-{(kill_at - 1) // 2 * 2}")
    resumed = run(tmp_path, out, RESUME="last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_result(out, tmp_path / "full")


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
