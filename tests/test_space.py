"""The Gradio Space, run as a real server on localhost with tiny local models.

gradio_client calls every endpoint; a headless Chromium (Playwright) uploads an image, moves the
threshold, picks a label and checks the page; bad uploads and broken models become messages.
"""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import OrderedDict
from configparser import ConfigParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hf_mlcls import create_model

gradio_client = pytest.importorskip("gradio_client", reason="the Space tests need gradio and gradio_client")
pytest.importorskip("gradio", reason="the Space tests need gradio")

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "spaces" / "app.py"
EXAMPLES = sorted((REPO / "spaces" / "examples").glob("*.jpg"))
CHROMIUM = "/usr/bin/chromium"
LABELS = {0: "cat", 1: "dog", 2: "car", 3: "tree", 4: "sky"}
Q2L, MLD, ZSL, BROKEN, MISSING = "tiny-q2l (local)", "tiny-mld (local)", "tiny-zsl (local)", "broken (local)", \
    "missing (local)"
# Absolute paths must never reach the page.
PATH_LIKE = re.compile(r"(^|[\s'\"(])/(tmp|root|home|work|usr|var|etc)/")

pytestmark = pytest.mark.timeout(400)


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


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """`python spaces/app.py` in a fresh process, with tiny local models, on a free localhost port."""
    root = tmp_path_factory.mktemp("space")
    models = save_tiny_models(root / "models")
    for name in ("cwd", "space_tmp", "hf_home", "client"):
        (root / name).mkdir()
    port = free_port()
    env = app_env(
        root, port,
        HF_MLCLS_MODELS=",".join([str(models["tiny-q2l"]), str(models["tiny-mld"]), str(models["tiny-zsl"]),
                                  str(models["broken"]), str(root / "missing")]),
        HF_MLCLS_MAX_UPLOAD_MB="2",
    )
    before = snapshot(root, skip=(root / "space_tmp", root / "hf_home", root / "client"))
    # Started now so that it imports its libraries while the server does (see test_app_runs_without_hf_mlcls).
    no_package = start_without_package(tmp_path_factory.mktemp("no_package"), models)
    proc, url = start_app([str(APP)], root, env)

    def stop():
        stop_app(proc)

    client = gradio_client.Client(url, verbose=False, download_files=str(root / "client"), analytics_enabled=False)
    yield SimpleNamespace(url=url, root=root, models=models, client=client, proc=proc, stop=stop, before=before,
                          no_package=no_package)
    stop()
    if no_package.poll() is None:
        no_package.kill()
        no_package.communicate()


def assert_clean(text):
    assert not PATH_LIKE.search(str(text)), f"a file-system path reached the page: {text}"


def classify(space, paths, model=Q2L, threshold=0.5, top_k=5):
    from gradio_client import handle_file

    return space.client.predict([handle_file(str(p)) for p in paths], model, threshold, top_k, api_name="/classify")


def test_every_endpoint(space):
    c = space.client
    info = c.predict(Q2L, api_name="/load_model")
    assert "Query2Label" in info and "5 labels" in info
    assert "ML-Decoder" in c.predict(MLD, api_name="/load_model")
    for broken in (BROKEN, MISSING):
        text = c.predict(broken, api_name="/load_model")
        assert "Could not load model" in text
        assert_clean(text)

    (status, image_dd, bars, predicted, gallery, label_dd, overlay, caption, table, csv_file, json_file) = classify(
        space, EXAMPLES[:2]
    )
    assert "Classified 2 image(s)" in status
    assert [choice[0] for choice in image_dd["choices"]] == [f"1. {EXAMPLES[0].name}", f"2. {EXAMPLES[1].name}"]
    assert len(bars["confidences"]) == 5 and {b["label"] for b in bars["confidences"]} == set(LABELS.values())
    assert "0.50" in predicted and EXAMPLES[0].name in predicted
    assert len(gallery) == 2
    assert len(label_dd["choices"]) == 5 and label_dd["value"] == label_dd["choices"][0][1]
    with Image.open(overlay) as img:
        width, height = img.size
    assert max(width, height) <= 640 and abs(width / height - 384 / 288) < 0.02
    assert "Where the query of" in caption
    assert table["headers"] == ["image", "rank", "label", "score", "predicted"] and len(table["data"]) == 10
    rows = Path(csv_file).read_text().splitlines()
    assert rows[0] == "image,rank,label,score,predicted" and len(rows) == 1 + 2 * 5
    results = json.loads(Path(json_file).read_text())
    assert results["threshold"] == 0.5 and [r["image"] for r in results["images"]] == [p.name for p in EXAMPLES[:2]]
    assert set(results["images"][0]["scores"]) == set(LABELS.values())

    # Sliders re-render from the stored scores: everything at threshold 0, nothing at 1.
    bars, predicted, gallery, table, csv_file, json_file = c.predict(1, 0.0, 2, api_name="/update_scores")
    assert len(bars["confidences"]) == 2 and "5 label(s)" in predicted and EXAMPLES[1].name in predicted
    assert len(table["data"]) == 4
    assert len(json.loads(Path(json_file).read_text())["images"][1]["predicted"]) == 5
    _, predicted, *_ = c.predict(0, 1.0, 5, api_name="/update_scores")
    assert "no label reaches 1.00" in predicted

    bars, predicted, label_dd, overlay, caption = c.predict(1, 2, 0.5, 5, api_name="/change_image")
    assert EXAMPLES[1].name in predicted and label_dd["value"] == 2 and "**car**" in caption
    overlay, caption = c.predict(0, 3, api_name="/show_attention")
    assert "**tree**" in caption and Path(overlay).is_file()

    out = c.predict(0, MLD, 0.5, 5, api_name="/classify_example")
    assert f"Classified 1 image(s) with {MLD}" in out[0]
    assert "2 group queries of 3 labels" in out[7]

    from gradio_client import handle_file

    scores, text, _ = c.predict(handle_file(str(EXAMPLES[0])), "dog, frisbee", Q2L, 0.5, api_name="/zero_shot")
    assert "fixed set of 5 labels" in text and not scores.get("confidences")
    scores, text, _ = c.predict(handle_file(str(EXAMPLES[0])), "dog, frisbee", ZSL, 0.5, api_name="/zero_shot")
    assert text  # label-name support (issue 7) scores them; without it the page says what is missing
    assert_clean(text)
    if not scores.get("confidences"):
        assert "set_label_names" in text


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


def test_bad_inputs_are_messages_and_the_app_keeps_serving(space, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(EXAMPLES[0].read_bytes()[:3000])
    bomb = tmp_path / "bomb.png"
    bomb_png(bomb)
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((2400, 3600, 3), 128, np.uint8)).save(big, quality=60)

    status = classify(space, [fake])[0]
    assert "is not an image" in status and "notes.png" in status
    status = classify(space, [truncated])[0]
    assert "damaged or truncated" in status
    status = classify(space, [bomb])[0]
    assert "too large to open safely" in status
    out = classify(space, [big, fake])  # the good one is classified, the bad one reported
    assert "Classified 1 image(s)" in out[0] and "notes.png" in out[0]
    with Image.open(out[6]) as overlay:
        assert max(overlay.size) <= 640  # downscaled
    assert "Upload one or more images" in space.client.predict([], Q2L, 0.5, 5, api_name="/classify")[0]
    status = classify(space, EXAMPLES[:1], model=BROKEN)[0]
    assert "Could not load model" in status
    for text in (status,):
        assert_clean(text)

    too_big = tmp_path / "noise.png"  # over the 2 MB limit this server runs with
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1100, 1100, 3), dtype=np.uint8)).save(too_big)
    assert too_big.stat().st_size > 2 * 2**20
    with pytest.raises(Exception, match="(?i)size|large|413"):
        classify(space, [too_big])
    unsupported = tmp_path / "notes.txt"
    unsupported.write_text("hello")
    with pytest.raises(Exception, match="(?i)file type"):
        classify(space, [unsupported])
    assert "Classified 1 image(s)" in classify(space, EXAMPLES[:1])[0]  # still serving


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_browser_upload_threshold_and_attention(space):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    out_dir = REPO / "test-output"
    out_dir.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(space.url)
            page.wait_for_selector("#upload input[type=file]", state="attached", timeout=30000)
            page.locator("#upload input[type=file]").set_input_files(str(EXAMPLES[0]))
            status = page.locator("#status")
            status.get_by_text("Classified 1 image(s)").wait_for(timeout=30000)
            scores = page.locator("#scores")
            for label in LABELS.values():
                scores.get_by_text(label, exact=True).wait_for(timeout=10000)
            predicted = page.locator("#predicted")
            assert "0.50" in predicted.inner_text()

            # Move the threshold to 0.95 with its number box, as a person typing would.
            box = page.locator("#threshold input[type=number]")
            box.fill("0.95")
            box.press("Enter")
            predicted.get_by_text("0.95", exact=False).wait_for(timeout=15000)
            assert "no label reaches 0.95" in predicted.inner_text()

            # Pick the label "dog" in the attention dropdown: the caption and the map follow.
            page.locator("#label-choice input").click()
            page.get_by_role("option", name=re.compile(r"^dog \(")).click()
            caption = page.locator("#attention-caption")
            caption.get_by_text("dog", exact=True).wait_for(timeout=15000)
            assert "Where the query of dog looked" in caption.inner_text()
            page.locator("#attention img").wait_for(timeout=10000)
            assert "Something went wrong" not in status.inner_text()
            page.screenshot(path=str(out_dir / "space.png"), full_page=True)
        finally:
            browser.close()
    assert (out_dir / "space.png").stat().st_size > 10_000


def test_writes_only_in_its_temp_folder_and_cleans_it(space):
    """Runs last: nothing new outside HF_MLCLS_SPACE_TMP (models and cwd untouched); gone after SIGTERM."""
    after = snapshot(space.root, skip=(space.root / "space_tmp", space.root / "hf_home", space.root / "client"))
    new = {k: v for k, v in after.items() if space.before.get(k) != v and k != "app.log"}
    assert not new, f"the app wrote outside its temporary folder: {sorted(new)[:10]}"
    assert list((space.root / "space_tmp").iterdir()), "the app's temporary folder is missing"
    space.stop()
    assert space.proc.returncode == 0, (space.root / "app.log").read_text()[-2000:]
    assert not list((space.root / "space_tmp").iterdir()), "the temporary folder outlived the app"
    # The only tracebacks are Gradio's own log of the file-type check it refuses notes.txt with.
    for chunk in (space.root / "app.log").read_text().split("Traceback (most recent call last):")[1:]:
        assert "gradio.exceptions.Error" in chunk and "Invalid file type" in chunk, chunk[-1500:]


# ----------------------------------------------------------------------------- in-process pieces


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """spaces/app.py imported as a module (no server), its temporary folder under tmp."""
    root = tmp_path_factory.mktemp("inproc")
    saved_env = {k: os.environ.get(k) for k in ("HF_MLCLS_SPACE_TMP", "GRADIO_TEMP_DIR")}
    os.environ["HF_MLCLS_SPACE_TMP"] = str(root)
    try:
        spec = importlib.util.spec_from_file_location("hf_mlcls_space_app", APP)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    module.models = save_tiny_models(root / "models")
    module.STORE = module.ModelStore(OrderedDict((f"{k} (local)", str(v)) for k, v in module.models.items()))
    return module


def test_image_guards(app, tmp_path):
    palette = Image.new("P", (30, 20))
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png")
    Image.new("CMYK", (30, 20), (0, 50, 100, 0)).save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(tmp_path / "alpha.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    for name in ("palette.png", "cmyk.jpg", "deep.png", "alpha.png", "dot.png"):
        image = app.load_image(str(tmp_path / name), name)
        assert image.mode == "RGB", name
    assert app.load_image(str(tmp_path / "alpha.png")).getpixel((0, 0)) == (255, 255, 255)  # alpha over white
    Image.new("RGB", (3000, 1000)).save(tmp_path / "wide.png")
    assert app.load_image(str(tmp_path / "wide.png")).size == (1024, 341)
    bomb_png(tmp_path / "bomb.png", 8000, 8000)  # above the guard, below PIL's own hard limit
    with pytest.raises(app.UserFacingError, match="too large"):
        app.load_image(str(tmp_path / "bomb.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(app.UserFacingError, match="not an image"):
        app.load_image(str(tmp_path / "empty.png"))
    with pytest.raises(app.UserFacingError, match="is not an image file") as err:
        app.load_image(str(tmp_path / "dot.png"), "/etc/passwd")
    assert "/etc" not in str(err.value)
    assert app.scrub(f"cannot open {tmp_path}/x.png: no") == "cannot open …: no"


def test_zero_shot_tab_with_typed_label_names(app, monkeypatch):
    """With a `set_label_names` (issue 7's API; here a stand-in hashing names to embeddings) the tab scores
    the typed names, and the model keeps its own label set for the Classify tab."""
    from hf_mlcls import MLDecoderForImageClassification

    def fake_set_label_names(self, names, text_encoder=None):
        rows = [torch.Generator().manual_seed(sum(map(ord, n))) for n in names]
        self.set_label_embeddings(torch.stack([torch.randn(16, generator=g) for g in rows]), names)

    monkeypatch.setattr(MLDecoderForImageClassification, "set_label_names", fake_set_label_names, raising=False)
    scores, text, overlay = app.zero_shot(str(EXAMPLES[0]), "dog, beach umbrella\nDog, sky", "tiny-zsl (local)", 0.5)
    assert list(scores) == ["dog", "beach umbrella", "sky"], text
    assert all(0 < s < 1 for s in scores.values()) and overlay is not None
    loaded = app.STORE.get("tiny-zsl (local)")
    assert loaded.labels == ["red", "green", "blue"]
    out = app.classify([str(EXAMPLES[0])], "tiny-zsl (local)", 0.5, 5)
    assert "Classified 1" in out[1] and {c for c in out[3]} == {"red", "green", "blue"}
    _, text, _ = app.zero_shot(str(EXAMPLES[0]), " , ;", "tiny-zsl (local)", 0.5)
    assert "Type one or more label names" in text


NO_PACKAGE = textwrap.dedent(
    """
    import importlib.util, sys
    from collections import OrderedDict
    sys.modules["hf_mlcls"] = None  # deployed without the package: the model folders' own code is used
    spec = importlib.util.spec_from_file_location("app", sys.argv[1])
    app = importlib.util.module_from_spec(spec)
    sys.modules["app"] = app
    spec.loader.exec_module(app)
    assert not app.HAVE_PACKAGE
    app.STORE = app.ModelStore(OrderedDict([("q2l", sys.argv[2]), ("mld", sys.argv[3])]))
    for name in ("q2l", "mld"):
        out = app.classify([sys.argv[4]], name, 0.5, 5)
        assert "Classified 1 image(s)" in out[1], out[1]
        assert "transformers_modules" in type(app.STORE.get(name).model).__module__
    print("ok")
    """
)


def start_without_package(folder: Path, models: dict[str, Path]) -> subprocess.Popen:
    script = folder / "run.py"
    script.write_text(NO_PACKAGE)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(folder / "hf_home"), HF_MLCLS_SPACE_TMP=str(folder),
               GRADIO_ANALYTICS_ENABLED="False")
    return subprocess.Popen([sys.executable, str(script), str(APP), str(models["tiny-q2l"]), str(models["tiny-mld"]),
                             str(EXAMPLES[0])], env=env, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_app_runs_without_hf_mlcls_installed(space):
    """Deployed with neither the package source nor PyPI's hf_mlcls, the app uses the models' remote code."""
    stdout, stderr = space.no_package.communicate(timeout=300)
    assert space.no_package.returncode == 0 and "ok" in stdout, stderr[-3000:]


def test_space_metadata_and_requirements():
    readme = (REPO / "spaces" / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["sdk_version"]
    setup = ConfigParser()
    setup.read(REPO / "setup.cfg")
    needed = {re.split(r"[<>=!~\[ ;]", line.strip())[0].lower().replace("_", "-")
              for line in setup["options"]["install_requires"].splitlines() if line.strip()}
    listed = {re.split(r"[<>=!~\[ ;]", line.strip())[0].lower().replace("_", "-")
              for line in (REPO / "spaces" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert needed <= listed, f"spaces/requirements.txt lacks {sorted(needed - listed)} from setup.cfg"
    assert EXAMPLES and sum(p.stat().st_size for p in EXAMPLES) < 100_000
