"""Model cards, the push folder, and pushing: dry runs load offline, failures are one clear line."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants
from PIL import Image

from hf_mlcls import create_model
from hf_mlcls.cli import UserError, main
from hf_mlcls.hub import (
    EVAL_METRICS,
    deploy_space,
    load_eval_results,
    prepare_upload_folder,
    push_to_hub,
    render_model_card,
)

LABELS = {0: "cat", 1: "dog", 2: "car", 3: "tree", 4: "sky"}


def tiny_q2l():
    return create_model(
        "q2l-r101-448", backbone="test_resnet", hidden_dim=96, dim_feedforward=64, id2label=LABELS, image_size=64
    )


def tiny_mld():
    return create_model(
        "mldecoder-tresnetm-224",
        backbone="test_resnet",
        decoder_embedding=32,
        dim_feedforward=48,
        id2label=LABELS,
        image_size=64,
        num_groups=2,
    )


def eval_json(path: Path, **changes) -> Path:
    data = {
        "model": "tiny",
        "dataset": "coco2014",
        "split": "validation",
        "num_samples": 40,
        "metrics": {name: 40.0 + i for i, name in enumerate(EVAL_METRICS)},
        "per_class_AP": {name: 10.0 * (i + 1) for i, name in LABELS.items()},
    }
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
            digest.update(str(path.stat().st_mtime_ns).encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Both families saved as train.py would leave them (plus files that must not be uploaded)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for name, make in (("q2l", tiny_q2l), ("mld", tiny_mld)):
        torch.manual_seed(0)
        model = make().eval()
        model.save_pretrained(root / name)
        (root / name / "training_args.bin").write_bytes(b"pickle, never uploaded")
        (root / name / "checkpoint-10").mkdir()
        x = torch.rand(2, 3, 64, 64)
        with torch.no_grad():
            torch.save({"x": x, "logits": model(x).logits}, root / f"{name}-io.pt")
        out[name] = root / name
    out["root"] = root
    return out


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert huggingface_hub.get_token() is None


@pytest.mark.parametrize("family", ["q2l", "mld"])
def test_dry_run_writes_the_upload_folder_and_a_card_with_model_index(family, saved, tmp_path, capsys):
    source = saved[family]
    before = tree_hash(source)
    out = tmp_path / "upload"
    rc = main(["push", str(source), "me/tiny-" + family, "--dry-run", str(out), "--eval-json",
               str(eval_json(tmp_path / "eval.json"))])
    assert rc == 0
    assert "nothing uploaded" in capsys.readouterr().out
    assert tree_hash(source) == before
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "eval_results.json"} <= names
    assert "training_args.bin" not in names and "checkpoint-10" not in names
    config = json.loads((out / "config.json").read_text())
    for ref in config["auto_map"].values():
        assert (out / (ref.split(".")[0] + ".py")).is_file()

    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "image-classification"
    assert card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers"
    assert card.data.datasets == ["coco2014"]
    assert card.data.base_model == "timm/test_resnet.r160_in1k"
    assert "multi-label-image-classification" in card.data.tags
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) >= {"mAP", "CF1", "OF1"}
    assert results["mAP"].metric_value == 40.0 and results["OF1"].metric_value == 47.0
    assert results["mAP"].dataset_split == "validation" and results["mAP"].dataset_name == "MS-COCO 2014"
    text = card.text
    for needle in ("trust_remote_code=True", "import hf_mlcls", 'pipeline("image-classification"', "## Limitations",
                   "@article{liu2021query2label", "@inproceedings{ridnik2023mldecoder", "| mAP | 40.00 |",
                   "me/tiny-" + family):
        assert needle in text, needle
    assert ("Query2Label" if family == "q2l" else "ML-Decoder") in text.split("## How to use")[0]


LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    if sys.argv[1] == "without":
        sys.modules["hf_mlcls"] = None  # the package must not be importable
        remote = dict(trust_remote_code=True)
    else:
        import hf_mlcls
        remote = {}
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoModelForImageClassification, pipeline

    for folder, io_file in zip(sys.argv[2::2], sys.argv[3::2]):
        io = torch.load(io_file, weights_only=True)
        model = AutoModelForImageClassification.from_pretrained(folder, **remote).eval()
        assert ("transformers_modules" in type(model).__module__) == (sys.argv[1] == "without"), type(model)
        with torch.no_grad():
            torch.testing.assert_close(model(io["x"]).logits, io["logits"], atol=1e-6, rtol=0)
        base = AutoModel.from_pretrained(folder, **remote).eval()
        with torch.no_grad():
            assert base(io["x"]).last_hidden_state.shape[0] == 2
        classifier = pipeline("image-classification", model=folder, **remote)
        result = classifier(Image.new("RGB", (40, 30), (120, 30, 200)), top_k=classifier.model.config.num_labels)  # the card's call
        assert sorted(r["label"] for r in result) == ["car", "cat", "dog", "sky", "tree"], result
        assert all(0 < r["score"] < 1 for r in result)
    print("ok", sys.argv[1])
    """
)


def test_dry_run_folder_loads_offline_in_a_fresh_process(saved, tmp_path):
    """Both families, with hf_mlcls and without it (remote code), in two fresh processes run side by side."""
    args = []
    for family in ("q2l", "mld"):
        out = tmp_path / family
        push_to_hub(saved[family], f"me/{family}", dry_run=out, eval_json=eval_json(tmp_path / "e.json"))
        args += [str(out), str(saved["root"] / f"{family}-io.pt")]
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    runs = {
        package: subprocess.Popen([sys.executable, str(script), package, *args], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for package in ("with", "without")
    }
    for package, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{package} hf_mlcls:\n{stderr[-3000:]}"
        assert f"ok {package}" in stdout


def test_missing_token_is_one_clear_line_and_the_folder_is_untouched(saved, no_token, capsys):
    before = tree_hash(saved["q2l"])
    assert main(["push", str(saved["q2l"]), "me/tiny"]) == 2
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert tree_hash(saved["q2l"]) == before
    assert main(["deploy-space", "me/space"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def test_offline_mode_is_one_clear_line_and_the_folder_is_untouched(saved, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = tree_hash(saved["mld"])
    assert main(["push", str(saved["mld"]), "me/tiny", "--token", "hf_fake"]) == 2
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "Traceback" not in err
    assert tree_hash(saved["mld"]) == before


def test_unreachable_hub_is_one_clear_line_and_the_folder_is_untouched(saved, monkeypatch, capsys):
    with socket.socket() as sock:  # a local port nobody listens on: the connection is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    before = tree_hash(saved["q2l"])
    assert main(["push", str(saved["q2l"]), "me/tiny", "--token", "hf_fake"]) == 2
    err = capsys.readouterr().err
    assert "could not be reached" in err and "Traceback" not in err
    assert tree_hash(saved["q2l"]) == before


def test_push_is_one_commit_of_exactly_the_dry_run_files(saved, monkeypatch, tmp_path):
    calls = []

    def fake_create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs.get("private"), kwargs.get("repo_type")))

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        calls.append(("upload_folder", repo_id, files, kwargs.get("commit_message")))
        return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    ev = eval_json(tmp_path / "eval.json")
    artifact = tmp_path / "per_class_ap.csv"
    artifact.write_text("label,AP\ncat,10\n")
    dry = push_to_hub(saved["q2l"], "me/tiny", dry_run=tmp_path / "dry", eval_json=ev, eval_artifacts=[artifact])
    result = push_to_hub(saved["q2l"], "me/tiny", token="hf_fake", private=True, eval_json=ev,
                         eval_artifacts=[artifact])
    assert [c[0] for c in calls] == ["create_repo", "upload_folder"]
    assert calls[0][2] is True
    assert calls[1][2] == dry["files"] and "eval/per_class_ap.csv" in dry["files"]
    assert result["commit_url"].endswith("/commit/1")
    assert "eval/per_class_ap.csv" in (tmp_path / "dry" / "README.md").read_text()


def test_real_evaluate_output_is_picked_up_from_the_model_folder(tmp_path):
    """examples/evaluate.py's own output (metrics.json, CSV, figure in <model>/eval) feeds the card unchanged."""
    pytest.importorskip("sklearn", reason="the demo data set is drawn from scikit-learn's digits")
    script = Path(__file__).resolve().parents[1] / "examples" / "evaluate.py"
    if not script.is_file():
        pytest.skip("examples/evaluate.py is not in this checkout")
    import importlib.util

    from hf_mlcls.data.demo import DEMO_CLASSES

    model = create_model("q2l-r101-448", backbone="test_resnet", hidden_dim=96, dim_feedforward=64,
                         id2label=dict(enumerate(DEMO_CLASSES)), image_size=64)
    model.save_pretrained(tmp_path / "model")
    spec = importlib.util.spec_from_file_location("hf_mlcls_evaluate_example", script)
    evaluate = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = evaluate
    spec.loader.exec_module(evaluate)
    evaluate.main(["--model", str(tmp_path / "model"), "--dataset", "demo", "--data_dir", str(tmp_path / "demo"),
                   "--dataset_options", json.dumps({"num_train": 4, "num_validation": 12}), "--batch_size", "12"])
    result = push_to_hub(tmp_path / "model", "me/demo", dry_run=tmp_path / "out")
    assert {"eval_results.json", "eval/per_class_ap.csv", "eval/evaluation.png"} <= set(result["files"])
    assert "eval/" not in result["skipped"]
    card = ModelCard.load(tmp_path / "out" / "README.md")
    reported = json.loads((tmp_path / "model" / "eval" / "metrics.json").read_text())
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["mAP"] == round(reported["metrics"]["mAP"], 2) and results["OF1"] == round(reported["metrics"]["OF1"], 2)
    assert card.data.datasets == ["demo"] and "(eval/evaluation.png)" in card.text


def test_bad_inputs_name_the_problem(saved, tmp_path):
    with pytest.raises(UserError, match="missing field 'split'"):
        data = json.loads(eval_json(tmp_path / "e.json").read_text())
        del data["split"]
        (tmp_path / "e.json").write_text(json.dumps(data))
        load_eval_results(tmp_path / "e.json")
    ok = json.loads(eval_json(tmp_path / "h.json").read_text())
    ok["metrics"].update(num_classes=9605, num_classes_skipped=2)
    ok["per_class_AP"]["cat"] = None  # no positive in the split: no AP
    card = render_model_card(tiny_q2l().config, load_eval_results(eval_json(tmp_path / "h.json", **ok)))
    assert "| num_classes | 9605 |" in card.text and "1 class(es) had no positive image" in card.text
    with pytest.raises(UserError, match="outside 0-100"):
        load_eval_results(eval_json(tmp_path / "f.json", metrics={m: 0.5 for m in EVAL_METRICS} | {"mAP": 150}))
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(UserError, match="g.json is not valid JSON"):
        load_eval_results(tmp_path / "g.json")
    with pytest.raises(UserError, match="not empty"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        prepare_upload_folder(saved["q2l"], tmp_path / "full")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((saved["q2l"] / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="no safetensors weights"):
        prepare_upload_folder(pickled, tmp_path / "out")
    with pytest.raises(UserError, match="config.json describes model_type 'vit'"):
        other = tmp_path / "vit"
        other.mkdir()
        (other / "config.json").write_text(json.dumps({"model_type": "vit"}))
        (other / "model.safetensors").write_bytes(b"")
        prepare_upload_folder(other, tmp_path / "vit-out")
    assert not (tmp_path / "vit-out").exists()  # no half-written folder
    with pytest.raises(UserError, match="owner/name"):
        push_to_hub(saved["q2l"], "not a repo", dry_run=tmp_path / "out2")


def test_card_without_evaluation_and_for_a_zero_shot_model():
    model = create_model("mldecoder-tresnetm-zsl-224", backbone="test_resnet", decoder_embedding=32,
                         dim_feedforward=48, image_size=64, label_embedding_dim=16, num_labels=3)
    card = render_model_card(model.config, repo_id="me/zsl")
    assert card.data.eval_results is None
    assert "zero-shot-image-classification" in card.data.tags
    assert "set_label_names" in card.text and "No evaluation results" in card.text
    ModelCard(str(card))  # what the Hub would parse


def test_older_folder_without_remote_code_gets_it(saved, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("model.safetensors", "config.json"):
        (old / name).write_bytes((saved["mld"] / name).read_bytes())
    config = json.loads((old / "config.json").read_text())
    config.pop("auto_map")
    (old / "config.json").write_text(json.dumps(config))
    result = prepare_upload_folder(old, tmp_path / "out")
    assert "modeling_ml_decoder.py" in result["files"] and "preprocessor_config.json" in result["files"]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["auto_map"]["AutoModelForImageClassification"]


def test_older_folder_without_the_pipeline_gets_it(saved, tmp_path):
    """A folder saved before the pipeline shipped: complete model code, no custom_pipelines, no pipeline file."""
    old = tmp_path / "old"
    shutil.copytree(saved["mld"], old)
    (old / "pipeline_multilabel.py").unlink()
    config = json.loads((old / "config.json").read_text())
    config.pop("custom_pipelines")
    (old / "config.json").write_text(json.dumps(config))
    result = prepare_upload_folder(old, tmp_path / "out")
    assert "pipeline_multilabel.py" in result["files"]
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["custom_pipelines"]["image-classification"]["impl"] == "pipeline_multilabel.MultiLabelImageClassificationPipeline"


def test_deploy_space_dry_run(tmp_path, capsys):
    out = tmp_path / "space"
    assert main(["deploy-space", "me/demo", "--dry-run", str(out), "--models", "me/a,me/b"]) == 0
    for name in ("app.py", "requirements.txt", "README.md", "hf_mlcls/__init__.py", "hf_mlcls/models/layers.py"):
        assert (out / name).is_file(), name
    assert list((out / "examples").glob("*.jpg")) and len(list((out / "examples").glob("digits-*.png"))) == 3
    assert (out / "examples" / "examples.json").is_file()
    # the Space's files come once, beside app.py: not again inside the shipped package, and no build script
    assert (out / "hf_mlcls" / "space" / "render.py").is_file() and not (out / "hf_mlcls" / "space" / "files").exists()
    assert not (out / "make_examples.py").exists()
    assert (out / "models.txt").read_text().split() == ["me/a", "me/b"]
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    assert not list(out.rglob("__pycache__"))
    result = deploy_space("me/demo", dry_run=tmp_path / "pypi", hf_mlcls_requirement="hf_mlcls==0.1.0")
    assert not (tmp_path / "pypi" / "hf_mlcls").exists()
    assert "hf_mlcls==0.1.0" in (tmp_path / "pypi" / "requirements.txt").read_text().splitlines()
    assert "app.py" in result["files"]


def test_wheel_carries_the_card_templates_and_the_space(tmp_path):
    """A non-editable install has the card templates and the Space (app, requirements, README, examples)."""
    import zipfile

    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    pytest.importorskip("wheel", reason="building the wheel needs wheel")
    repo = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        (source / name).write_bytes((repo / name).read_bytes())
    import shutil

    shutil.copytree(repo / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("hf_mlcls-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "hf_mlcls/hub/templates/query2label.md",
        "hf_mlcls/hub/templates/ml_decoder.md",
        "hf_mlcls/space/files/app.py",
        "hf_mlcls/space/files/requirements.txt",
        "hf_mlcls/space/files/README.md",
        "hf_mlcls/space/files/examples/examples.json",
        "hf_mlcls/space/render.py",
        "hf_mlcls/hub/space_deploy.py",
    }
    for example in (repo / "spaces" / "examples").iterdir():
        expected.add(f"hf_mlcls/space/files/examples/{example.name}")
    assert expected <= names, sorted(expected - names)


def test_cli_push_takes_the_eval_folder_with_its_figure_and_csv(saved, tmp_path):
    """`hf-mlcls push` without --eval-json uploads what evaluate.py wrote into <model>/eval, as docs/hub.md says."""
    import shutil

    source = tmp_path / "model"
    shutil.copytree(saved["q2l"], source)
    (source / "eval").mkdir()
    shutil.copy(eval_json(tmp_path / "metrics.json"), source / "eval" / "metrics.json")
    (source / "eval" / "per_class_ap.csv").write_text("label,AP,positives\ncat,50.0,3\n")
    Image.new("RGB", (8, 8)).save(source / "eval" / "evaluation.png")
    out = tmp_path / "upload"
    assert main(["push", str(source), "me/tiny", "--dry-run", str(out)]) == 0
    assert {p.name for p in (out / "eval").iterdir()} >= {"evaluation.png", "per_class_ap.csv"}
