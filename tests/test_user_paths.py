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
