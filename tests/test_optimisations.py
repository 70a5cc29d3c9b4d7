"""Speed-ups checked against the straightforward code they replace.

Other optimisations have their comparison next to the feature they belong to:

- ML-Decoder's group fully-connected einsum against a per-group loop:
  ``tests/test_models.py::test_group_classifier_equals_per_group_loop``;
- SDPA attention against the explicit softmax (same logits with and without attention maps):
  ``tests/test_models.py::test_attention_maps_do_not_change_logits``;
- NumPy shear / translate / sharpness RandAugment ops against timm's PIL ops:
  ``tests/test_data_transforms.py::test_fast_randaugment_ops_match_pil``,
  ``::test_fast_randaugment_same_draws_same_images`` and ``::test_fast_ops_fall_back_to_pil_where_they_do_not_apply``;
- the torchvision decode + resize backend against PIL's:
  ``tests/test_data_transforms.py::test_torchvision_backend_eval_within_one_level`` and ``::test_torchvision_backend_train``;
- the eval transform's tensor conversion against torchvision's ToTensor + Normalize (bit for bit):
  ``tests/test_data_transforms.py::test_eval_transform_equals_the_official_one``;
- uint8 batches scaled in the collator against the per-image float path:
  ``tests/test_data_transforms.py::test_uint8_output_with_batch_normalisation`` and
  ``::test_collator_scales_uint8_image_by_image_with_the_batch_arithmetic``;
- the metrics against per-class NumPy loops: ``tests/test_metrics.py``.
"""

import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from hf_mlcls.data import build_train_transform
from hf_mlcls.models.layers import GroupWiseLinear


def test_group_wise_linear_einsum_equals_the_elementwise_product_and_sum():
    torch.manual_seed(0)
    layer = GroupWiseLinear(num_labels=37, hidden_dim=24)
    hidden = torch.randn(5, 37, 24, requires_grad=True)
    out = layer(hidden)
    grads = torch.autograd.grad(out.square().sum(), (hidden, layer.W, layer.b))

    ref_layer = GroupWiseLinear(num_labels=37, hidden_dim=24)
    ref_layer.load_state_dict(layer.state_dict())
    ref_hidden = hidden.detach().clone().requires_grad_(True)
    expected = (ref_layer.W * ref_hidden).sum(-1) + ref_layer.b  # the official classifier's arithmetic
    ref_grads = torch.autograd.grad(expected.square().sum(), (ref_hidden, ref_layer.W, ref_layer.b))

    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_group_wise_linear_under_bf16_autocast():
    layer = GroupWiseLinear(num_labels=6, hidden_dim=16)
    hidden = torch.randn(2, 6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(hidden)
    expected = (layer.W * hidden).sum(-1) + layer.b
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)


def _photo(path: str, size=(640, 480), seed: int = 0) -> str:
    """A smooth colour field with hard-edged shapes: what a downscale filter acts on."""
    rng = np.random.default_rng(seed)
    image = PIL.Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize(size, PIL.Image.BICUBIC)
    draw = PIL.ImageDraw.Draw(image)
    draw.rectangle([100, 80, 300, 200], fill=(250, 20, 40))
    draw.ellipse([350, 220, 520, 400], fill=(10, 200, 90))
    image.save(path, quality=92)
    return path


def test_reduced_scale_decoding_stays_close_to_a_full_decode(tmp_path):
    """The train transform decodes a JPEG at 1/2 (or 1/4, 1/8) scale when the target is at most
    that size: only the downscale filter changes, so the result stays close to a full decode
    followed by the same resize (not bit-exact: a DCT-domain downscale, then a shorter resize)."""
    path = _photo(os.path.join(tmp_path, "a.jpg"))
    for size in (224, 112):
        fast = build_train_transform(size, cutout=False, randaugment=False, uint8_output=True)(path)
        full = build_train_transform(size, cutout=False, randaugment=False, uint8_output=True, draft=False)(path)
        diff = (fast.int() - full.int()).abs().float()
        assert fast.shape == full.shape == (3, size, size)
        assert diff.mean() < 1.0, (size, diff.mean())
        assert torch.quantile(diff.flatten(), 0.99) <= 6, size  # larger differences only on hard edges
    # no reduced decode where the target needs the full size (448 of 480 rows): bit-exact
    fast = build_train_transform(448, cutout=False, randaugment=False, uint8_output=True)(path)
    full = build_train_transform(448, cutout=False, randaugment=False, uint8_output=True, draft=False)(path)
    assert torch.equal(fast, full)
