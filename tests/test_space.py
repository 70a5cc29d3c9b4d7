"""The Gradio Space, run as a real server on localhost with tiny local models.

gradio_client calls every endpoint; a headless Chromium (Playwright) uploads an image, moves the
threshold, picks a label and checks the page; bad uploads and broken models become messages.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from configparser import ConfigParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from helpers_space import (  # noqa: F401  (app: the in-process app fixture)
    APP,
    CHROMIUM,
    EXAMPLES,
    LABELS,
    PATH_LIKE,
    REPO,
    app,
    app_env,
    bomb_png,
    free_port,
    needs_gradio,
    save_tiny_models,
    snapshot,
    start_app,
    stop_app,
)
from PIL import Image

from hf_mlcls import create_model
from hf_mlcls.data.demo import DEMO_CLASSES

Q2L, MLD, ZSL, BROKEN, MISSING = "tiny-q2l (local)", "tiny-mld (local)", "tiny-zsl (local)", "broken (local)", \
    "missing (local)"

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """`python spaces/app.py` in a fresh process, with tiny local models, on a free localhost port."""
    needs_gradio()
    import gradio_client

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
    proc, url = start_app([str(APP)], root, env)

    def stop():
        stop_app(proc)

    client = gradio_client.Client(url, verbose=False, download_files=str(root / "client"), analytics_enabled=False)
    yield SimpleNamespace(url=url, root=root, models=models, client=client, proc=proc, stop=stop, before=before)
    stop()


def save_tiny_demo_model(folder: Path) -> Path:
    """A tiny Query2Label with the demo set's labels (digit names) and its 64-px input, like outputs/demo."""
    torch.manual_seed(0)
    create_model("q2l-r101-448", backbone="test_resnet", image_size=64, hidden_dim=96, dim_feedforward=64,
                 id2label=dict(enumerate(DEMO_CLASSES))).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def demo_space(tmp_path_factory):
    """The app as a user first meets it: no HF_MLCLS_MODELS, started where `outputs/demo` holds a model."""
    needs_gradio()
    root = tmp_path_factory.mktemp("demo_space")
    for name in ("cwd", "space_tmp", "hf_home"):
        (root / name).mkdir()
    save_tiny_demo_model(root / "cwd" / "outputs" / "demo")
    env = app_env(root, free_port())
    env.pop("HF_MLCLS_MODELS", None)
    proc, url = start_app([str(APP)], root, env)
    yield SimpleNamespace(url=url, root=root, proc=proc)
    stop_app(proc)


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
    assert max(width, height) == 640 and abs(width / height - 384 / 288) < 0.02  # the display size
    assert "Where the query of" in caption
    assert table["headers"] == ["image", "rank", "label", "score", "predicted"] and len(table["data"]) == 10
    # the CSV is `hf-mlcls predict -o x.csv`'s: image,label,score,error for each label at or above the threshold
    rows = Path(csv_file).read_text().splitlines()
    assert rows[0] == "image,label,score,error"
    expected = [f"{r[0]},{r[2]}" for r in table["data"] if r[4] in (True, "true", "True")]
    assert [",".join(r.split(",")[:2]) for r in rows[1:]] == expected
    results = json.loads(Path(json_file).read_text())
    assert results["threshold"] == 0.5 and [r["image"] for r in results["images"]] == [p.name for p in EXAMPLES[:2]]
    assert set(results["images"][0]["scores"]) == set(LABELS.values())

    # Sliders re-render from the stored scores: everything at threshold 0, nothing at 1.
    bars, predicted, gallery, table, csv_file, json_file = c.predict(1, 0.0, 2, api_name="/update_scores")
    assert len(bars["confidences"]) == 2 and "5 label(s)" in predicted and EXAMPLES[1].name in predicted
    assert len(table["data"]) == 4
    assert len(json.loads(Path(json_file).read_text())["images"][1]["predicted"]) == 5
    assert len(Path(csv_file).read_text().splitlines()) == 1 + 2 * 5  # every label reaches 0
    _, predicted, _, _, csv_file, _ = c.predict(0, 1.0, 5, api_name="/update_scores")
    assert "no label reaches 1.00" in predicted
    # an image with no label at the threshold still has its row, with an empty label (as predict writes it)
    assert Path(csv_file).read_text().splitlines() == ["image,label,score,error", f"{EXAMPLES[0].name},,,",
                                                       f"{EXAMPLES[1].name},,,"]

    bars, predicted, label_dd, overlay, caption = c.predict(1, 2, 0.5, 5, api_name="/change_image")
    assert EXAMPLES[1].name in predicted and label_dd["value"] == 2 and "**car**" in caption
    overlay, caption = c.predict(0, 3, api_name="/show_attention")
    assert "**tree**" in caption and Path(overlay).is_file()

    out = c.predict(0, MLD, 0.5, 5, api_name="/classify_example")
    assert f"Classified 1 image(s) with {MLD}" in out[0]
    assert "2 group queries of 3 labels" in out[7]
    for index in (-1, -3, 3, 99):  # the model's examples are 0..2: anything else is refused, never wrapped around
        out = c.predict(index, Q2L, 0.5, 5, api_name="/classify_example")
        assert "Unknown example" in out[0] and "Classified" not in out[0], (index, out[0])

    from gradio_client import handle_file

    scores, text, _ = c.predict(handle_file(str(EXAMPLES[0])), "dog, frisbee", Q2L, 0.5, api_name="/zero_shot")
    assert "fixed set of 5 labels" in text and not scores.get("confidences")
    scores, text, _ = c.predict(handle_file(str(EXAMPLES[0])), "dog, frisbee", ZSL, 0.5, api_name="/zero_shot")
    assert text  # label-name support (issue 7) scores them; without it the page says what is missing
    assert_clean(text)
    if not scores.get("confidences"):
        assert "use_label_names" in text or "text encoder" in text


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


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "test-output"


def open_page(p, url):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#upload input[type=file]", state="attached", timeout=60000)
    return browser, page


def assert_attention_fills_its_panel(page):
    """The overlay is served at display size and drawn over most of the panel, not as a thumbnail in a corner."""
    image = page.locator("#attention img")
    image.wait_for(timeout=15000)
    page.wait_for_function("document.querySelector('#attention img').naturalWidth > 0", timeout=15000)
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert max(natural) == 640, natural
    drawn = image.bounding_box()
    panel = page.locator("#attention").bounding_box()
    # the panel is 360 px high with its label inside: the drawn image takes most of that height (or the width)
    assert drawn["height"] >= 0.75 * panel["height"] or drawn["width"] >= 0.9 * panel["width"], (drawn, panel)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_browser_upload_threshold_and_attention(space):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, space.url)
        try:
            # the scene drawings are this model's examples (its labels include car, tree and sky)
            page.locator("#examples img").first.wait_for(timeout=30000)
            sources = page.locator("#examples img").evaluate_all("imgs => imgs.map(i => i.src)")
            assert sources and all(re.search(r"(beach|park|street)\.jpg", s) for s in sources), sources
            page.locator("#upload input[type=file]").set_input_files(str(EXAMPLES[0]))
            status = page.locator("#status")
            status.get_by_text("Classified 1 image(s)").wait_for(timeout=30000)
            scores = page.locator("#scores")
            for label in LABELS.values():
                scores.get_by_text(label, exact=True).wait_for(timeout=10000)
            predicted = page.locator("#predicted")
            assert "0.50" in predicted.inner_text()
            # the downloads are in view without opening anything
            page.locator('#csv a[download="hf_mlcls_results.csv"]').wait_for(state="visible", timeout=15000)
            assert page.locator('#json a[download="hf_mlcls_results.json"]').is_visible()

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
            assert_attention_fills_its_panel(page)
            assert "Something went wrong" not in status.inner_text()
            page.screenshot(path=str(SHOTS / "space.png"), full_page=True)
        finally:
            browser.close()
    assert (SHOTS / "space.png").stat().st_size > 10_000


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_browser_first_visit_without_settings_opens_the_demo_model(demo_space):
    """No HF_MLCLS_MODELS, offline: the page opens on outputs/demo, offers digit mosaics as examples, and a
    click on one classifies it with its 64-px attention map enlarged over the panel; downloads in view."""
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    SHOTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser, page = open_page(p, demo_space.url)
        try:
            info = page.locator("#model-info")
            info.get_by_text("10 labels", exact=False).wait_for(timeout=60000)
            assert "demo (local)" in info.inner_text() and "Query2Label" in info.inner_text()
            examples = page.locator("#examples img")
            examples.first.wait_for(timeout=30000)
            page.wait_for_function(
                "[...document.querySelectorAll('#examples img')].every(i => i.src.includes('digits-'))", timeout=30000)
            assert examples.count() == 3
            examples.first.click()
            status = page.locator("#status")
            status.get_by_text("Classified 1 image(s) with demo (local)").wait_for(timeout=60000)
            page.locator('#csv a[download="hf_mlcls_results.csv"]').wait_for(state="visible", timeout=15000)
            assert_attention_fills_its_panel(page)
            page.screenshot(path=str(SHOTS / "space-demo.png"), full_page=True)
        finally:
            browser.close()
    assert (SHOTS / "space-demo.png").stat().st_size > 10_000


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
    """Through the model's `use_label_names` (names embedded by `set_label_names`; here a stand-in hashing names
    to embeddings) the tab scores the typed names, and the model keeps its own label set for the Classify tab."""
    from hf_mlcls import MLDecoderModel

    def fake_set_label_names(self, names, text_encoder=None):
        rows = [torch.Generator().manual_seed(sum(map(ord, n))) for n in names]
        self.set_label_embeddings(torch.stack([torch.randn(16, generator=g) for g in rows]), names)

    monkeypatch.setattr(MLDecoderModel, "set_label_names", fake_set_label_names)
    scores, text, overlay = app.zero_shot(str(EXAMPLES[0]), "dog, beach umbrella\nDog, sky", "tiny-zsl (local)", 0.5)
    assert list(scores) == ["dog", "beach umbrella", "sky"], text
    assert all(0 < s < 1 for s in scores.values()) and overlay is not None
    loaded = app.STORE.get("tiny-zsl (local)")
    assert loaded.labels == ["red", "green", "blue"]
    out = app.classify([str(EXAMPLES[0])], "tiny-zsl (local)", 0.5, 5)
    assert "Classified 1" in out[1] and {c for c in out[3]} == {"red", "green", "blue"}
    _, text, _ = app.zero_shot(str(EXAMPLES[0]), " , ;", "tiny-zsl (local)", 0.5)
    assert "Type one or more label names" in text


def test_small_images_get_an_overlay_at_display_size(app, tmp_path, monkeypatch):
    """A 64-px demo mosaic's attention map is drawn at the panel's size (640 px), not as a 64-px thumbnail."""
    grid = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert app.render.attention_overlay(Image.new("RGB", (64, 64)), grid).size == (640, 640)
    assert app.render.attention_overlay(Image.new("RGB", (1024, 768)), grid).size == (640, 480)
    assert app.render.attention_overlay(Image.new("RGB", (48, 96)), grid).size == (320, 640)
    models = dict(app.STORE.sources, **{"demo (local)": str(save_tiny_demo_model(tmp_path / "demo"))})
    monkeypatch.setattr(app, "STORE", app.ModelStore(models))
    mosaic = sorted((REPO / "spaces" / "examples").glob("digits-*.png"))[0]
    out = app.classify([str(mosaic)], "demo (local)", 0.5, 5)
    assert "Classified 1 image(s)" in out[1], out[1]
    with Image.open(out[7]) as overlay:
        assert overlay.size == (640, 640)


def test_examples_fit_the_model(app, tmp_path, monkeypatch):
    models = dict(app.STORE.sources, **{"demo (local)": str(save_tiny_demo_model(tmp_path / "demo"))})
    monkeypatch.setattr(app, "STORE", app.ModelStore(models))
    digits = [p.name for p in app.example_files("demo (local)")]
    assert len(digits) == 3 and all(re.fullmatch(r"digits-\d\.png", n) for n in digits), digits
    manifest = json.loads((REPO / "spaces" / "examples" / "examples.json").read_text())
    for name in digits:  # each mosaic shows digits only
        assert set(manifest["images"][name]) <= set(DEMO_CLASSES)
    # car, tree, sky: the drawn scenes; a zero-shot model's colours match nothing: the default scenes
    assert [p.name for p in app.example_files("tiny-q2l (local)")] == ["beach.jpg", "park.jpg", "street.jpg"]
    assert [p.name for p in app.example_files("tiny-zsl (local)")] == ["beach.jpg", "park.jpg", "street.jpg"]
    out = app.classify_example(0, "demo (local)", 0.5, 5)
    assert "Classified 1 image(s)" in out[1] and out[0]["names"] == [digits[0]]
    for index in (-1, 3, "x", None):
        out = app.classify_example(index, "demo (local)", 0.5, 5)
        assert "Unknown example" in out[1] and not out[0]["scores"], index


def test_without_a_model_list_it_opens_outputs_demo_or_says_how_to_name_one(app, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_MLCLS_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not (REPO / "spaces" / "models.txt").exists()
    assert app.model_sources() == {}  # no Hub ids that may not exist
    monkeypatch.setattr(app, "STORE", app.ModelStore(app.model_sources()))
    hint = app.load_model_info(None)
    assert hint.count("\n") == 0 and "HF_MLCLS_MODELS=outputs/demo python spaces/app.py" in hint
    assert "HF_MLCLS_MODELS=outputs/demo python spaces/app.py" in app.classify([str(EXAMPLES[0])], None, 0.5, 5)[1]
    save_tiny_demo_model(tmp_path / "outputs" / "demo")
    sources = app.model_sources()
    assert sources == {"demo (local)": str(tmp_path / "outputs" / "demo")}
    monkeypatch.setattr(app, "STORE", app.ModelStore(sources))
    assert "10 labels" in app.load_model_info("demo (local)")  # loads offline (HF_HUB_OFFLINE=1 in conftest)


def test_display_uses_the_processors_to_rgb_and_inference_its_pixel_values(app, tmp_path, monkeypatch):
    """The model's image processor owns preprocessing; the app converts for display with its `to_rgb` if any."""
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(tmp_path / "alpha.png")

    class Processor:
        def to_rgb(self, img):
            return Image.new("RGB", img.size, (1, 2, 3))

    assert app.load_image(str(tmp_path / "alpha.png"), processor=Processor()).getpixel((0, 0)) == (1, 2, 3)
    assert app.load_image(str(tmp_path / "alpha.png"), processor=object()).getpixel((0, 0)) == (255, 255, 255)
    loaded = app.STORE.get("tiny-q2l (local)")
    calls = []
    processor = loaded.processor

    class Spy:
        def __getattr__(self, name):
            return getattr(processor, name)

        def __call__(self, images=None, **kwargs):
            calls.append(len(images))
            return processor(images=images, **kwargs)

    monkeypatch.setattr(loaded, "processor", Spy())
    out = app.classify([str(EXAMPLES[0]), str(EXAMPLES[1])], "tiny-q2l (local)", 0.5, 5)
    assert "Classified 2 image(s)" in out[1] and calls == [2]


def test_app_without_the_package_says_so_in_one_line(tmp_path):
    """The Space's logic is package code: without hf_mlcls, app.py stops with one line saying how to get it."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import runpy, sys
        sys.modules["hf_mlcls"] = None  # not installed, not shipped beside app.py
        runpy.run_path(sys.argv[1], run_name="__main__")
    """))
    done = subprocess.run([sys.executable, str(script), str(APP)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=dict(os.environ, HF_MLCLS_SPACE_TMP=str(tmp_path)))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs the hf_mlcls package" in lines[0] and "deploy-space" in lines[0], done.stderr


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
