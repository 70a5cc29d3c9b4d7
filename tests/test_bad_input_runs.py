"""Bad input to the things that run: `hf-mlcls predict / push / convert`, examples/train.py, model folders.

Over 500 lines for one concern: what each runnable entry point refuses before it starts work.

Each entry point checks its arguments and paths before loading data or building a model, answers bad
input with one line (exit status 2), never hangs on a named pipe, never leaves a temporary file, never
replaces another run's weights, and loads a model folder only when every learned weight is there with the
config's shape. The rows of docs/errors.md name these tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from data_fixtures import write_image
from safetensors.torch import load_file, save_file
from test_models import tiny_q2l

from hf_mlcls.cli import main as cli_main
from hf_mlcls.errors import ModelLoadError, UserError

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"^(Loading weights|predicting|Writing model shards):? .*\|")  # tqdm bars are not messages


def one_line(err: str, prog: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err[-2000:]
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    tiny_q2l().save_pretrained(root / "model")
    write_image(str(root / "images" / "a.jpg"))
    return root


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if the model is loaded: the check must come first."""
    import hf_mlcls.inference

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad argument was refused")

    monkeypatch.setattr(hf_mlcls.inference, "load_model", refuse)


class Deadline:
    """Raise in the test (instead of hanging the suite) when a call takes longer than ``seconds``."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self):
        def expired(*_):
            raise TimeoutError(f"still running after {self.seconds} s: it hangs")

        self.previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


# ============================================================================== predict: inputs


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_among_the_images_is_skipped_and_never_opened(model_dir, tmp_path, capsys, caplog):
    images = tmp_path / "images"
    shutil.copytree(model_dir / "images", images)
    os.mkfifo(images / "pipe.jpg")  # opening it for reading would block until a writer comes: forever
    with Deadline(120):
        rc = cli_main(["predict", str(model_dir / "model"), str(images), "--format", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-2000:]
    assert [os.path.basename(r["image"]) for r in json.loads(out)] == ["a.jpg"]
    assert "pipe.jpg: it is a named pipe, not an image file" in caplog.text
    with Deadline(60):  # named on the command line: refused by name, before the model is loaded
        rc = cli_main(["predict", str(model_dir / "model"), str(images / "pipe.jpg")])
    assert rc == 2
    assert "pipe.jpg' is a named pipe, not an image file" in one_line(capsys.readouterr().err, "hf-mlcls predict")


# ============================================================================== predict: --output


@pytest.mark.parametrize("kind", ["existing-folder", "under-a-file", "an-input-image"])
def test_predict_output_that_cannot_be_written_is_refused_before_the_model_loads(kind, model_dir, tmp_path, capsys,
                                                                                   no_model_loading):
    image = tmp_path / "a.jpg"
    shutil.copyfile(model_dir / "images" / "a.jpg", image)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("mine")
    output, message = {
        "existing-folder": (tmp_path / "folder", r"--output '.*folder' is a folder; name a file to write"),
        "under-a-file": (tmp_path / "afile" / "out.json", r"--output '.*out.json' lies under '.*afile', which is a file"),
        "an-input-image": (image, r"--output '.*a.jpg' is one of the input images; it would be overwritten"),
    }[kind]
    before = image.read_bytes()
    rc = cli_main(["predict", str(model_dir / "model"), str(image), "-o", str(output)])
    assert rc == 2 and re.search(message, one_line(capsys.readouterr().err, "hf-mlcls predict"))
    assert image.read_bytes() == before and (tmp_path / "afile").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "afile", "folder"]  # no .tmp left behind
    assert not list((tmp_path / "folder").iterdir())


def test_predict_output_is_written_atomically_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from hf_mlcls import inference

    out = tmp_path / "p.json"
    out.write_text("the previous predictions")
    results = [{"image": "a.png", "labels": [{"label": "cat", "score": 0.9}]}]

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(inference.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        inference.write_predictions(results, str(out))
    monkeypatch.undo()
    assert out.read_text() == "the previous predictions"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # and no temporary file
    inference.write_predictions(results, str(out))
    assert json.loads(out.read_text()) == results and [p.name for p in tmp_path.iterdir()] == ["p.json"]


# ============================================================================== model folders


def _strip(folder: Path, *prefixes: str) -> None:
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith(prefixes)}, folder / "model.safetensors",
              metadata={"format": "pt"})


def _relabel(folder: Path, n: int) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"label{i}" for i in range(n)}
    config["label2id"] = {f"label{i}": i for i in range(n)}
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no-head", r"its weights lack 3 learned tensor\(s\) the config asks for: classifier.W, classifier.b, "
                    r"model.query_embed.weight"),
        ("labels", r"its weights do not match its config.json: classifier.W is \(1, 5, 96\) in the weights but "
                   r"\(1, 7, 96\) for config.json"),
        ("foreign", r"its config.json describes a 'bert' model, not a Query2Label or ML-Decoder one"),
    ],
    ids=["no-head", "labels", "foreign"],
)
def test_a_model_folder_that_does_not_fit_its_config_is_one_line_naming_folder_and_tensor(
        damage, message, model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir / "model", folder)
    if damage == "no-head":
        _strip(folder, "classifier.", "model.query_embed.")
    elif damage == "labels":
        _relabel(folder, 7)
    else:
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match=rf"^cannot load model '{re.escape(str(folder))}': {message}"):
        from hf_mlcls.inference import load_model

        load_model(str(folder), device="cpu")
    rc = cli_main(["predict", str(folder), str(model_dir / "images" / "a.jpg")])
    assert rc == 2 and re.search(message, one_line(capsys.readouterr().err, "hf-mlcls predict"))


def test_our_classes_refuse_missing_weights_and_still_start_a_new_head_when_asked(model_dir, tmp_path):
    from transformers import AutoModelForImageClassification

    from hf_mlcls import Query2LabelForImageClassification
    from hf_mlcls.models import CheckpointWeightsError

    folder = tmp_path / "model"
    shutil.copytree(model_dir / "model", folder)
    _strip(folder, "model.backbone.model.conv1.")
    for loader in (AutoModelForImageClassification, Query2LabelForImageClassification):
        with pytest.raises(CheckpointWeightsError, match=rf"model '{re.escape(str(folder))}': its weights lack .*conv1"):
            loader.from_pretrained(folder)
    fine_tune = tmp_path / "relabelled"
    shutil.copytree(model_dir / "model", fine_tune)
    _relabel(fine_tune, 7)
    model, info = AutoModelForImageClassification.from_pretrained(fine_tune, ignore_mismatched_sizes=True,
                                                                 output_loading_info=True)
    assert model.config.num_labels == 7 and model.classifier.W.shape[1] == 7
    assert not info["missing_keys"] and len(info["mismatched_keys"]) == 3


# ============================================================================== push


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated", r"model folder model does not load back, so it is not uploaded: .*"),
        ("labels", r"model folder model does not load back, so it is not uploaded: .*classifier.W is \(1, 5, 96\)"),
        ("no-head", r"model folder model does not load back, so it is not uploaded: .*lack 3 learned tensor"),
    ],
    ids=["truncated", "labels", "no-head"],
)
def test_push_dry_run_refuses_a_folder_that_does_not_load_back(damage, message, model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir / "model", folder)
    if damage == "truncated":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "labels":
        _relabel(folder, 7)
    else:
        _strip(folder, "classifier.", "model.query_embed.")
    rc = cli_main(["push", str(folder), "me/model", "--dry-run", str(tmp_path / "staged")])
    assert rc == 2 and re.search(message, one_line(capsys.readouterr().err, "hf-mlcls push"))
    assert not (tmp_path / "staged").exists()  # nothing staged
    rc = cli_main(["push", str(model_dir / "model"), "me/model", "--dry-run", str(tmp_path / "good")])
    assert rc == 0 and (tmp_path / "good" / "model.safetensors").is_file()  # an intact folder still goes


def test_push_compares_the_model_object_with_its_saved_copy(tmp_path, monkeypatch):
    """A model object is staged by save_pretrained: a copy that gives other outputs is refused."""
    from hf_mlcls.hub import prepare_upload_folder
    from hf_mlcls.models.modeling_query2label import Query2LabelForImageClassification

    model = tiny_q2l().eval()
    real_save = Query2LabelForImageClassification.save_pretrained

    def save_perturbed(self, folder, *args, **kwargs):
        out = real_save(self, folder, *args, **kwargs)
        weights = load_file(Path(folder) / "model.safetensors")
        weights["classifier.b"] = weights["classifier.b"] + 1.0
        save_file(weights, Path(folder) / "model.safetensors", metadata={"format": "pt"})
        return out

    monkeypatch.setattr(Query2LabelForImageClassification, "save_pretrained", save_perturbed)
    with pytest.raises(UserError, match=r"the saved copy gives other outputs than the model \(max abs difference 1"):
        prepare_upload_folder(model, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()
    monkeypatch.undo()
    model.train()
    prepare_upload_folder(model, tmp_path / "good")
    assert model.training  # the check leaves the model's mode as it was


# ============================================================================== examples/train.py


@pytest.fixture(scope="module")
def train_script():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train
    finally:
        sys.path.pop(0)
    return train


@pytest.fixture
def no_data_loading(train_script, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the bad argument was refused")

    monkeypatch.setattr(train_script, "load_multilabel_dataset", refuse)


def _model_folder(path: Path) -> Path:
    tiny_q2l().save_pretrained(path)
    return path


TRAIN_PATH_CASES = dict([
    ("output-is-a-file", r"--output_dir '.*afile' is a file, not a folder"),
    ("output-under-a-file", r"--output_dir '.*afile/run' lies under '.*afile', which is a file, not a folder"),
    ("output-holds-a-model", r"--output_dir '.*model' already holds a model or a training run \(config.json, "
                             r"model.safetensors\); its files would be replaced.* --overwrite_output_dir true"),
    ("resume-not-a-checkpoint", r"--resume_from_checkpoint '.*model' is not a checkpoint \(no trainer_state.json\)"),
    ("resume-missing", r"--resume_from_checkpoint '.*nowhere' does not exist"),
    ("resume-none-there", r"--resume_from_checkpoint true: there is no complete checkpoint-N folder in '.*empty'"),
    ("model-not-ours", r"--model '.*bert' is a 'bert' model \(config.json model_type\)"),
    ("model-missing", r"--model '.*nowhere' is neither a preset nor a folder here"),
    ("config-file-missing", r"argument file '.*nope.yaml' does not exist"),
    ("config-file-not-yaml", r"bad.yaml: not valid YAML/JSON"),
    ("config-file-a-list", r"list.yaml: must hold a mapping of argument names to values, not a list"),
])


@pytest.mark.parametrize("case", list(TRAIN_PATH_CASES))
def test_train_script_refuses_bad_paths_before_any_work(case, train_script, tmp_path, capsys, no_data_loading):
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    model = _model_folder(tmp_path / "model")
    before = (model / "model.safetensors").read_bytes()
    base = ["--dataset", "demo", "--do_train", "true", "--use_cpu", "true"]
    argv = {
        "output-is-a-file": [*base, "--output_dir", str(tmp_path / "afile")],
        "output-under-a-file": [*base, "--output_dir", str(tmp_path / "afile" / "run")],
        "output-holds-a-model": [*base, "--output_dir", str(model)],
        "resume-not-a-checkpoint": [*base, "--output_dir", str(tmp_path / "o"), "--resume_from_checkpoint", str(model)],
        "resume-missing": [*base, "--output_dir", str(tmp_path / "o"), "--resume_from_checkpoint", str(tmp_path / "nowhere")],
        "resume-none-there": [*base, "--output_dir", str(tmp_path / "empty"), "--resume_from_checkpoint", "true"],
        "model-not-ours": [*base, "--output_dir", str(tmp_path / "o"), "--model", str(tmp_path / "bert")],
        "model-missing": [*base, "--output_dir", str(tmp_path / "o"), "--model", str(tmp_path / "nowhere")],
        "config-file-missing": [str(tmp_path / "nope.yaml")],
        "config-file-not-yaml": [str(tmp_path / "bad.yaml")],
        "config-file-a-list": [str(tmp_path / "list.yaml")],
    }[case]
    assert train_script.cli(argv) == 2
    assert re.search(TRAIN_PATH_CASES[case], one_line(capsys.readouterr().err, "train.py"))
    assert (model / "model.safetensors").read_bytes() == before and (tmp_path / "afile").read_text() == "mine"
    assert not (tmp_path / "o").exists() and not list((tmp_path / "empty").iterdir())


def test_train_script_output_checks_let_overwrite_and_resume_through(train_script, tmp_path):
    from hf_mlcls.training import check_output_dir

    model = _model_folder(tmp_path / "model")
    check_output_dir(str(model), overwrite=True)  # told to replace it
    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (run / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a model or a training run"):
        check_output_dir(str(run))
    check_output_dir(str(run), resume=True)  # continuing that same run
    check_output_dir(str(run), resume=str(run / "checkpoint-4"))
    (run / "checkpoint-4" / ".incomplete").write_text("")
    with pytest.raises(ValueError, match="was not completely written"):
        check_output_dir(str(run), resume=str(run / "checkpoint-4"))
    check_output_dir(str(tmp_path / "new" / "folder"))  # a new folder: fine, and not created by the check
    assert not (tmp_path / "new").exists()


def _exited_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_output_lock_stops_a_second_run_and_a_dead_runs_lock_is_taken_over(train_script, tmp_path, capsys,
                                                                                 no_data_loading):
    from hf_mlcls.training import LOCK_NAME, OutputDirLock

    out = tmp_path / "run"
    with OutputDirLock(str(out)):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        other = OutputDirLock(str(out))
        other.path = str(out / LOCK_NAME)
        (out / LOCK_NAME).write_text(f"{os.getppid()}\n")  # as if a live process (our parent) held it
        with pytest.raises(ValueError, match=rf"is being written by another training run \(pid {os.getppid()}"):
            other.acquire()
        # the same through the script: one line, exit status 2, before any data is read
        argv = ["--dataset", "demo", "--do_train", "true", "--use_cpu", "true", "--output_dir", str(out)]
        assert train_script.cli(argv) == 2
        assert f"(pid {os.getppid()}" in one_line(capsys.readouterr().err, "train.py")
        (out / LOCK_NAME).write_text(f"{_exited_pid()}\n")  # a killed run's lock: stale
        with OutputDirLock(str(out)):
            assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not out.exists()  # created for the run, nothing else written: removed with the lock


def test_ctrl_c_during_training_is_one_line_naming_the_last_checkpoint(train_script, tmp_path, capsys, monkeypatch):
    from transformers import TrainerCallback

    from hf_mlcls.training import LOCK_NAME, MultiLabelTrainer

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    init = MultiLabelTrainer.__init__

    def with_interrupt(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(Interrupt())

    monkeypatch.setattr(MultiLabelTrainer, "__init__", with_interrupt)
    monkeypatch.setenv("HF_MLCLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_MLCLS_TRACEBACK", raising=False)
    out = tmp_path / "run"
    from test_training import TINY

    rc = train_script.cli([
        str(ROOT / "examples" / "configs" / "demo.yaml"), "--model_overrides", json.dumps(TINY),
        "--dataset_options", json.dumps({"num_train": 16, "num_validation": 8, "image_size": 32}),
        "--num_train_epochs", "3", "--per_device_train_batch_size", "8", "--output_dir", str(out), "--use_cpu", "true",
        "--eval_strategy", "no", "--load_best_model_at_end", "false", "--metric_for_best_model", "loss",
        "--report_to", "none",
])
    err = capsys.readouterr().err
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("train.py")]
    assert lines == [f"train.py: interrupted: training stopped at step 3; the last complete checkpoint is "
                     f"{out / 'checkpoint-2'}: resume with resume_from_checkpoint=True "
                     "(examples/train.py: --resume_from_checkpoint true)."], err[-3000:]
    assert (out / "checkpoint-2" / "model.safetensors").is_file() and not (out / LOCK_NAME).exists()


# ============================================================================== fuzzing the argument lists

hypothesis = pytest.importorskip("hypothesis", reason="pip install hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: derandomized: the same examples on every run (no seed to print); the whole fuzz pass takes well under a minute
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# paths a user may give, by role; "{x}" are filled in from the fuzz folder
PATH_NAMES = ["{missing}", "{folder}", "{text}", "{image}", "{model}", "{under_file}", "{unicode}", "{fifo}", "{piped}",
              "/dev/null", "", " ", "-", "..", "ünïcødé/☃.png", "a\tb", "--", "~nobody/x"]
WORDS = st.one_of(
    st.sampled_from(PATH_NAMES),
    st.text(max_size=8),
    st.integers(-3, 3).map(str),
    st.sampled_from(["nan", "inf", "-0", "1e400", "0.5", "true", "false", "{}", "[1]", '{"a": 1}', "null"]),
)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "folder").mkdir()
    (root / "text.txt").write_text("not an image")
    (root / "ünïcødé ☃").mkdir()
    shutil.copyfile(model_dir / "images" / "a.jpg", root / "ünïcødé ☃" / "ïmage.jpg")
    shutil.copytree(root / "ünïcødé ☃", root / "piped")  # an image and a named pipe
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.jpg")
        os.mkfifo(root / "piped" / "pipe.png")
    paths = {
        "missing": str(root / "missing"), "folder": str(root / "folder"), "text": str(root / "text.txt"),
        "image": str(model_dir / "images" / "a.jpg"), "model": str(model_dir / "model"),
        "under_file": str(root / "text.txt" / "x.json"), "unicode": str(root / "ünïcødé ☃"),
        "fifo": str(root / ("pipe.jpg" if hasattr(os, "mkfifo") else "missing")), "piped": str(root / "piped"),
    }
    return root, paths


def _fill(words: list[str], paths: dict) -> list[str]:
    return [w.format(**paths) if w in PATH_NAMES or w.startswith("{folder}/") else w for w in words]


def _answer(call, capsys, prog: str) -> int:
    """Run one argument list: a usage error (exit 2 from argparse), a one-line error (exit 2) or a result (0/1);
    any other exception fails the test."""
    with Deadline(60):
        try:
            rc = call()
        except SystemExit as caught:  # argparse: usage and the error, status 2
            err = capsys.readouterr().err
            assert caught.code == 2 and "error:" in err and "Traceback" not in err, err[-2000:]
            return 2
    err = capsys.readouterr().err
    if rc == 2:
        one_line(err, prog)
    else:
        assert rc in (0, 1) and "Traceback" not in err, err[-2000:]
    return rc


def _options(names: list[str]):
    return st.lists(st.tuples(st.sampled_from(names), WORDS), max_size=3).map(lambda pairs: [w for p in pairs for w in p])


@FUZZ
@given(model=st.sampled_from(["{model}", "{model}", "{model}", "{missing}", "{text}", "{folder}", "owner/name"]),
       inputs=st.lists(st.one_of(st.sampled_from(["{image}", "{unicode}", "{piped}"]), st.sampled_from(PATH_NAMES)),
                       min_size=1, max_size=2),
       output=st.one_of(st.none(), st.sampled_from(PATH_NAMES), st.sampled_from(["{folder}/p.json", "p.csv"])),
       options=_options(["--threshold", "--top-k", "--format", "--batch-size", "--device"]))
def test_fuzz_predict_arguments(model, inputs, output, options, fuzz_root, capsys, monkeypatch):
    root, paths = fuzz_root
    monkeypatch.chdir(root / "folder")  # relative output paths land in the fuzz folder
    argv = ["predict", *_fill([model, *inputs, *options], paths), "--device", "cpu"]
    if output is not None:
        argv += ["--output", _fill([output], paths)[0]]
    _answer(lambda: cli_main(argv), capsys, "hf-mlcls predict")
    left = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert not left, f"temporary files left behind: {left}"


@FUZZ
@given(folder=st.sampled_from(["{model}", "{missing}", "{text}", "{folder}", "{unicode}"]),
       repo=st.one_of(st.sampled_from(["me/model", "me", "a/b/c", ""]), st.text(max_size=8)),
       options=_options(["--eval-json", "--eval-artifact", "--license", "--dataset", "--base-model", "--provenance"]))
def test_fuzz_push_arguments(folder, repo, options, fuzz_root, capsys, monkeypatch, tmp_path_factory):
    root, paths = fuzz_root
    monkeypatch.chdir(root / "folder")
    staged = tmp_path_factory.mktemp("staged") / "out"  # always a dry run: nothing is uploaded
    argv = ["push", *_fill([folder], paths), repo, "--dry-run", str(staged), *_fill(options, paths)]
    _answer(lambda: cli_main(argv), capsys, "hf-mlcls push")


@FUZZ
@given(checkpoint=st.sampled_from(["{missing}", "{text}", "{folder}", "{image}", "{fifo}", "/dev/null"]),
       preset=st.one_of(st.sampled_from(["q2l-r101-448", "mldecoder-tresnetm-224"]), st.text(max_size=8)),
       options=_options(["--labels", "--config", "--set", "--repo-id", "--label-embeddings"]))
def test_fuzz_convert_arguments(checkpoint, preset, options, fuzz_root, capsys, monkeypatch, tmp_path_factory):
    root, paths = fuzz_root
    monkeypatch.chdir(root / "folder")
    out = tmp_path_factory.mktemp("converted") / "out"
    argv = ["convert", *_fill([checkpoint], paths), str(out), "--preset", preset, *_fill(options, paths)]
    _answer(lambda: cli_main(argv), capsys, "hf-mlcls convert")


@FUZZ
@given(first=st.sampled_from(["", "{text}", "{missing}.yaml", str(ROOT / "examples" / "configs" / "demo.yaml")]),
       options=_options(["--dataset", "--data_dir", "--max_train_samples", "--output_dir", "--model", "--model_overrides",
                         "--dataset_options", "--pct_start", "--ema_decay", "--resume_from_checkpoint", "--learning_rate",
                         "--do_train", "--unseen_labels", "--schedule", "--backbone_weights_file", "--overwrite_output_dir"]))
def test_fuzz_train_script_arguments(first, options, fuzz_root, train_script, capsys, monkeypatch, tmp_path_factory):
    """examples/train.py's parsing and every check made before the data: never a traceback."""
    root, paths = fuzz_root
    monkeypatch.chdir(tmp_path_factory.mktemp("train"))
    argv = [w for w in _fill([first], paths) if w] + ["--use_cpu", "true", *_fill(options, paths)]
    from hf_mlcls.cli import run_user_command

    _answer(lambda: run_user_command("train.py", lambda: train_script.parse_and_check(argv) and 0), capsys, "train.py")


def test_single_label_argument_errors_are_one_line_exit_2_too(train_script, capsys, tmp_path, no_data_loading):
    assert train_script.cli(["--dataset", "demo", "--do_train", "true", "--use_cpu", "true", "--output_dir",
                             str(tmp_path / "o"), "--mixup_prob", "2"]) == 2
    assert "--mixup_prob must be in [0, 1]" in one_line(capsys.readouterr().err, "train.py")


@pytest.mark.parametrize("command", ["push", "deploy-space", "convert"])
@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_output_folders_of_push_deploy_space_and_convert_that_cannot_be_written(command, where, model_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "afile" if where == "a-file" else tmp_path / "afile" / "sub"
    flag = "OUTPUT_DIR" if command == "convert" else "--dry-run"
    argv = {
        "push": ["push", str(model_dir / "model"), "me/model", "--dry-run", str(out)],
        "deploy-space": ["deploy-space", "me/space", "--dry-run", str(out)],
        "convert": ["convert", str(tmp_path / "afile"), str(out), "--preset", "q2l-r101-448"],
    }[command]
    message = "is a file, not a folder" if where == "a-file" else "lies under '.*afile', which is a file, not a folder"
    assert cli_main(argv) == 2  # (deploy-space under a file was a FileExistsError traceback)
    assert re.search(rf"{flag} '.*' {message}", one_line(capsys.readouterr().err, f"hf-mlcls {command}"))
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    (["--output_dir", "{t}/afile"], r"--output_dir '.*afile' is a file, not a folder"),
    (["--output_dir", "{t}/afile/eval"], r"--output_dir '.*eval' lies under '.*afile', which is a file"),
    (["--batch_size", "0"], r"--batch_size must be >= 1, got 0"),
    (["--threshold", "nan"], r"--threshold must be between 0 and 1, got nan"),
    (["--dataset", "nosuch"], r"unknown dataset 'nosuch'; available: coco2014, "),
], ids=["output-a-file", "output-under-a-file", "batch-size", "threshold", "unknown-dataset"])
def test_evaluate_script_checks_its_arguments_before_loading_the_model(args, message, tmp_path, capsys, monkeypatch):
    import importlib.util

    from hf_mlcls.cli import run_user_command

    # by path: "evaluate" is also the name of the Hugging Face package
    spec = importlib.util.spec_from_file_location("evaluate_script_under_test", ROOT / "examples" / "evaluate.py")
    evaluate_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate_script)

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad argument was refused")

    monkeypatch.setattr(evaluate_script, "load_model", refuse)
    (tmp_path / "afile").write_text("mine")
    argv = ["--model", "any/model", *[a.format(t=tmp_path) for a in args]]
    assert run_user_command("evaluate.py", lambda: evaluate_script.main(argv) and 0) == 2
    assert re.search(message, one_line(capsys.readouterr().err, "evaluate.py"))


@pytest.mark.parametrize("args, message", [
    (["--output_dir", "{t}/afile"], r"--output_dir '.*afile' is a file, not a folder"),
    (["--output_dir", "{t}/afile/out"], r"--output_dir '.*out' lies under '.*afile', which is a file"),
    (["--output_dir", "{t}/out", "--num_train", "3", "--batch_size", "8"], r"--num_train 3 is smaller than --batch_size 8"),
], ids=["output-a-file", "output-under-a-file", "fewer-images-than-a-batch"])
def test_single_label_demo_checks_its_arguments_before_building_data(args, message, tmp_path, capsys, monkeypatch):
    from hf_mlcls.cli import run_user_command

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import single_label_demo

    def refuse(*a, **k):
        raise AssertionError("the data was built before the bad argument was refused")

    monkeypatch.setattr(single_label_demo, "load_data", refuse)
    (tmp_path / "afile").write_text("mine")
    argv = [a.format(t=tmp_path) for a in args]
    assert run_user_command("single_label_demo.py", lambda: single_label_demo.main(argv) and 0) == 2
    assert re.search(message, one_line(capsys.readouterr().err, "single_label_demo.py"))
    assert (tmp_path / "afile").read_text() == "mine"


def test_ctrl_c_in_any_command_is_one_line_exit_130(model_dir, capsys, monkeypatch):
    import hf_mlcls.inference

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hf_mlcls.inference, "predict_files", interrupted)
    monkeypatch.delenv("HF_MLCLS_TRACEBACK", raising=False)
    assert cli_main(["predict", str(model_dir / "model"), str(model_dir / "images")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "hf-mlcls predict: interrupted"
    monkeypatch.setenv("HF_MLCLS_TRACEBACK", "1")  # asked for: the traceback
    with pytest.raises(KeyboardInterrupt):
        cli_main(["predict", str(model_dir / "model"), str(model_dir / "images")])
