"""Converting official checkpoints: parity with the official code's logits on the stored fixtures,
complete and reloadable output folders, and clear refusals (bad keys, pickles that run code)."""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageClassification

import hf_mlcls  # registers the Auto classes
from hf_mlcls.cli import main as cli_main
from hf_mlcls.convert import CHECKPOINTS, COCO_CLASSES, ConversionError, convert_checkpoint, load_checkpoint
from hf_mlcls.presets import CVT_W24, PRESETS

FIXTURES = Path(__file__).parent / "fixtures" / "official"

# fixture -> the preset of the published checkpoint of that family
FIXTURE_PRESETS = {
    "q2l_resnet": "q2l-r101-448",
    "q2l_resnet_inproj_prenorm": "q2l-r101-448",
    "q2l_tresnet": "q2l-tresnetl-448",
    "q2l_swin": "q2l-swinl-384",
    "q2l_cvt": "q2l-cvt-w24-384",
    "mldecoder_tresnet": "mldecoder-tresnetm-224",
    "mldecoder_tresnet_full": "mldecoder-tresnetm-224",
    "mldecoder_zsl": "mldecoder-tresnetm-zsl-224",
}

# Non-persistent buffers of timm backbones, the only model entries not taken from the checkpoint.
COMPUTED_BUFFERS = ("relative_position_index", "attn_mask", ".aa.filt")


def _meta(name: str) -> dict:
    suffix = "config.json" if name.startswith("q2l") else "args.json"
    return json.loads((FIXTURES / f"{name}.{suffix}").read_text())


def tiny_overrides(name: str) -> dict:
    """Config overrides that rebuild the fixture's tiny backbone, from its `tiny_backbone` entry."""
    meta = _meta(name)
    tiny = meta["tiny_backbone"]
    if "timm_equivalent" in tiny:
        timm_eq = tiny["timm_equivalent"]
        kwargs = {k: v for k, v in timm_eq["kwargs"].items() if k not in ("num_classes", "global_pool")}
        overrides = {"backbone": timm_eq["model_name"], "backbone_kwargs": kwargs}
    else:
        overrides = {"backbone_config": dict(CVT_W24, **tiny["transformers_equivalent"]["kwargs"])}
    if name.startswith("mldecoder"):
        overrides["image_size"] = meta["image_size"]  # ML-Decoder has no config file; Query2Label's sets img_size
    return overrides


def _io(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.io.pth", map_location="cpu", weights_only=True)


def _convert(name: str, out: Path, checkpoint: Path | None = None, **kwargs):
    args = dict(overrides=tiny_overrides(name), verify=False)
    if name.startswith("q2l"):
        args["config_file"] = str(FIXTURES / f"{name}.config.json")
    if name == "mldecoder_zsl":
        embeddings = out.parent / "wordvecs.pth"
        torch.save(_io(name)["wordvecs"], embeddings)
        args["label_embeddings"] = str(embeddings)
    args.update(kwargs)
    return convert_checkpoint(checkpoint or FIXTURES / f"{name}.pth", out, FIXTURE_PRESETS[name], **args)


def _logits(model, pixel_values):
    with torch.no_grad():
        return model.eval()(pixel_values).logits


def _edited_checkpoint(name: str, tmp_path: Path, edit) -> Path:
    obj = torch.load(FIXTURES / f"{name}.pth", map_location="cpu", weights_only=True)
    state = obj["state_dict"] if "state_dict" in obj else obj["model"]
    edit(state)
    path = tmp_path / f"{name}_edited.pth"
    torch.save(obj, path)
    return path


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", sorted(FIXTURE_PRESETS))
def test_fixture_parity_and_reload(name, tmp_path):
    io = _io(name)
    out = tmp_path / "converted"
    result = _convert(name, out)
    got = _logits(result.model, io["pixel_values"])
    assert got.shape == io["logits"].shape
    assert (got - io["logits"]).abs().max().item() <= 1e-4

    # every learned weight and statistic came from the checkpoint; only computed buffers are fresh
    assert all(any(tag in key for tag in COMPUTED_BUFFERS) for key in result.report["kept_fresh"]), result.report["kept_fresh"]
    assert result.report["fresh_counters"] == 0

    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= files
    assert any(f.startswith("modeling_") and f.endswith(".py") for f in files)  # remote code
    card = (out / "README.md").read_text()
    assert "Converted with `hf-mlcls convert`" in card and "license: mit" in card
    record = json.loads((out / "conversion.json").read_text())
    assert record["sha256"] == result.report["sha256"] and record["preset"] == FIXTURE_PRESETS[name]
    reloaded = AutoModelForImageClassification.from_pretrained(out)
    assert (_logits(reloaded, io["pixel_values"]) - io["logits"]).abs().max().item() <= 1e-4
    assert reloaded.config.num_labels == io["logits"].shape[1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".converted")]  # no temporary folder left


def test_converter_checks_its_own_folder(tmp_path):
    result = _convert("q2l_tresnet", tmp_path / "out", verify=True)
    assert result.report["reload_max_abs_diff"] <= 1e-5
    assert "backbone.1.pe" in result.report["dropped"]


# ----------------------------------------------------------------------------- key problems are named


def test_missing_key_is_named(tmp_path):
    path = _edited_checkpoint("q2l_resnet", tmp_path, lambda sd: sd.pop("module.transformer.decoder.layers.1.linear1.weight"))
    with pytest.raises(ConversionError) as err:
        _convert("q2l_resnet", tmp_path / "out", checkpoint=path)
    assert "missing keys" in str(err.value)
    assert "model.transformer.decoder_layers.1.linear1.weight" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_unknown_and_unexpected_keys_are_named(tmp_path):
    def edit(sd):
        sd["module.transformer.bogus.weight"] = torch.zeros(3)  # no rule maps it
        sd["module.transformer.encoder.layers.0.self_attn.bogus"] = torch.zeros(3)  # mapped, but no such weight

    path = _edited_checkpoint("q2l_resnet", tmp_path, edit)
    with pytest.raises(ConversionError) as err:
        _convert("q2l_resnet", tmp_path / "out", checkpoint=path)
    message = str(err.value)
    assert "unknown checkpoint keys" in message and "transformer.bogus.weight" in message
    assert "unexpected keys" in message
    assert "transformer.encoder.layers.0.self_attn.bogus -> model.transformer.encoder_layers.0.self_attn.bogus" in message
    assert not (tmp_path / "out").exists()


def test_ml_decoder_key_problems_and_shapes(tmp_path):
    def edit(sd):
        sd.pop("head.decoder.layers.0.norm3.bias")
        sd["head.decoder.extra"] = torch.zeros(1)
        sd["body.layer1.0.conv1.0.weight"] = torch.zeros(1, 1, 1, 1)

    path = _edited_checkpoint("mldecoder_tresnet", tmp_path, edit)
    with pytest.raises(ConversionError) as err:
        _convert("mldecoder_tresnet", tmp_path / "out", checkpoint=path)
    message = str(err.value)
    assert "model.decoder_layer.norm3.bias" in message
    assert "head.decoder.extra" in message
    assert "body.layer1.0.conv1.0.weight -> model.backbone.model.body.layer1.0.conv1.conv.weight" in message


def test_wrong_backbone_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ConversionError, match="basic-first TResNet with 64 output features"):
        _convert("mldecoder_tresnet", tmp_path / "out", overrides=dict(tiny_overrides("mldecoder_tresnet"), backbone="tresnet_v2_l",
                                                                         backbone_kwargs={"layers": [1, 1, 1, 1], "width_factor": 0.125}))


def test_training_checkpoint_as_released(tmp_path):
    # main_mlc.py's file when the EMA model won: bare keys (no `module.`), epoch / arch / best_mAP (numpy) /
    # optimizer entries; and an inplace_abn < 1.1 checkpoint without num_batches_tracked
    obj = torch.load(FIXTURES / "q2l_tresnet.pth", map_location="cpu", weights_only=True)
    state = {k[len("module."):]: v for k, v in obj["state_dict"].items() if not k.endswith("num_batches_tracked")}
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 12, "arch": "Q2L-TResL-448", "state_dict": state, "best_mAP": np.float64(87.3),
                "optimizer": optimizer}, path)
    result = _convert("q2l_tresnet", tmp_path / "out", checkpoint=path)
    assert result.report["fresh_counters"] > 0  # the counters are the only thing not from the file
    io = _io("q2l_tresnet")
    assert (_logits(result.model, io["pixel_values"]) - io["logits"]).abs().max().item() <= 1e-4


# ----------------------------------------------------------------------------- config.json


def test_config_json_must_match_the_weights(tmp_path):
    config = json.loads((FIXTURES / "q2l_resnet.config.json").read_text())
    config["dim_feedforward"] = 32
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="dim_feedforward: config says 32, the weights say 24"):
        _convert("q2l_resnet", tmp_path / "out", config_file=str(path))


def test_position_table_pins_the_input_size(tmp_path):
    config = json.loads((FIXTURES / "q2l_swin.config.json").read_text())
    config["img_size"] = 96
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    overrides = tiny_overrides("q2l_swin")
    overrides["backbone_kwargs"]["img_size"] = 96
    with pytest.raises(ConversionError, match=r"backbone.1.pe has shape \(1, 16, 2, 2\).*img_size 64"):
        _convert("q2l_swin", tmp_path / "out", config_file=str(path), overrides=overrides)


def test_config_json_backbone_must_match_the_preset(tmp_path):
    with pytest.raises(ConversionError, match="backbone 'tresnetl'.*preset 'q2l-r101-448'"):
        convert_checkpoint(FIXTURES / "q2l_tresnet.pth", tmp_path / "out", "q2l-r101-448",
                           config_file=str(FIXTURES / "q2l_tresnet.config.json"), overrides=tiny_overrides("q2l_resnet"))


def test_without_config_json_the_weights_set_the_transformer(tmp_path):
    overrides = dict(tiny_overrides("q2l_resnet"), image_size=64, num_heads=2)
    result = convert_checkpoint(FIXTURES / "q2l_resnet.pth", tmp_path / "out", "q2l-r101-448", overrides=overrides, verify=False)
    config = result.model.config
    assert (config.hidden_dim, config.dim_feedforward, config.num_encoder_layers, config.num_decoder_layers) == (16, 24, 1, 2)
    io = _io("q2l_resnet")
    assert (_logits(result.model, io["pixel_values"]) - io["logits"]).abs().max().item() <= 1e-4
    assert any("no config.json" in note for note in result.notes)


# ----------------------------------------------------------------------------- unsafe files


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    sentinel = tmp_path / "executed"
    payload = _RunsCode()
    payload.sentinel = sentinel
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": payload}, path)
    with pytest.raises(ConversionError, match=r"refusing to load .*evil\.pth.*posix\.system|refusing to load .*evil\.pth"):
        convert_checkpoint(path, tmp_path / "out", "q2l-r101-448")
    assert not sentinel.exists()
    assert not (tmp_path / "out").exists()
    # and through the command line: exit status 2, one line naming the file
    assert cli_main(["convert", str(path), str(tmp_path / "out"), "--preset", "q2l-r101-448"]) == 2
    assert not sentinel.exists()


def test_numpy_scalars_of_training_checkpoints_load(tmp_path):
    # Query2Label stores best_mAP as a numpy float64; numpy 1.x pickles it as numpy.core.multiarray.scalar
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "best_mAP": np.float64(84.9), "epoch": 3}, path,
               _use_new_zipfile_serialization=False)
    old_style = tmp_path / "numpy1.pth"
    old_style.write_bytes(path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    for p in (path, old_style):
        obj = load_checkpoint(p)
        assert float(obj["best_mAP"]) == pytest.approx(84.9)
        assert torch.equal(obj["state_dict"]["w"], torch.ones(2))


# ----------------------------------------------------------------------------- labels, zero-shot, output folder


def test_labels_from_file_and_cli(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(5)) + "\n")
    out = tmp_path / "out"
    args = ["convert", str(FIXTURES / "q2l_resnet.pth"), str(out), "--preset", "q2l-r101-448",
            "--config", str(FIXTURES / "q2l_resnet.config.json"), "--labels", str(labels), "--no-verify"]
    for key, value in tiny_overrides("q2l_resnet").items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    assert cli_main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): f"class {i}" for i in range(5)}
    assert "converted" in capsys.readouterr().err

    labels.write_text("a\nb\n")
    assert cli_main(args[:2] + [str(tmp_path / "out2")] + args[3:]) == 2
    assert "has 2 names but the checkpoint" in capsys.readouterr().err


def test_coco_names_for_80_classes(tmp_path):
    def widen(sd):  # 80 classes: repeat the head's rows
        sd["module.query_embed.weight"] = sd["module.query_embed.weight"].repeat(16, 1)
        sd["module.fc.W"] = sd["module.fc.W"].repeat(1, 16, 1)
        sd["module.fc.b"] = sd["module.fc.b"].repeat(1, 16)

    config = json.loads((FIXTURES / "q2l_resnet.config.json").read_text())
    config["num_class"] = 80
    (tmp_path / "config.json").write_text(json.dumps(config))
    path = _edited_checkpoint("q2l_resnet", tmp_path, widen)
    result = _convert("q2l_resnet", tmp_path / "out", checkpoint=path, config_file=str(tmp_path / "config.json"))
    assert [result.model.config.id2label[i] for i in range(80)] == list(COCO_CLASSES)
    assert result.model.config.id2label[0] == "person" and result.model.config.id2label[79] == "toothbrush"


def test_single_label_checkpoint_by_name(tmp_path, caplog):
    # the Stanford Cars entry: single-label, input 384 (here rebuilt on the tiny fixture's backbone)
    result = convert_checkpoint(FIXTURES / "mldecoder_tresnet.pth", tmp_path / "out", "tresnet_l_stanford_card_96.41",
                                overrides=tiny_overrides("mldecoder_tresnet"), verify=False)
    assert result.preset == "mldecoder-tresnetl-448" and result.entry.name == "tresnet_l_stanford_card_96.41"
    assert result.model.config.problem_type == "single_label_classification"
    assert result.model.config.id2label[0] == "LABEL_0"
    assert "not shipped" in caplog.text
    io = _io("mldecoder_tresnet")
    assert (_logits(result.model, io["pixel_values"]) - io["logits"]).abs().max().item() <= 1e-4


def test_zero_shot_needs_label_embeddings(tmp_path):
    with pytest.raises(ConversionError, match="--label-embeddings"):
        convert_checkpoint(FIXTURES / "mldecoder_zsl.pth", tmp_path / "out", "mldecoder-tresnetm-zsl-224",
                           overrides=tiny_overrides("mldecoder_zsl"))


def test_output_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="not empty"):
        _convert("mldecoder_tresnet", out)
    assert (out / "keep.txt").read_text() == "mine"


def test_backbone_only(tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "backbone"
    result = _convert("mldecoder_tresnet", out, backbone_only=True)
    weights = load_file(out / "backbone.safetensors")
    assert "body.conv1.conv.weight" in weights and not any(k.startswith("head") for k in weights)
    assert all("head." in k for k in result.report["dropped"])
    full = _convert("mldecoder_tresnet", tmp_path / "full")
    expected = {k: v for k, v in full.model.model.backbone.model.state_dict().items() if not k.endswith(".aa.filt")}
    assert set(weights) == set(expected)
    assert all(torch.equal(weights[k], v) for k, v in expected.items())
    # what the training recipe does with it: a fresh model that starts from these backbone weights
    started = hf_mlcls.create_model("mldecoder-tresnetm-224", num_labels=3, backbone_weights_file=str(out / "backbone.safetensors"),
                                    **{k: v for k, v in tiny_overrides("mldecoder_tresnet").items()})
    assert all(torch.equal(started.model.backbone.model.state_dict()[k], v) for k, v in expected.items())


def test_table_covers_every_published_checkpoint():
    names = set(CHECKPOINTS)
    assert {"Q2L-R101-448", "Q2L-R101-576", "Q2L-TResL-448", "Q2L-TResL_22k-448", "Q2L-SwinL-384", "Q2L-CvT_w24-384"} <= names
    assert {"tresnet_m_COCO_224_84_2", "tresnet_l_COCO__448_90_0", "tresnet_xl_COCO_640_91_4",
            "tresnet_m_open_images_200_groups_86_8", "tresnet_l_stanford_card_96.41", "tresnet_l_pretrain_ml_decoder"} <= names
    for entry in CHECKPOINTS.values():
        assert entry.preset in PRESETS
        assert entry.url.startswith("https://")
    cars = CHECKPOINTS["tresnet_l_stanford_card_96.41"]
    assert cars.overrides["problem_type"] == "single_label_classification" and cars.num_labels == 196


def test_module_entry_point_help(monkeypatch, capsys):
    # `python -m hf_mlcls.convert` is `hf-mlcls convert` (run in-process: a new interpreter costs seconds)
    monkeypatch.setattr(sys, "argv", ["hf_mlcls.convert", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("hf_mlcls.convert", run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--preset" in out and "Q2L-CvT_w24-384" in out and "tresnet_l_pretrain_ml_decoder" in out


@pytest.mark.parametrize("data", [b"these bytes are not a checkpoint", b"\x80\x02garbage", b""])
def test_bytes_that_are_not_a_checkpoint_are_one_clear_error(tmp_path, data, capsys):
    path = tmp_path / "model.pth"
    path.write_bytes(data)
    with pytest.raises(ConversionError, match=r"model\.pth") as err:
        load_checkpoint(path)
    assert "unpickling it would run code" not in str(err.value)  # garbage is not called a malicious pickle
    assert cli_main(["convert", str(path), str(tmp_path / "out"), "--preset", "q2l-r101-448"]) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "out").exists()
