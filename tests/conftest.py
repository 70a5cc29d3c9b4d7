"""Shared test settings: no test may reach the network, and tiny models stay tiny; random fault
points (where a test kills a run) come from one printed seed."""

import os
import random

import pytest
import torch

from hf_mlcls.presets import CVT_W24

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

torch.set_num_threads(2)

# Tiny stand-ins of every backbone family the presets use (same architecture, small widths).
TINY_BACKBONES = {
    "resnet": dict(backbone_kwargs=dict(layers=[1, 1, 1, 1], channels=(8, 16, 32, 64), stem_width=8)),
    "tresnet": dict(backbone_kwargs=dict(layers=[1, 1, 1, 1], width_factor=0.125)),
    "swin": dict(backbone_kwargs=dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))),
}

TINY_CVT = dict(CVT_W24, embed_dim=[8, 16, 32], num_heads=[1, 2, 2], depth=[1, 2, 3], drop_path_rate=[0.0, 0.0, 0.0])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- fault seed
FAULT_SEED_VARIABLE = "HF_MLCLS_FAULT_SEED"
_fault_seed: dict = {"value": None, "used": False}


def pytest_configure(config):
    text = os.environ.get(FAULT_SEED_VARIABLE)
    if text is None:
        seed = random.SystemRandom().randrange(2**31)
    else:
        try:
            seed = int(text)
        except ValueError:
            raise pytest.UsageError(f"{FAULT_SEED_VARIABLE}={text!r}: the fault seed must be a whole number") from None
    _fault_seed["value"] = seed
    os.environ[FAULT_SEED_VARIABLE] = str(seed)  # parallel workers and subprocesses see the same seed


def pytest_report_header(config):
    seed = _fault_seed["value"]
    return f"fault seed: {seed} (reproduce with {FAULT_SEED_VARIABLE}={seed})"


def pytest_terminal_summary(terminalreporter):
    if _fault_seed["used"]:  # also under -q, which leaves out the header
        seed = _fault_seed["value"]
        terminalreporter.write_line(f"random fault points drawn from fault seed {seed} (reproduce with {FAULT_SEED_VARIABLE}={seed})")


@pytest.fixture
def fault_rng(request):
    """A ``random.Random`` for a test's random fault points (the step a run is killed at, ...): seeded by
    the run's printed fault seed and the test's id, so that one seed reproduces every test's draws."""
    _fault_seed["used"] = True
    seed = _fault_seed["value"]
    print(f"fault seed {seed}: reproduce this test's fault points with {FAULT_SEED_VARIABLE}={seed}")
    return random.Random(f"{seed}:{request.node.nodeid}")
