"""Every code block in README.md and docs/*.md runs as written, in a fresh folder, after the setup the page states.

How a block is treated:
- ```python and ```bash blocks run, each in its own process, in order, in one working folder per page (so a
  block may use files an earlier block of the same page wrote). The folder holds what the pages take as given:
  `examples/` and `spaces/` of this checkout, images named `cat.jpg` / `photo.jpg` / `images/`, and a tiny
  stand-in for the demo's trained model in `outputs/demo` (the README's first command makes the real one).
- A block whose text promises output (a line `# -> ...` after a statement, or `# prints: ...`) must print it.
- A block that cannot run here says why on the line before it, in an HTML comment
  `<!-- doc-test: not run: REASON -->`, where REASON begins with one of NOT_RUN_REASONS. Every
  `examples/train.py` command in such a block is still parsed and checked by train.py's own argument checks
  (so a wrong flag or config name fails here), and every config file it names must exist.
- ```text, ```json, ```yaml and plain ``` blocks are shown, never run; a plain block that looks like a command
  fails (it should say its language).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_RUN_REASONS = (
    "needs the Hub",  # downloads or uploads (no network in tests)
    "needs a GPU",
    "needs a dataset download",  # COCO, VOC, NUS-WIDE, Open Images ... on disk
    "needs several machines or GPUs",
    "installs packages",  # pip install lines: proven by .ci/run on a fresh venv
    "runs the whole recipe",  # minutes to hours; the shortened form runs in .ci/run or in a named test
    "starts a server",  # the Space: its browser and endpoint tests run it
    "runs a benchmark",  # bench/ scripts: minutes, on a quiet machine; docs/benchmarks.md holds their output
)
RUN_LANGS = {"python", "bash", "sh", "console", "shell"}
SHOWN_LANGS = {"text", "json", "yaml", "yml", "csv", "toml", "markdown", "md", ""}
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)\s*$")
MARKER = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
COMMAND_START = ("python ", "hf-mlcls", "accelerate ", "pip ", "bash ", "HF_MLCLS", "export ")


def blocks(page: Path) -> list[dict]:
    out, lines, i = [], page.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        lang, start = match.group(1).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.search(before)
        out.append({"page": page, "line": start + 1, "lang": lang, "code": "\n".join(lines[start + 1 : j]),
                    "marker": marker.group(1) if marker else None})
        i = j + 1
    return out


ALL = [b for page in PAGES for b in blocks(page)]


def block_id(block: dict) -> str:
    return f"{block['page'].relative_to(REPO)}:{block['line']}"


def test_every_block_is_run_or_says_why_not():
    problems = []
    for b in ALL:
        marker, lang = b["marker"], b["lang"]
        if lang in SHOWN_LANGS:
            first = b["code"].strip().splitlines()[0] if b["code"].strip() else ""
            if lang == "" and first.startswith(COMMAND_START):
                problems.append(f"{block_id(b)}: a command in a plain block; say its language (```bash)")
            continue
        if lang not in RUN_LANGS:
            problems.append(f"{block_id(b)}: unknown block language {lang!r}")
        if marker is not None:
            reason = marker.removeprefix("not run:").strip()
            if not marker.startswith("not run:") or not reason.startswith(NOT_RUN_REASONS):
                problems.append(f"{block_id(b)}: marker {marker!r} must be 'not run: <one of {NOT_RUN_REASONS}>'")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- the working folder


def _tiny_model(folder: Path, labels: list[str]) -> None:
    import hf_mlcls

    model = hf_mlcls.create_model("q2l-r101-448", id2label=dict(enumerate(labels)), backbone="test_resnet",
                                  hidden_dim=96, dim_feedforward=64, image_size=64)
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> Path:
    """What every page takes as given, made once: images and the demo model's stand-in."""
    from PIL import Image

    from hf_mlcls.data import DEMO_CLASSES

    root = tmp_path_factory.mktemp("given")
    rgb = Image.new("RGB", (96, 72), (200, 120, 40))
    for name in ("cat.jpg", "photo.jpg"):
        rgb.save(root / name)
    (root / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (80, 80), (40 * i, 90, 160)).save(root / "images" / f"{i}.jpg")
    _tiny_model(root / "outputs" / "demo", list(DEMO_CLASSES))
    return root


def workspace(stand_ins: Path, tmp_path: Path) -> Path:
    import shutil

    work = tmp_path / "work"
    shutil.copytree(stand_ins, work, symlinks=True)
    for name in ("examples", "spaces"):
        (work / name).symlink_to(REPO / name)
    return work


def environment(work: Path) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MLCLS_QUIET="1",
               MPLBACKEND="Agg", HF_MLCLS_CACHE=str(work / ".cache"), PYTHONUNBUFFERED="1")
    return env


def expected_outputs(code: str) -> list[str]:
    """Text a block promises to print: `# prints: X` lines."""
    return [m.group(1).strip() for m in re.finditer(r"#\s*prints:\s*(.+)$", code, re.MULTILINE)]


def run_block(block: dict, work: Path) -> subprocess.CompletedProcess:
    if block["lang"] == "python":
        cmd = [sys.executable, "-c", block["code"]]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", block["code"]]
    return subprocess.run(cmd, cwd=work, env=environment(work), capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------------------------- blocks that run

RUN_PAGES = sorted({b["page"] for b in ALL if b["lang"] in RUN_LANGS and b["marker"] is None})


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_page_blocks_run_as_written(page, stand_ins, tmp_path):
    work = workspace(stand_ins, tmp_path)
    for block in blocks(page):
        if block["lang"] not in RUN_LANGS or block["marker"] is not None:
            continue
        out = run_block(block, work)
        assert out.returncode == 0, f"{block_id(block)} failed:\n{block['code']}\n--- stderr:\n{out.stderr[-4000:]}"
        for text in expected_outputs(block["code"]):
            assert text in out.stdout, f"{block_id(block)} should print {text!r}; printed:\n{out.stdout[-2000:]}"


# ----------------------------------------------------------------------------- blocks that do not run


def train_commands(code: str) -> list[list[str]]:
    """The argument lists given to examples/train.py in a shell block (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if "examples/train.py" not in line or line.startswith("#"):
            continue
        words = shlex.split(line)
        at = next(i for i, w in enumerate(words) if w.endswith("examples/train.py"))
        commands.append(words[at + 1 :])
    return commands


def load_train_script():
    spec = importlib.util.spec_from_file_location("train_script_under_test", REPO / "examples" / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


NOT_RUN_TRAIN = [(b, argv) for b in ALL if b["marker"] for argv in train_commands(b["code"])]


@pytest.mark.parametrize("block, argv", NOT_RUN_TRAIN, ids=[f"{block_id(b)}:{' '.join(a[:1])}" for b, a in NOT_RUN_TRAIN])
def test_train_commands_that_do_not_run_here_still_parse(block, argv, tmp_path, monkeypatch):
    """A recipe command we cannot run (its data is not here) must name files that exist and flags train.py takes."""
    monkeypatch.chdir(REPO)
    argv = [a for a in argv if a != "CONFIG"]
    for arg in argv:
        if arg.endswith((".yaml", ".yml", ".json")) and "/" in arg:
            assert (REPO / arg).is_file(), f"{block_id(block)}: {arg} does not exist"
    train = load_train_script()
    # --use_cpu: recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU
    parsed = train.parse_all_args(argv + ["--output_dir", str(tmp_path / "out"), "--use_cpu", "True"])
    assert parsed[0].model, f"{block_id(block)}: no model"
