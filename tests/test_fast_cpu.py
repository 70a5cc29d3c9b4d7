"""The fast CPU inference path (hf_mlcls.models.fast_cpu) against the eager forward it replaces.

Tiny models of every backbone family the presets use, with batch-norm statistics and affine
parameters drawn away from their initial values, so that folding them into the convolutions is
not a no-op. The speed is measured by ``bench/bench_inference.py`` (docs/benchmarks.md).
"""

import PIL.Image
import pytest
import torch
from torch import nn

from conftest import TINY_BACKBONES, TINY_CVT
from hf_mlcls import create_model
from hf_mlcls.inference import predict_files, predict_probabilities
from hf_mlcls.models import fast_cpu
from hf_mlcls.models.pipeline_multilabel import MultiLabelImageClassificationPipeline

LABELS = {i: f"label{i}" for i in range(5)}

# preset, tiny backbone arguments, the rewritten block expected in the fast copy
FAMILIES = {
    "q2l-resnet-bottleneck": ("q2l-r101-448", dict(TINY_BACKBONES["resnet"], hidden_dim=256, dim_feedforward=64)),
    "q2l-resnet-basic": ("q2l-r101-448", dict(backbone="test_resnet", hidden_dim=96, dim_feedforward=64)),
    "mldecoder-tresnet-v2": ("mldecoder-tresnetl-448", dict(TINY_BACKBONES["tresnet"], decoder_embedding=32, dim_feedforward=48)),
    "mldecoder-tresnet-v1": ("mldecoder-tresnetm-224", dict(TINY_BACKBONES["tresnet"], decoder_embedding=32, dim_feedforward=48)),
    "q2l-swin": ("q2l-swinl-384", dict(TINY_BACKBONES["swin"], hidden_dim=128, dim_feedforward=64)),
    "q2l-cvt": ("q2l-cvt-w24-384", dict(backbone_config=TINY_CVT, hidden_dim=32, dim_feedforward=64)),
}
CONVNETS = ("q2l-resnet-bottleneck", "q2l-resnet-basic", "mldecoder-tresnet-v2", "mldecoder-tresnet-v1")


def _randomise_batch_norms(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "running_var") and module.running_var is not None:
                for name in ("running_mean", "weight", "bias"):
                    tensor = getattr(module, name, None)
                    if tensor is not None:
                        tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.5 + (name == "weight"))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


def tiny(family: str) -> nn.Module:
    preset, overrides = FAMILIES[family]
    torch.manual_seed(0)
    sizes = {} if "swin" in family else dict(image_size=64)  # a Swin takes the size it was built for
    model = create_model(preset, id2label=LABELS, **sizes, **overrides).eval()
    _randomise_batch_norms(model)
    return model


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_fast_copy_gives_the_eager_logits_at_any_batch_and_image_size(family):
    model = tiny(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    size = model.config.image_size
    with torch.no_grad():
        fast = fast_cpu.fast_copy(model)
        sizes = [(2, size), (3, size), (1, size), (2, size)] + ([(2, size + 32)] if family in CONVNETS else [])
        for batch, side in sizes:  # more input sizes than reordered weights are kept
            images = torch.randn(batch, 3, side, side)
            expected, got = model(pixel_values=images), fast(pixel_values=images)
            torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=1e-4)
            assert float((got.logits - expected.logits).abs().max()) < 2e-5  # float rounding, not a different model
        # the attention maps the Space shows come out of the same copy
        expected = model(pixel_values=images, output_attentions=True)
        got = fast(pixel_values=images, output_attentions=True)
        torch.testing.assert_close(got.cross_attentions[-1], expected.cross_attentions[-1], rtol=0, atol=1e-5)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert not any(type(m).__module__.endswith("fast_cpu") for m in model.modules())  # the model itself is untouched
    # (the attention layers keep their original beside them, for when their weights are asked for)
    kinds = {type(m).__name__ for name, m in fast.named_modules() if ".original" not in name}
    assert "Linear" not in kinds and "MultiheadAttention" not in kinds - {"OneDNNMultiheadAttention"}
    if family in CONVNETS:  # every convolution of a ResNet / TResNet backbone runs fused, and every block
        backbone = fast.model.backbone
        assert not any(type(m) is nn.Conv2d and m.groups == 1 for m in backbone.modules())
        assert not any(hasattr(m, "running_var") for m in backbone.modules())
        assert "FusedResidualBlock" in kinds


def test_fast_model_is_built_once_and_rebuilt_when_a_weight_changes():
    model = tiny("q2l-resnet-bottleneck")
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        first = fast_cpu.fast_model(model)
        assert first is not model and fast_cpu.fast_model(model) is first
    # a training step changes the weights in place: the next call sees it
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model(pixel_values=images, labels=torch.ones(2, 5)).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        second = fast_cpu.fast_model(model)
        assert second is not first
        torch.testing.assert_close(second(pixel_values=images).logits, model(pixel_values=images).logits, rtol=0, atol=1e-4)
        # so does load_state_dict, and a running statistic changed in place
        state = {k: v * 1.5 if v.is_floating_point() else v for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        third = fast_cpu.fast_model(model)
        assert third is not second
        torch.testing.assert_close(third(pixel_values=images).logits, model(pixel_values=images).logits, rtol=0, atol=1e-4)
        next(m for m in model.modules() if hasattr(m, "running_var")).running_var.mul_(2)
        fourth = fast_cpu.fast_model(model)
        assert fourth is not third
        torch.testing.assert_close(fourth(pixel_values=images).logits, model(pixel_values=images).logits, rtol=0, atol=1e-4)
        fast_cpu.forget(model)  # after a change through .data, which no version counter sees
        assert fast_cpu.fast_model(model) is not fourth


def test_fast_model_is_the_model_itself_where_the_fast_path_does_not_apply(monkeypatch):
    model = tiny("mldecoder-tresnet-v2")
    assert fast_cpu.fast_model(model) is model  # gradients on
    with torch.no_grad():
        assert fast_cpu.fast_model(model, fast=False) is model
        model.train()
        assert fast_cpu.fast_model(model) is model
        model.eval()
        monkeypatch.setenv("HF_MLCLS_FAST_CPU", "0")
        assert fast_cpu.fast_model(model) is model
        monkeypatch.setenv("HF_MLCLS_FAST_CPU", "1")
        seen = []  # a hook on a layer the copy replaces would never run there
        hook = model.model.backbone.model.body.layer1[0].register_forward_hook(lambda m, args, out: seen.append(out))
        assert fast_cpu.fast_model(model) is model
        fast_cpu.fast_model(model)(pixel_values=torch.randn(1, 3, 64, 64))
        assert len(seen) == 1
        hook.remove()
        assert fast_cpu.fast_model(model.double()) is model
        assert fast_cpu.fast_model(model.float()) is not model


def test_a_model_the_fast_path_cannot_rewrite_runs_the_plain_forward_with_a_warning(monkeypatch, caplog):
    model = tiny("q2l-resnet-basic")

    def refuse(module):
        raise RuntimeError("unsupported layer")

    monkeypatch.setattr(fast_cpu, "_rewrite", refuse)
    with torch.no_grad(), caplog.at_level("WARNING", logger=fast_cpu.__name__):
        assert fast_cpu.fast_model(model) is model
        assert fast_cpu.fast_model(model) is model  # not tried again for the same weights
    assert [r.getMessage() for r in caplog.records].count(
        "the fast CPU inference path could not be built for this model (RuntimeError: unsupported layer); running the "
        "plain forward (HF_MLCLS_FAST_CPU=0 skips the attempt)") == 1


def _images(tmp_path, count=3):
    paths = []
    for i in range(count):
        path = tmp_path / f"image{i}.png"
        PIL.Image.new("RGB", (80, 70), (40 * i, 200 - 30 * i, 90)).save(path)
        paths.append(str(path))
    return paths


def test_predict_and_the_pipeline_take_the_fast_path_with_the_eager_scores(tmp_path, monkeypatch):
    model = tiny("mldecoder-tresnet-v1")
    paths = _images(tmp_path)
    built = []
    monkeypatch.setattr(fast_cpu, "fast_copy", lambda m, build=fast_cpu.fast_copy: built.append(m) or build(m))
    fast_scores = predict_probabilities(model, paths, batch_size=2, progress=False)
    assert built == [model]  # built once, for both batches
    eager_scores = predict_probabilities(model, paths, batch_size=2, progress=False, fast=False)
    torch.testing.assert_close(fast_scores, eager_scores, rtol=0, atol=1e-5)
    results = predict_files(model, paths, progress=False)
    assert built == [model] and [r["image"] for r in results] == paths
    pipe = MultiLabelImageClassificationPipeline(model=model, image_processor=model.build_image_processor())
    fast_out = pipe(paths, top_k=5)
    assert built == [model]  # the pipeline found the copy predict built
    monkeypatch.setenv("HF_MLCLS_FAST_CPU", "0")
    eager_out = pipe(paths, top_k=5)
    for fast_one, eager_one in zip(fast_out, eager_out):
        assert [d["label"] for d in fast_one] == [d["label"] for d in eager_one]
        assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(fast_one, eager_one))


def test_the_space_classifies_on_the_fast_path(tmp_path, monkeypatch):
    from hf_mlcls.space import inference as space_inference
    from hf_mlcls.space.store import load_model

    model = tiny("q2l-resnet-bottleneck")
    model.save_pretrained(tmp_path / "tiny")
    loaded = load_model("tiny", str(tmp_path / "tiny"))
    image = PIL.Image.new("RGB", (90, 60), (200, 30, 60))
    used = []
    monkeypatch.setattr(space_inference, "fast_model", lambda m, fast=True: used.append(m) or fast_cpu.fast_model(m, fast))
    scores, maps = space_inference.run_model(loaded, [image])
    assert used == [loaded.model] and loaded.model in fast_cpu._CACHE  # the copy was built and ran
    monkeypatch.setenv("HF_MLCLS_FAST_CPU", "0")
    eager_scores, eager_maps = space_inference.run_model(loaded, [image])
    assert abs(scores - eager_scores).max() < 1e-5 and abs(maps - eager_maps).max() < 1e-5


@pytest.mark.parametrize("size", [(28, 28), (7, 9), (1, 1), (30, 32)])
def test_winograd_convolutions_give_the_direct_convolution(size):
    # the tiny models have too few channels for the Winograd kernel: one wide layer, fused as in a block
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256).eval()
    _randomise_batch_norms(bn)
    nn.init.kaiming_normal_(conv.weight)
    x, residual = torch.randn(2, 256, *size), torch.randn(2, 256, *size)
    with torch.no_grad():
        leaky = fast_cpu.FusedConv2d(conv, bn, nn.LeakyReLU(0.01))
        last = fast_cpu.FusedConv2d(conv, bn, nn.ReLU())  # as _fuse builds a block's last convolution
        assert leaky.winograd is not None and last.winograd is not None
        expected = torch.nn.functional.leaky_relu(bn(conv(x)), 0.01)
        for _ in range(2):  # the first call at a size runs the direct kernel, the second the Winograd products
            torch.testing.assert_close(leaky(x), expected, rtol=0, atol=1e-4)
            torch.testing.assert_close(last(x, residual), torch.relu(bn(conv(x)) + residual), rtol=0, atol=1e-4)
        assert leaky.winograd.packs.packed and last.winograd.packs.packed
        exact = torch.nn.functional.leaky_relu(bn.double()(conv.double()(x.double())), 0.01)
        direct = torch.ops.mkldnn._convolution_pointwise(  # the oneDNN kernel the larger maps take
            x.contiguous(memory_format=torch.channels_last), leaky.folded_weight, leaky.bias, [1, 1], [1, 1], [1, 1], 1,
            "leaky_relu", [0.01], "")
        # both within float32 rounding of the float64 result (2,304 products summed per output, of order 1 to 30)
        assert (leaky(x).double() - exact).abs().max() < 5e-5 and (direct.double() - exact).abs().max() < 5e-5


@pytest.mark.parametrize("family", CONVNETS)
def test_blocks_write_over_their_own_tensors_and_never_over_the_callers(family):
    preset, overrides = FAMILIES[family]
    if "backbone_kwargs" in overrides:
        overrides = dict(overrides, backbone_kwargs=dict(overrides["backbone_kwargs"], layers=[2, 3, 2, 2]))
    else:
        overrides = dict(overrides, backbone_kwargs=dict(layers=[2, 3, 2, 2]))
    torch.manual_seed(0)
    model = create_model(preset, id2label=LABELS, image_size=64, **overrides).eval()
    _randomise_batch_norms(model)
    with torch.no_grad():
        fast = fast_cpu.fast_copy(model)
        stages = [m for m in fast.modules() if isinstance(m, nn.Sequential) and len(m) > 1
                  and all(isinstance(b, fast_cpu.FusedResidualBlock) for b in m)]
        assert len(stages) == 4
        for stage in stages:  # the first block's input is its caller's; every later one's is the block before's
            assert [block.owns_input for block in stage] == [False] + [True] * (len(stage) - 1)
        squeezes = [m for m in fast.modules() if isinstance(m, fast_cpu.FusedSqueezeExcite)]
        assert all(m.in_place for m in squeezes) and (bool(squeezes) == ("tresnet" in family))
        images = torch.randn(2, 3, 64, 64)
        kept = images.clone()
        for _ in range(2):  # the second call runs on reordered weights
            torch.testing.assert_close(fast(pixel_values=images).logits, model(pixel_values=images).logits, rtol=0, atol=1e-4)
        assert torch.equal(images, kept)
        # a stage called on a tensor of the caller's (as a feature extractor would) leaves it as it was
        eager_stages = [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) > 1
                        and type(m[0]).__name__ in ("Bottleneck", "BasicBlock")]
        channels = next(m for m in eager_stages[1].modules() if isinstance(m, nn.Conv2d)).in_channels
        features = torch.randn(2, channels, 8, 8)
        kept = features.clone()
        for _ in range(2):
            out = stages[1](features.contiguous(memory_format=torch.channels_last))
            torch.testing.assert_close(out, eager_stages[1](features), rtol=0, atol=1e-4)
            assert torch.equal(features, kept)


def test_squeeze_excite_is_fused_only_in_its_plain_form():
    from timm.layers import SEModule

    torch.manual_seed(0)
    plain = SEModule(32, rd_channels=8).eval()
    x = torch.randn(2, 32, 5, 7)
    fused = fast_cpu._squeeze_excite(plain)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), plain(x), rtol=0, atol=1e-6)
    assert not fused.in_place  # outside a block its input may be the caller's
    for variant in (SEModule(32, add_maxpool=True), SEModule(32, norm_layer=nn.BatchNorm2d), SEModule(32, bias=False),
                    SEModule(32, act_layer=nn.GELU), SEModule(32, gate_layer="hard_sigmoid")):
        assert fast_cpu._squeeze_excite(variant) is None


def test_weights_are_reordered_the_second_time_a_size_comes_and_two_sizes_are_kept():
    model = tiny("q2l-resnet-bottleneck")
    with torch.no_grad():
        fast = fast_cpu.fast_copy(model)
        convs = [m for m in fast.modules() if isinstance(m, fast_cpu.FusedConv2d)]
        linears = [m for m in fast.modules() if isinstance(m, fast_cpu.OneDNNLinear)]
        images = torch.randn(2, 3, 64, 64)
        expected = model(pixel_values=images).logits
        first = fast(pixel_values=images).logits  # a one-off call pays no reorder
        assert convs and linears and not any(m.packs.packed for m in convs + linears)
        second = fast(pixel_values=images).logits
        assert all(len(m.packs.packed) == 1 for m in convs + linears)
        for logits in (first, second):
            torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)
        for batch in (1, 3, 4, 1, 3):  # 1 and 3 come twice: reordered; the oldest size dropped
            fast(pixel_values=torch.randn(batch, 3, 64, 64))
        assert all({size[0] for size in m.packs.packed} == {1, 3} for m in convs)
