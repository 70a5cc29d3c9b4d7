"""What a user meets at the command line: outputs that say everything, one-line errors, progress."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
