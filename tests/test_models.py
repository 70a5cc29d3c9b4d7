"""Both heads as transformers models: shapes, gradients, saving/loading, remote code, presets, errors."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONES, TINY_CVT
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

import hf_mlcls
from hf_mlcls import (
    AsymmetricLoss,
    MLDecoderConfig,
    MLDecoderForImageClassification,
    Query2LabelConfig,
    Query2LabelForImageClassification,
    create_model,
    list_presets,
)
from hf_mlcls.models.layers import GroupFullyConnected, sine_position_encoding

LABELS = {0: "cat", 1: "dog", 2: "car", 3: "tree", 4: "sky"}


def tiny_q2l(**overrides):
    kwargs = dict(backbone="test_resnet", hidden_dim=96, dim_feedforward=64, id2label=LABELS, image_size=64)
    kwargs.update(overrides)
    return create_model("q2l-r101-448", **kwargs)


def tiny_mld(**overrides):
    kwargs = dict(backbone="test_resnet", decoder_embedding=32, dim_feedforward=48, id2label=LABELS, image_size=64)
    kwargs.update(overrides)
    return create_model("mldecoder-tresnetm-224", **kwargs)


VIT = dict(backbone="test_vit", backbone_kwargs={"dynamic_img_size": True})


@pytest.mark.parametrize("family", ["q2l", "mld"])
@pytest.mark.parametrize("backbone", ["cnn", "vit"])
def test_forward_shapes_two_sizes_and_gradients(family, backbone):
    extra = {} if backbone == "cnn" else dict(VIT)
    if family == "q2l":
        model = tiny_q2l(**extra, hidden_dim=96 if backbone == "cnn" else 64)
        queries = 5
    else:
        model = tiny_mld(**extra, num_groups=2)
        queries = 2
    model.train()
    for size in (64, 96):
        x = torch.randn(2, 3, size, size)
        out = model(x, labels=torch.randint(0, 2, (2, 5)).float(), output_attentions=True)
        assert out.logits.shape == (2, 5)
        grid = size // (32 if backbone == "cnn" else 16)
        assert out.cross_attentions[-1].shape == (2, queries, grid, grid)
        attn = out.cross_attentions[-1].flatten(2).sum(-1)
        if backbone == "cnn":  # a map over the whole memory sums to one
            torch.testing.assert_close(attn, torch.ones_like(attn))
    model.zero_grad()
    out = model(torch.randn(2, 3, 64, 64), labels=torch.randint(0, 2, (2, 5)).float())
    out.loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)


def test_attention_maps_do_not_change_logits():
    model = tiny_q2l().eval()
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model(x).logits, model(x, output_attentions=True).logits, atol=1e-5, rtol=1e-5)
    model = tiny_mld().eval()
    torch.testing.assert_close(model(x).logits, model(x, output_attentions=True).logits, atol=1e-5, rtol=1e-5)


def test_group_classifier_equals_per_group_loop():
    head = GroupFullyConnected(num_queries=4, hidden_dim=6, num_labels=10)  # group size 3, 12 outputs cut to 10
    torch.nn.init.normal_(head.bias)
    h = torch.randn(3, 4, 6)
    expected = torch.zeros(3, 4, 3)
    for k in range(4):
        expected[:, k, :] = h[:, k, :] @ head.weight[k]
    expected = expected.flatten(1)[:, :10] + head.bias
    torch.testing.assert_close(head(h), expected)
    zsl = GroupFullyConnected(num_queries=7, hidden_dim=6, num_labels=7, zero_shot=True)
    h = torch.randn(3, 7, 6)
    torch.testing.assert_close(zsl(h), torch.stack([h[:, k] @ zsl.weight[:, 0] for k in range(7)], 1) + zsl.bias)


def test_group_size_is_the_configs_and_the_layers():
    """One function decides the labels per query: the config, the built layer and the card agree."""
    from hf_mlcls.models.configuration_ml_decoder import MLDecoderConfig, labels_per_query

    for num_labels, num_groups, expected in ((10, 4, 3), (80, -1, 1), (250, -1, 3), (9605, 200, 49), (100, 100, 1)):
        config = MLDecoderConfig(num_labels=num_labels, num_groups=num_groups)
        layer = GroupFullyConnected(config.num_queries, 6, num_labels)
        assert config.group_size == layer.group_size == labels_per_query(num_labels, config.num_queries) == expected
        assert layer.weight.shape[0] * layer.group_size >= num_labels > layer.weight.shape[0] * (layer.group_size - 1)
    assert MLDecoderConfig(num_labels=250, zero_shot=True).group_size == 1


def test_loss_ignores_unknown_labels():
    loss_fn = AsymmetricLoss(gamma_neg=4, gamma_pos=0, clip=0.05)
    labels = torch.tensor([[1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
    logits_a = torch.randn(2, 3, requires_grad=True)
    logits_b = logits_a.detach().clone()
    logits_b[0, 2] += 5.0
    logits_b[1, 0] -= 3.0
    logits_b.requires_grad_(True)
    loss_a, loss_b = loss_fn(logits_a, labels), loss_fn(logits_b, labels)
    torch.testing.assert_close(loss_a, loss_b)
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(logits_a.grad, logits_b.grad)
    assert logits_a.grad[0, 2] == 0 and logits_a.grad[1, 0] == 0
    assert logits_a.grad[0, 0] != 0
    # a known entry does change the loss
    logits_c = logits_a.detach().clone()
    logits_c[0, 0] += 1.0
    assert not torch.isclose(loss_fn(logits_c, labels), loss_a)


def test_loss_matches_the_written_out_formula():
    logits, y = torch.randn(4, 6), torch.randint(0, 2, (4, 6)).float()
    p = torch.sigmoid(logits)
    p_neg = (1 - p + 0.05).clamp(max=1)
    base = y * torch.log(p.clamp(min=1e-8)) + (1 - y) * torch.log(p_neg.clamp(min=1e-8))
    w = torch.pow(1 - (p * y + p_neg * (1 - y)), 4 * (1 - y))
    torch.testing.assert_close(AsymmetricLoss(4, 0, 0.05)(logits, y), -(base * w).sum())
    q2l = AsymmetricLoss(2, 0, 0.0, eps=1e-5, reduction="scaled_mean")
    base = y * torch.log(p.clamp(min=1e-5)) + (1 - y) * torch.log((1 - p).clamp(min=1e-5))
    w = torch.pow(1 - (p * y + (1 - p) * (1 - y)), 2 * (1 - y))
    torch.testing.assert_close(q2l(logits, y), -(base * w).sum() / 4 / 6 * 1000)


def test_sine_position_encoding_matches_a_precomputed_buffer():
    # the official code precomputes the encoding from a cumulative sum of ones; same numbers
    h, w, f = 5, 7, 8
    ones = torch.ones(1, h, w)
    y = ones.cumsum(1) / (h + 1e-6) * 2 * math.pi
    x = ones.cumsum(2) / (w + 1e-6) * 2 * math.pi
    dim_t = 10000 ** (2 * (torch.arange(f) // 2) / f)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), 4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), 4).flatten(3)
    expected = torch.cat((py, px), 3).permute(0, 3, 1, 2)[0]
    torch.testing.assert_close(sine_position_encoding(h, w, f), expected)


@pytest.mark.parametrize("make", [tiny_q2l, tiny_mld])
def test_save_and_auto_load_give_identical_logits(make, tmp_path):
    model = make().eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x).logits
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    torch.testing.assert_close(loaded(x).logits, expected, atol=0, rtol=0)
    base = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.classifier(base(x).last_hidden_state), expected, atol=0, rtol=0)
    assert AutoConfig.from_pretrained(tmp_path).id2label == LABELS
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 64, "width": 64}


@pytest.mark.parametrize("make", [tiny_q2l, tiny_mld])
def test_pipeline_scores_every_label(make, tmp_path):
    """The documented call (README, cards) gives every label; the pipeline's default is 5, more than 5 here."""
    many = {i: f"label{i}" for i in range(8)}
    make(id2label=many).save_pretrained(tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    result = classifier(image, top_k=classifier.model.config.num_labels)
    assert sorted(r["label"] for r in result) == sorted(many.values())
    assert all(0 < r["score"] < 1 for r in result)


def test_image_processor_normalisation_follows_the_config(tmp_path):
    tiny_mld().save_pretrained(tmp_path / "tresnet")  # TResNet: inputs stay in [0, 1]
    assert AutoImageProcessor.from_pretrained(tmp_path / "tresnet").do_normalize is False
    tiny_q2l().save_pretrained(tmp_path / "resnet")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "resnet")
    assert processor.do_normalize and list(processor.image_mean) == [0.485, 0.456, 0.406]


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["hf_mlcls"] = None  # the package must not be importable here
    import torch
    from transformers import AutoModel, AutoModelForImageClassification
    folder = sys.argv[1]
    x = torch.load(sys.argv[2], weights_only=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    assert "transformers_modules" in type(model).__module__, type(model).__module__
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert "transformers_modules" in type(base).__module__
    with torch.no_grad():
        torch.save(model(x).logits, sys.argv[3])
    """
)


@pytest.mark.parametrize("make", [tiny_q2l, tiny_mld])
def test_remote_code_loads_without_the_package(make, tmp_path):
    model = make().eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x).logits
    model.save_pretrained(tmp_path / "model")
    torch.save(x, tmp_path / "x.pt")
    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model"), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), expected.detach(), atol=0, rtol=0)


@pytest.mark.parametrize("make,new", [(tiny_q2l, 3), (tiny_mld, 7)])
def test_reheading_for_a_new_label_set(make, new, tmp_path):
    make().save_pretrained(tmp_path)
    names = {i: f"new{i}" for i in range(new)}
    model = AutoModelForImageClassification.from_pretrained(
        tmp_path, num_labels=new, id2label=names, ignore_mismatched_sizes=True
    ).eval()
    out = model(torch.randn(1, 3, 64, 64)).logits
    assert out.shape == (1, new) and torch.isfinite(out).all()
    assert model.config.id2label == names


def test_checkpoint_loading_never_fetches_backbone_weights(tmp_path):
    model = tiny_q2l()
    model.config.use_pretrained_backbone = True  # as if created for training with pretrained weights
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["use_pretrained_backbone"] is True
    # offline: timm would fail to download test_resnet weights if they were requested
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.model.backbone.state_dict(), model.model.backbone.state_dict())


def test_backbone_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    donor = timm.create_model("test_resnet", num_classes=0)
    save_file(donor.state_dict(), tmp_path / "backbone.safetensors")
    model = create_model(
        "q2l-r101-448",
        backbone="test_resnet",
        hidden_dim=96,
        dim_feedforward=64,
        num_labels=3,
        freeze_batch_norm=False,
        backbone_weights_file=str(tmp_path / "backbone.safetensors"),
    )
    torch.testing.assert_close(model.model.backbone.model.state_dict(), donor.state_dict())


def test_transformers_backbones(tmp_path):
    cvt = create_model("q2l-cvt-w24-384", backbone_config=TINY_CVT, hidden_dim=32, dim_feedforward=32, num_labels=4)
    out = cvt.eval()(torch.randn(1, 3, 64, 64), output_attentions=True)
    assert out.logits.shape == (1, 4) and out.cross_attentions[0].shape == (1, 4, 4, 4)  # CvT: stride 16
    cvt.save_pretrained(tmp_path / "cvt")
    config = json.loads((tmp_path / "cvt" / "config.json").read_text())
    assert config["backbone_config"]["embed_dim"] == [8, 16, 32]
    x = torch.randn(1, 3, 64, 64)
    again = AutoModelForImageClassification.from_pretrained(tmp_path / "cvt").eval()
    torch.testing.assert_close(again(x).logits, cvt(x).logits)
    resnet = create_model(
        "mldecoder-r50-224",
        backbone="resnet",
        backbone_source="transformers",
        backbone_kwargs=dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
        decoder_embedding=16,
        dim_feedforward=16,
        num_labels=6,
    ).eval()
    assert resnet(torch.randn(2, 3, 64, 64)).logits.shape == (2, 6)


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_builds_and_its_config_round_trips(name, tmp_path):
    config = hf_mlcls.preset_config(name)
    assert config.problem_type == "multi_label_classification"
    config.save_pretrained(tmp_path)
    again = AutoConfig.from_pretrained(tmp_path)
    expected, got = config.to_dict(), again.to_dict()
    expected.pop("_name_or_path", None), got.pop("_name_or_path", None)
    assert type(again) is type(config) and got == expected
    # the real backbones are too big for the test machine: same architecture at a tiny width
    size = config.image_size
    if config.backbone_source == "transformers":
        overrides = dict(backbone_config=TINY_CVT, hidden_dim=32)
        size = 64
    elif "swin" in config.backbone:
        overrides = dict(TINY_BACKBONES["swin"], hidden_dim=128)
    else:
        family = "tresnet" if "tresnet" in config.backbone else "resnet"
        overrides = dict(TINY_BACKBONES[family], hidden_dim=256)
        size = 64
    if isinstance(config, MLDecoderConfig):
        overrides.pop("hidden_dim")
        overrides.update(decoder_embedding=32, dim_feedforward=32)
    else:
        overrides.update(dim_feedforward=32)
    model = create_model(name, **overrides).eval()
    if getattr(model.config, "zero_shot", False):
        model.set_label_embeddings(torch.randn(model.config.num_labels, model.config.label_embedding_dim))
    with torch.no_grad():
        logits = model(torch.rand(1, 3, size, size)).logits
    assert logits.shape == (1, config.num_labels) and torch.isfinite(logits).all()


def test_zero_shot_label_embeddings_are_saved_and_change_the_outputs(tmp_path):
    model = tiny_mld(zero_shot=True, label_embedding_dim=12, num_groups=-1).eval()
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(ValueError, match="no label embeddings"):
        model(x)
    emb = torch.randn(4, 12)
    model.set_label_embeddings(emb, ["a", "b", "c", "d"])
    logits = model(x).logits
    assert logits.shape == (2, 4)
    # reordering the labels reorders the outputs; fewer labels give fewer outputs
    model.set_label_embeddings(emb[[2, 0]], ["c", "a"])
    torch.testing.assert_close(model(x).logits, logits[:, [2, 0]], atol=1e-5, rtol=1e-5)
    assert model.config.id2label == {0: "c", 1: "a"}
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(x).logits, logits[:, [2, 0]], atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny_q2l(dropout=0.0)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 2, (2, 5)).float()
    model.train()
    model(x, labels=y).loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable()
    assert model.model.transformer.gradient_checkpointing
    model(x, labels=y).loss.backward()
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4)


def test_return_dict_false_gives_tuples():
    model = tiny_q2l().eval()
    x = torch.randn(1, 3, 64, 64)
    loss, logits, hidden = model(x, labels=torch.ones(1, 5), return_dict=False)
    torch.testing.assert_close(logits, model(x).logits)
    assert hidden.shape == (1, 5, 96)


# ---- errors a user can cause -------------------------------------------------------------


def test_unknown_preset_and_backbone_say_how_to_list_names():
    with pytest.raises(ValueError, match="list_presets"):
        create_model("q2l-does-not-exist")
    with pytest.raises(ValueError, match=r"timm\.list_models"):
        create_model("q2l-r101-448", backbone="no_such_net", num_labels=3)
    with pytest.raises(ValueError, match="backbone_source"):
        Query2LabelConfig(backbone_source="keras")


@pytest.mark.parametrize(
    "config_class,kwargs,match",
    [
        (Query2LabelConfig, dict(hidden_dim=100, num_heads=3), "divisible by num_heads"),
        (Query2LabelConfig, dict(hidden_dim=99, num_heads=1), "hidden_dim"),
        (Query2LabelConfig, dict(hidden_dim=6, num_heads=1), "multiple of 4"),
        (Query2LabelConfig, dict(num_decoder_layers=0), "num_decoder_layers"),
        (Query2LabelConfig, dict(dropout=1.5), "dropout"),
        (Query2LabelConfig, dict(image_mean=[0.5, 0.5]), "image_mean"),
        (MLDecoderConfig, dict(num_labels=5, num_groups=6), "num_groups"),
        (MLDecoderConfig, dict(num_groups=0), "num_groups"),
        (MLDecoderConfig, dict(decoder_embedding=30, num_heads=8), "decoder_embedding"),
        (MLDecoderConfig, dict(asl_reduction="mean"), "asl_reduction"),
        (MLDecoderConfig, dict(image_size=-3), "image_size"),
    ],
)
def test_invalid_config_values_name_the_argument(config_class, kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_class(**kwargs)


def test_hidden_dim_must_match_channels_without_input_projection():
    with pytest.raises(ValueError, match="keep_input_proj"):
        tiny_q2l(hidden_dim=64)
    model = tiny_q2l(hidden_dim=64, keep_input_proj=True)
    assert model.eval()(torch.randn(1, 3, 64, 64)).logits.shape == (1, 5)


@pytest.mark.parametrize("make", [tiny_q2l, tiny_mld])
def test_bad_inputs_are_refused_with_a_clear_message(make):
    model = make().eval()
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="NaN or inf"):
        model(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="labels must have shape"):
        model(torch.randn(2, 3, 64, 64), labels=torch.ones(2, 4))


def test_single_label_models_use_cross_entropy():
    model = tiny_mld(problem_type="single_label_classification").eval()
    x = torch.randn(2, 3, 64, 64)
    logits = model(x).logits
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3]))
    torch.testing.assert_close(model(x, labels=torch.tensor([1, 3])).loss, expected)
    one_hot = torch.nn.functional.one_hot(torch.tensor([1, 3]), 5).float()
    torch.testing.assert_close(model(x, labels=one_hot).loss, expected)
