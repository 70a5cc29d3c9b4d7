"""Nothing a user hands us runs code, and the Space keeps to its limits.

- A static check over the source tree: no ``pickle.load``, no ``torch.load`` without
  ``weights_only=True``, no ``np.load(allow_pickle=True)``, no joblib / dill / cloudpickle /
  shelve / marshal, no ``weights_only=False``, no ``yaml.load`` without a safe loader, no
  ``eval`` / ``exec`` of a computed string, no ``torch.hub.load``; the checker itself is shown to
  catch each pattern.
- A malicious pickle (an object whose ``__reduce__`` creates a marker file; the payload is shown to
  be live with plain ``pickle.load``) fed to every loader that reads a file: ``from_pretrained`` on a
  folder whose weights are a ``pytorch_model.bin``, ``hf_mlcls.inference.load_model`` (the CLI), the
  Space's model loader, the ``backbone_weights_file`` option (timm and transformers backbones),
  ``hf_mlcls.training.load_ema``, resuming a Trainer from a checkpoint whose optimizer, scheduler or
  RNG file was replaced, the converter's checkpoint and label-embedding readers, the zero-shot
  word-vector reader and label-embedding cache, and the ``hub`` dataset loader (a folder of pickles, a
  ``.pth`` in a WebDataset shard). Each refuses; the marker never appears.
- With hf_mlcls imported, our saved models load with ``trust_remote_code=False`` in a fresh process
  (Auto classes, image processor, a forward pass) and no remote code is copied anywhere.
- The Space: uploads limited in size and type, its files only in its temporary folder, no file-system
  paths in its messages (in process here; tests/test_space.py checks the same against a live server).
"""

from __future__ import annotations

import ast
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import hf_mlcls
from hf_mlcls import create_model

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ["src", "examples", "spaces", "bench"]

# ============================================================================== static check

PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal", "jsonpickle"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}
SAFE_PICKLE_NAMES = {"UnpicklingError", "PickleError", "PicklingError", "HIGHEST_PROTOCOL", "DEFAULT_PROTOCOL"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def unsafe_loads(source: str, filename: str = "<string>") -> list[str]:
    """Every place in ``source`` that could unpickle untrusted data, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}  # local name -> module it stands for (import x as y)
    found = []

    def report(node, what):
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                aliases[a.asname or top] = a.name
                if top in PICKLE_MODULES - {"pickle", "_pickle"}:
                    report(node, f"import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            for a in node.names:
                if top in PICKLE_MODULES and a.name not in SAFE_PICKLE_NAMES:
                    report(node, f"from {node.module} import {a.name}")
                if node.module in ("torch", "torch.serialization") and a.name == "load":
                    report(node, f"from {node.module} import load (call sites cannot be checked)")
                if node.module in ("numpy",) and a.name == "load":
                    aliases[a.asname or a.name] = "numpy.load"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        module, _, attr = full.rpartition(".")
        if module.split(".")[0] in {"pickle", "_pickle", "cPickle"} and attr in ("load", "loads", "Unpickler"):
            report(node, f"{name}(...)")
        elif full in ("torch.load", "torch.serialization.load") and not _keyword_is(node, "weights_only", True):
            report(node, f"{name}(...) without weights_only=True")
        elif full in ("numpy.load", "np.load") and not _keyword_is(node, "allow_pickle", False) and any(
            k.arg == "allow_pickle" for k in node.keywords
        ):
            report(node, f"{name}(..., allow_pickle=...)")
        elif attr == "read_pickle":
            report(node, f"{name}(...)")
        elif module.split(".")[0] == "marshal" and attr in ("load", "loads"):
            report(node, f"{name}(...)")
        elif module == "yaml" and attr in ("unsafe_load", "unsafe_load_all", "full_load", "full_load_all"):
            report(node, f"{name}(...)")
        elif module == "yaml" and attr in ("load", "load_all"):
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).rpartition(".")[2] not in SAFE_YAML_LOADERS:
                report(node, f"{name}(...) without Loader=SafeLoader")
        elif full in ("torch.hub.load", "torch.hub.load_state_dict_from_url") and not _keyword_is(node, "weights_only", True):
            report(node, f"{name}(...)")
        elif isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec") and not (
            node.args and isinstance(node.args[0], ast.Constant)
        ):
            report(node, f"{name}(...) of a computed string")
        if _keyword_is(node, "weights_only", False):
            report(node, f"{name}(..., weights_only=False)")
    return found


def test_the_checker_catches_every_pattern():
    bad = textwrap.dedent(
        """
        import pickle, joblib
        import numpy as np
        import torch as T
        from dill import loads
        from torch import load
        import pickle as p
        pickle.load(f); pickle.loads(b); p.Unpickler(f).load()
        T.load("x.pt"); T.load("x.pt", weights_only=False); T.serialization.load("x")
        np.load("a.npy", allow_pickle=True)
        pandas.read_pickle("x.pkl")
        AutoModel.from_pretrained("x", weights_only=False)
        import marshal; marshal.loads(b)
        import yaml
        yaml.load(text); yaml.load(text, Loader=yaml.FullLoader); yaml.load_all(text, yaml.UnsafeLoader)
        yaml.unsafe_load(text); yaml.full_load(text)
        eval(user_text); exec(code_from_a_file)
        T.hub.load("owner/repo", "model")
        """
    )
    found = unsafe_loads(bad)
    for what in ("import joblib", "from dill import loads", "from torch import load", "pickle.load(", "pickle.loads(",
                 "p.Unpickler(", "T.load(...) without", "T.serialization.load(", "allow_pickle", "read_pickle",
                 "weights_only=False", "marshal.loads(", "yaml.unsafe_load(", "yaml.full_load(", "eval(", "exec(",
                 "T.hub.load("):
        assert any(what in f for f in found), (what, found)
    assert sum("without Loader=SafeLoader" in f for f in found) == 3, found
    good = (
        "import pickle\nimport torch\nimport numpy as np\nimport yaml\n"
        "torch.load(p, map_location='cpu', weights_only=True)\nnp.load('a.npy')\nx = pickle.UnpicklingError\n"
        "yaml.safe_load(text)\nyaml.load(text, Loader=yaml.SafeLoader)\nyaml.load(text, yaml.CSafeLoader)\n"
        "model.eval()\n"
    )
    assert unsafe_loads(good) == []


def test_no_source_file_unpickles_untrusted_data():
    files = [p for d in SOURCE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 30
    found = [f for p in files for f in unsafe_loads(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert not found, "code that can unpickle untrusted data:\n" + "\n".join(found)


# ============================================================================== malicious pickle


class Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture
def evil(tmp_path):
    """A factory of malicious files, and the marker that must never appear."""
    marker = tmp_path / "PWNED"

    def make(path: Path, kind: str = "torch") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        obj = {"weight": torch.zeros(2), "payload": Payload(marker)}
        if kind == "torch":
            torch.save(obj, path)
        elif kind == "legacy":
            torch.save(obj, path, _use_new_zipfile_serialization=False)
        else:
            with open(path, "wb") as fh:
                pickle.dump(obj, fh)
        return path

    make.marker = marker
    yield make
    assert not marker.exists(), "a malicious pickle ran code"


def test_the_payload_is_live(tmp_path, evil):
    """Plain pickle.load does run it (so the tests below mean something); then the marker is removed."""
    path = evil(tmp_path / "x.pkl", "pickle")
    with open(path, "rb") as fh:
        pickle.load(fh)
    assert evil.marker.exists()
    evil.marker.unlink()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    labels = {0: "cat", 1: "dog", 2: "car"}
    create_model("q2l-r101-448", backbone="test_resnet", hidden_dim=96, dim_feedforward=64, id2label=labels,
                 image_size=64).save_pretrained(root / "q2l")
    create_model("mldecoder-tresnetm-224", backbone="test_resnet", decoder_embedding=32, dim_feedforward=48,
                 id2label=labels, num_groups=2, image_size=64).save_pretrained(root / "mld")
    return root


def _pickled_model_folder(saved, tmp_path, evil, kind):
    folder = tmp_path / f"pickled_{kind}"
    folder.mkdir()
    shutil.copy(saved / "q2l" / "config.json", folder / "config.json")
    evil(folder / "pytorch_model.bin", kind)
    return folder


@pytest.mark.parametrize("kind", ["torch", "legacy", "pickle"])
def test_from_pretrained_refuses_a_pickle_weights_file(kind, saved, tmp_path, evil):
    from transformers import AutoModel, AutoModelForImageClassification

    from hf_mlcls.inference import ModelLoadError, load_model

    folder = _pickled_model_folder(saved, tmp_path, evil, kind)
    for auto in (AutoModelForImageClassification, AutoModel):
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            auto.from_pretrained(folder)
    with pytest.raises(ModelLoadError, match="refusing its pickle weights file"):
        load_model(str(folder), device="cpu")


def test_the_cli_refuses_it_in_one_line(saved, tmp_path, evil, capsys):
    from hf_mlcls.cli import main

    folder = _pickled_model_folder(saved, tmp_path, evil, "torch")
    image = tmp_path / "x.png"
    __import__("PIL.Image").Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", str(folder), str(image)]) == 2
    assert "refusing its pickle weights file" in capsys.readouterr().err


def test_a_pickle_named_safetensors_is_not_unpickled(saved, tmp_path, evil):
    from safetensors import SafetensorError
    from transformers import AutoModelForImageClassification

    folder = tmp_path / "disguised"
    shutil.copytree(saved / "q2l", folder)
    evil(folder / "model.safetensors", "torch")
    with pytest.raises(SafetensorError):
        AutoModelForImageClassification.from_pretrained(folder)


@pytest.mark.parametrize("source", ["timm", "transformers"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_backbone_weights_file_refuses_a_pickle(source, suffix, tmp_path, evil):
    path = evil(tmp_path / f"backbone{suffix}")
    if source == "timm":
        kwargs = dict(backbone="test_resnet", hidden_dim=96)
    else:
        kwargs = dict(backbone="resnet", backbone_source="transformers", hidden_dim=32,
                      backbone_kwargs=dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]))
    # torch's weights-only unpickler (timm wraps its error in a RuntimeError), or safetensors' header check
    with pytest.raises(Exception, match=r"(?i)weights.only|deserializing header"):
        create_model("q2l-r101-448", dim_feedforward=32, num_labels=3, backbone_weights_file=str(path), **kwargs)


def test_load_ema_refuses_a_pickle(saved, tmp_path, evil):
    from transformers import AutoModelForImageClassification

    from hf_mlcls.training import EMA_WEIGHTS_NAME, load_ema

    evil(tmp_path / "ckpt" / EMA_WEIGHTS_NAME)
    module = AutoModelForImageClassification.from_pretrained(saved / "q2l")
    with pytest.raises(Exception, match="(?i)header|deserializ"):
        load_ema(module, str(tmp_path / "ckpt"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from test_training import make_trainer

    from hf_mlcls.data import load_multilabel_dataset

    root = tmp_path_factory.mktemp("resume")
    demo = load_multilabel_dataset("demo", str(root / "demo"), num_train=32, num_validation=16, image_size=32)
    make_trainer(demo, root / "run", epochs=1, eval_strategy="no").train()
    return demo, root / "run" / "checkpoint-2"


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_resuming_refuses_a_pickle_in_the_checkpoint(name, checkpoint, tmp_path, evil):
    from test_training import make_trainer

    demo, original = checkpoint
    ckpt = tmp_path / "run" / original.name
    shutil.copytree(original, ckpt)
    evil(ckpt / name)
    trainer = make_trainer(demo, tmp_path / "run", epochs=2, eval_strategy="no")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer.train(resume_from_checkpoint=str(ckpt))


def test_converter_readers_refuse_a_pickle(tmp_path, evil):
    from hf_mlcls.convert import common, converter

    for kind in ("torch", "legacy", "pickle"):
        with pytest.raises(common.ConversionError, match="refusing to load"):
            common.load_checkpoint(evil(tmp_path / f"official_{kind}.pth", kind))
    with pytest.raises(common.ConversionError, match="refusing to load"):
        converter._load_label_embeddings(str(evil(tmp_path / "wordvec_array.pth")), 300)
    with pytest.raises(common.ConversionError, match="cannot read label embeddings"):
        converter._load_label_embeddings(str(evil(tmp_path / "disguised.safetensors")), 300)


def test_word_vector_reader_and_label_embedding_cache_refuse_a_pickle(tmp_path, evil):
    from hf_mlcls.models import text_encoding

    path = evil(tmp_path / "wordvec_array.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        text_encoding.WordVectorEncoder(str(path), vocabulary=["weight", "payload"]).encode(["weight"])
    # a cache file replaced by a pickle is recomputed, never unpickled
    cached = evil(tmp_path / "cache" / "labels.safetensors")
    encoder = text_encoding.WordVectorEncoder(str(evil(tmp_path / "other.pth")), vocabulary=["a"])
    assert text_encoding._read_disk(str(cached), encoder, ["a"]) is None


def test_dataset_loader_reads_no_pickle(tmp_path, evil):
    """``load_multilabel_dataset("hub", folder)`` goes through ``datasets``: a folder of pickles is no
    dataset, and a ``.pth`` inside a WebDataset shard is read with ``weights_only=True``."""
    import io
    import tarfile

    from hf_mlcls.data import load_multilabel_dataset
    from hf_mlcls.data.core import MissingDatasetFileError

    evil(tmp_path / "pickles" / "train.pkl", "pickle")
    with pytest.raises(MissingDatasetFileError, match="No \\(supported\\) data files"):
        load_multilabel_dataset("hub", str(tmp_path / "pickles"), cache_dir=str(tmp_path / "cache"))
    payload = evil(tmp_path / "sample.pth").read_bytes()
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "train-0000.tar", "w") as tar:
        for name, data in (("0.pth", payload), ("0.json", b'{"labels": [0]}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_multilabel_dataset("hub", str(tmp_path / "shards"), cache_dir=str(tmp_path / "cache"))


# ============================================================================== trust_remote_code

LOCAL_CLASSES = textwrap.dedent(
    """
    import os, sys
    import hf_mlcls
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
    from PIL import Image
    for folder in sys.argv[1:]:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=False)
        base = AutoModel.from_pretrained(folder, trust_remote_code=False)
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
        for obj in (config, model, base):
            assert type(obj).__module__.startswith("hf_mlcls."), type(obj).__module__
        with torch.no_grad():
            logits = model(**processor(images=[Image.new("RGB", (40, 30))], return_tensors="pt")).logits
        assert logits.shape == (1, 3)
    modules = os.environ["HF_MODULES_CACHE"]
    copied = [f for _, _, files in os.walk(modules) for f in files if f.endswith(".py")] if os.path.isdir(modules) else []
    assert not copied, copied
    print("ok")
    """
)


def test_our_models_need_no_trust_remote_code_once_hf_mlcls_is_imported(saved, tmp_path):
    # the folders do ship remote code (for use without the package); it must not be what runs here
    assert "auto_map" in (saved / "q2l" / "config.json").read_text()
    script = tmp_path / "load.py"
    script.write_text(LOCAL_CLASSES)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run([sys.executable, str(script), str(saved / "q2l"), str(saved / "mld")], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


# ============================================================================== the Space

from helpers_space import APP, EXAMPLES, PATH_LIKE, app  # noqa: E402,F401  (the in-process app fixture)


def test_space_refuses_other_file_types_and_large_files(app, tmp_path, monkeypatch):
    for name in ("notes.txt", "page.html", "vector.svg", "doc.pdf", "script.py", "archive.zip", "image.png.exe"):
        (tmp_path / name).write_bytes(b"x")
        with pytest.raises(app.UserFacingError, match="is not an image file") as caught:
            app.load_image(str(tmp_path / name), name)
        assert not PATH_LIKE.search(str(caught.value))
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 3 * 2**20)
    monkeypatch.setattr(app, "MAX_UPLOAD_MB", 2.0)
    with pytest.raises(app.UserFacingError, match=r"is 3\.0 MB; the limit is 2 MB"):
        app.load_image(str(big), "big.png")
    # the same limits reach the page: the upload widgets accept image types only, and launch() caps the size
    source = APP.read_text()
    assert "max_file_size=f\"{MAX_UPLOAD_MB:g}mb\"" in source
    assert source.count("file_types=list(IMAGE_SUFFIXES)") == 2
    assert not set(app.IMAGE_SUFFIXES) & {".svg", ".html", ".pdf", ".txt"}


def test_space_keeps_its_files_in_its_temp_folder(app):
    """Downloads go under the app's one temporary folder (Gradio's own cache too: GRADIO_TEMP_DIR is set to
    a folder inside it before gradio is imported; the live-server check is
    tests/test_space.py::test_writes_only_in_its_temp_folder_and_cleans_it)."""
    assert "os.environ[\"GRADIO_TEMP_DIR\"] = str(TMP_ROOT / \"gradio\")" in APP.read_text()
    out = app.classify([str(EXAMPLES[0])], "tiny-q2l (local)", 0.5, 5)
    assert "Classified 1" in out[1]
    written = [Path(p) for p in out[-2:]]
    assert all(p.is_file() and app.TMP_ROOT in p.resolve().parents for p in written), written


def test_space_messages_never_show_file_system_paths(app, saved, tmp_path, evil):
    secret = tmp_path / "home" / "alice" / "private"
    secret.mkdir(parents=True)
    (secret / "holiday.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (secret / "empty.png").write_bytes(b"")
    out = app.classify([str(secret / "holiday.jpg"), str(secret / "empty.png")], "tiny-q2l (local)", 0.5, 5)
    status = out[1]
    assert "holiday.jpg" in status and "empty.png" in status
    assert str(tmp_path) not in status and not PATH_LIKE.search(status), status
    pickled = _pickled_model_folder(saved, tmp_path, evil, "torch")
    broken = tmp_path / "broken_weights"
    shutil.copytree(saved / "mld", broken)
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    for name, folder in (("pickled (local)", pickled), ("broken (local)", broken), ("gone (local)", tmp_path / "gone")):
        app.STORE.sources[name] = str(folder)
        message = app.load_model_info(name)
        assert "Could not load model" in message, message
        assert str(tmp_path) not in message and not PATH_LIKE.search(message), message


def test_space_bounds_what_one_request_can_ask_for(app):
    """Requests the page cannot make but the API can: more images than a request classifies, too many
    zero-shot labels, a model that is not on the list."""
    out = app.classify([str(EXAMPLES[0])] * (app.MAX_IMAGES + 1), "tiny-q2l (local)", 0.5, 5)
    assert f"Only the first {app.MAX_IMAGES} of {app.MAX_IMAGES + 1} images were classified" in out[1]
    assert len(out[0]["scores"]) == app.MAX_IMAGES
    names = ", ".join(f"label{i}" for i in range(app.MAX_ZERO_SHOT_LABELS + 1))
    _, text, _ = app.zero_shot(str(EXAMPLES[0]), names, "tiny-zsl (local)", 0.5)
    assert f"At most {app.MAX_ZERO_SHOT_LABELS} labels at once" in text
    assert "Unknown model: pick one from the list." in app.load_model_info("/etc/passwd")
    assert "Unknown model" in app.classify([str(EXAMPLES[0])], "../../models/x", 0.5, 5)[1]
