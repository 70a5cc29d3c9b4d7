"""The image-classification pipeline of these models decodes every input (path, URL, base64, bytes, PIL image)
with the image processor's `to_rgb`; `pipeline(...)` builds it for our model types only (installed package:
the task's registry entry; remote code: config.json's `custom_pipelines`); everything else is stock."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    ImageClassificationPipeline,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    pipeline,
)

import hf_mlcls
from hf_mlcls.models.pipeline_multilabel import MultiLabelImageClassificationPipeline, open_image
from test_preprocessing import LABELS, TINY, write_odd_files


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_paths")
    torch.manual_seed(0)
    folder = root / "model"
    model = hf_mlcls.create_model("q2l-r101-448", **TINY).eval()
    model.save_pretrained(folder)
    pipe = pipeline("image-classification", model=str(folder), device="cpu")
    return dict(root=root, folder=folder, model=model, pipe=pipe, files=write_odd_files(root / "images"))


def _scores(model, processor, image) -> dict[str, float]:
    """The processor called directly on the opened file: the scores every input form must give."""
    with torch.no_grad():
        logits = model(processor(images=image, return_tensors="pt")["pixel_values"]).logits[0]
    return {model.config.id2label[i]: float(s) for i, s in enumerate(logits.sigmoid())}


def _by_label(result) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result}


def _reference(setup, name: str) -> dict[str, float]:
    with Image.open(setup["files"][name]) as image:
        return _scores(setup["model"], setup["pipe"].image_processor, image)


def _close(got: dict[str, float], expected: dict[str, float]) -> bool:
    return got.keys() == expected.keys() and all(abs(got[k] - expected[k]) <= 1e-6 for k in expected)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_every_input_form_is_decoded_by_the_processor(setup):
    pipe, file = setup["pipe"], setup["files"]["rgba.png"]
    expected = _reference(setup, "rgba.png")
    data = file.read_bytes()
    encoded = base64.b64encode(data).decode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(file.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{file.name}"
        forms = {"path": str(file), "pathlib": file, "bytes": data, "base64": encoded,
                 "data URI": f"data:image/png;base64,{encoded}", "URL": url}
        gaps = {what: _by_label(pipe(form, top_k=None, timeout=30)) for what, form in forms.items()}
    finally:
        server.shutdown()
        server.server_close()
    assert all(_close(got, expected) for got in gaps.values()), (expected, gaps)
    with Image.open(file) as image:  # an opened RGBA image: composited on white, not stripped of its alpha
        assert _close(_by_label(pipe(image, top_k=None)), expected)
        stripped = _scores(setup["model"], pipe.image_processor, image.convert("RGB"))
    assert not _close(stripped, expected)  # what the stock pipeline would have scored: the test can tell


def test_a_batch_of_paths(setup):
    pipe, files = setup["pipe"], setup["files"]
    results = pipe([str(f) for f in files.values()], top_k=None, batch_size=2)
    for name, result in zip(files, results):
        assert _close(_by_label(result), _reference(setup, name)), name


def test_stock_options_are_unchanged(setup):
    """top_k, function_to_apply, the sigmoid of multi-label models and the label names: as the stock class
    (the scores within float rounding: ours runs the fast CPU forward, tests/test_fast_cpu.py)."""
    pipe = setup["pipe"]
    stock = pipeline("image-classification", model=str(setup["folder"]), device="cpu",
                     pipeline_class=ImageClassificationPipeline)
    file = str(setup["files"]["gray.png"])  # a plain file: both pipelines see the same pixels
    for options in ({}, {"top_k": 1}, {"top_k": None}, {"top_k": 99}, {"function_to_apply": "none"},
                    {"function_to_apply": "softmax", "top_k": 2}):
        ours, theirs = pipe(file, **options), stock(file, **options)
        assert [item["label"] for item in ours] == [item["label"] for item in theirs], options
        assert _close(_by_label(ours), _by_label(theirs)), options
    assert len(pipe(file)) == len(LABELS)  # top_k 5 (the default) is capped at the number of labels
    scores = pipe(file, top_k=None)
    assert {item["label"] for item in scores} == set(LABELS.values())
    assert _close(_by_label(scores), _by_label(pipe(file, top_k=None, function_to_apply="sigmoid")))
    assert all(0 < item["score"] < 1 for item in scores) and sum(item["score"] for item in scores) != pytest.approx(1)


def test_ml_decoder_models_get_it_and_other_models_keep_the_stock_class(setup, tmp_path):
    mld = tmp_path / "mld"
    hf_mlcls.create_model("mldecoder-tresnetm-224", backbone="test_resnet", decoder_embedding=32, dim_feedforward=48,
                          id2label=LABELS, image_size=32).save_pretrained(mld)
    assert type(pipeline("image-classification", model=str(mld), device="cpu")) is MultiLabelImageClassificationPipeline
    vit = tmp_path / "vit"
    ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=16, num_labels=2)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    assert type(pipeline("image-classification", model=str(vit), device="cpu")) is ImageClassificationPipeline
    # a model object, not a folder: the same choice
    assert type(pipeline("image-classification", model=setup["model"], image_processor=setup["pipe"].image_processor,
                         device="cpu")) is MultiLabelImageClassificationPipeline


def test_the_folder_offers_it_as_remote_code(setup):
    saved = json.loads((setup["folder"] / "config.json").read_text())
    module, name = saved["custom_pipelines"]["image-classification"]["impl"].split(".")
    assert (setup["folder"] / f"{module}.py").is_file() and name == MultiLabelImageClassificationPipeline.__name__
    # the installed package registers the pipeline itself, so its config offers nothing that asks for remote code
    assert AutoConfig.from_pretrained(setup["folder"]).custom_pipelines == {}


def test_bad_inputs_name_the_culprit(setup, tmp_path):
    pipe = setup["pipe"]
    with pytest.raises(ValueError, match="no-such-file.png' is neither an existing file"):
        pipe(str(tmp_path / "no-such-file.png"))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=f"{text}: not an image PIL can read"):
        pipe(str(text))
    with pytest.raises(ValueError, match="the bytes given: not an image PIL can read"):
        open_image(b"not an image")
    with pytest.raises(TypeError, match="got dict"):
        open_image({"image": 1})


ORDER = textwrap.dedent(
    """
    import sys
    import hf_mlcls
    import hf_mlcls.models.pipeline_multilabel  # imports transformers.pipelines half-way through itself
    from transformers.pipelines import PIPELINE_REGISTRY
    impl = PIPELINE_REGISTRY.supported_tasks["image-classification"]["impl"]
    assert impl._multilabel_fallback.__name__ == "ImageClassificationPipeline", impl
    from hf_mlcls.models.configuration_common import MultiLabelConfig
    assert MultiLabelConfig.pipeline_registered
    """
)


def test_registered_whichever_module_comes_first():
    """`save_pretrained` imports the pipeline module before transformers.pipelines: registering still happens."""
    done = subprocess.run([sys.executable, "-c", ORDER], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


REMOTE = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_mlcls"] = None  # the package must not be importable here
    from transformers import pipeline
    folder, files = sys.argv[1], json.loads(sys.argv[2])
    pipe = pipeline(model=folder, device="cpu", trust_remote_code=True)  # the task comes from config.json
    named = pipeline("image-classification", model=folder, device="cpu", trust_remote_code=True)
    assert type(pipe).__name__ == type(named).__name__ == "MultiLabelImageClassificationPipeline", type(pipe)
    assert "transformers_modules" in type(pipe).__module__, type(pipe).__module__
    scores = {name: {d["label"]: d["score"] for d in pipe(path, top_k=None)} for name, path in files.items()}
    print("SCORES" + json.dumps(scores))
    """
)


def test_remote_code_pipeline_without_the_package_gives_the_same_scores(setup):
    files = {name: str(path) for name, path in setup["files"].items()}
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", REMOTE, str(setup["folder"]), json.dumps(files)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = json.loads(done.stdout.split("SCORES", 1)[1])
    gaps = {name: scores[name] for name in files if not _close(scores[name], _reference(setup, name))}
    assert not gaps, gaps


REMOTE_ZERO_SHOT = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_mlcls"] = None  # the package must not be importable here
    import torch
    from transformers import pipeline
    folder, image, glove = sys.argv[1:4]
    pipe = pipeline(model=folder, device="cpu", trust_remote_code=True)
    assert "transformers_modules" in type(pipe.model).__module__, type(pipe.model).__module__
    before = {d["label"]: d["score"] for d in pipe(image, top_k=None)}
    pipe.model.set_label_names(["sky", "dog"], text_encoder=glove)  # the shipped text-encoding modules at work
    after = {d["label"]: d["score"] for d in pipe(image, top_k=None)}
    print("SCORES" + json.dumps([before, after]))
    """
)


def test_a_zero_shot_model_runs_as_remote_code_with_its_text_encoders(setup, tmp_path, monkeypatch):
    """The zero-shot model's text-encoding files ship with it: loaded as remote code without the package, it
    scores and takes new label names through them, as the installed package does."""
    from test_zero_shot import tiny_zsl, write_glove

    monkeypatch.setenv("HF_MLCLS_CACHE", str(tmp_path / "cache"))
    glove = write_glove(tmp_path / "glove.txt")
    torch.manual_seed(0)
    model = tiny_zsl(4, names=("cat", "dog")).eval()
    model.set_label_names(["cat", "traffic light"], text_encoder=str(glove))
    model.save_pretrained(tmp_path / "zsl")
    for module in ("text_encoding", "label_encoder", "word_vectors", "transformers_text_encoder"):
        assert (tmp_path / "zsl" / f"{module}.py").is_file(), module
    image = str(setup["files"]["rgba.png"])
    pipe = pipeline("image-classification", model=str(tmp_path / "zsl"), device="cpu")
    expected = [_by_label(pipe(image, top_k=None))]
    pipe.model.set_label_names(["sky", "dog"], text_encoder=str(glove))
    expected.append(_by_label(pipe(image, top_k=None)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", REMOTE_ZERO_SHOT, str(tmp_path / "zsl"), image, str(glove)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.split("SCORES", 1)[1])
    assert all(_close(g, e) for g, e in zip(got, expected)), (got, expected)
