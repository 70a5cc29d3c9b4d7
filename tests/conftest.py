"""Shared test settings: no test may reach the network, and tiny models stay tiny."""

import os

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
