"""Helpers shared by the Space tests (test_space, test_space_load, test_security, test_errors).

Nothing here imports gradio or gradio_client at module level: a test that needs them asks for them
itself (`pytest.importorskip` inside the test or fixture), so a missing optional package skips only
those tests, each by name.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from PIL import Image

from hf_mlcls import create_model

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "spaces" / "app.py"
EXAMPLES = sorted((REPO / "spaces" / "examples").glob("*.jpg"))
CHROMIUM = "/usr/bin/chromium"
LABELS = {0: "cat", 1: "dog", 2: "car", 3: "tree", 4: "sky"}
# Absolute paths must never reach the page.
PATH_LIKE = re.compile(r"(^|[\s'\"(])/(tmp|root|home|work|usr|var|etc)/")


def needs_gradio() -> None:
    """Skip the calling test (or fixture) when gradio or gradio_client is not installed."""
    # gradio imports gradio_client, so that is asked first; any ImportError (not only a missing module) skips
    pytest.importorskip("gradio_client", reason="the Space tests need gradio_client", exc_type=ImportError)
    pytest.importorskip("gradio", reason="the Space needs gradio", exc_type=ImportError)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_tiny_models(root: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    common = dict(backbone="test_resnet", image_size=64)
    create_model("q2l-r101-448", hidden_dim=96, dim_feedforward=64, id2label=LABELS, **common).save_pretrained(
        root / "tiny-q2l"
    )
    create_model(
        "mldecoder-tresnetm-224", decoder_embedding=32, dim_feedforward=48, id2label=LABELS, num_groups=2, **common
    ).save_pretrained(root / "tiny-mld")
    zsl = create_model(
        "mldecoder-tresnetm-zsl-224", decoder_embedding=32, dim_feedforward=48, label_embedding_dim=16, num_labels=3,
        **common,
    )
    zsl.set_label_embeddings(torch.randn(3, 16), ["red", "green", "blue"])
    zsl.save_pretrained(root / "tiny-zsl")
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{ this is not json")
    return {name: root / name for name in ("tiny-q2l", "tiny-mld", "tiny-zsl", "broken")}


def snapshot(folder: Path, skip: tuple[Path, ...] = ()) -> dict[str, int]:
    out = {}
    for path in folder.rglob("*"):
        if any(s == path or s in path.parents for s in skip):
            continue
        out[str(path.relative_to(folder))] = path.stat().st_mtime_ns if path.is_file() else -1
    return out


def app_env(root: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a Space served on 127.0.0.1:port, offline, writing under root/space_tmp and root/hf_home."""
    return dict(
        os.environ,
        HF_MLCLS_SPACE_TMP=str(root / "space_tmp"),
        HF_HOME=str(root / "hf_home"),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        PYTHONUNBUFFERED="1",
        **extra,
    )


def start_app(argv: list[str], root: Path, env: dict[str, str], timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """``python *argv`` in root/cwd with its output in root/app.log, once its page answers: (process, url)."""
    log_path = root / "app.log"
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, *argv], cwd=root / "cwd", env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"the app did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_app(proc: subprocess.Popen) -> None:
    """SIGTERM (the app's own clean shutdown), then a kill if it has not ended in 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def png_bytes(size=(8, 8)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(path: Path, width=30000, height=30000):
    """A valid PNG header claiming 900 megapixels (the pixel data is a few bytes): a decompression bomb."""
    import struct
    import zlib

    data = bytearray(png_bytes())
    ihdr = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))


def import_app(name: str = "hf_mlcls_space_app"):
    """spaces/app.py imported as module `name` (no server); its temporary folder under HF_MLCLS_SPACE_TMP."""
    spec = importlib.util.spec_from_file_location(name, APP)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """spaces/app.py imported as a module (no server), its temporary folder under tmp."""
    needs_gradio()
    root = tmp_path_factory.mktemp("inproc")
    saved_env = {k: os.environ.get(k) for k in ("HF_MLCLS_SPACE_TMP", "GRADIO_TEMP_DIR")}
    os.environ["HF_MLCLS_SPACE_TMP"] = str(root)
    try:
        module = import_app()
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    module.models = save_tiny_models(root / "models")
    module.STORE = module.ModelStore(OrderedDict((f"{k} (local)", str(v)) for k, v in module.models.items()))
    return module
