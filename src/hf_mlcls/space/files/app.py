"""Multi-label image classification with Query2Label and ML-Decoder: the Gradio Space.

Run it from a checkout (`python spaces/app.py`) or as a deployed Space (`hf-mlcls deploy-space`). This file
only wires the page: the model store, decoding, inference, rendering and downloads are `hf_mlcls.space`,
which a deployed Space ships beside this file (or installs from PyPI).

Settings (environment variables):
    HF_MLCLS_MODELS        comma-separated Hub ids or local model folders to offer (first = default);
                           otherwise `models.txt` beside this file, otherwise `outputs/demo` when it holds
                           a model; otherwise the page says how to name one.
    HF_MLCLS_SPACE_TMP     parent folder of the app's temporary folder (default: the system's).
    HF_MLCLS_MAX_UPLOAD_MB largest upload accepted, in MB (default 10).
    GRADIO_SERVER_NAME / GRADIO_SERVER_PORT   where to listen (Gradio's own variables).

Everything the app writes (Gradio's upload cache, downloads) lives in one temporary folder that is
removed at exit. Errors are shown in the page without file-system paths; the app keeps serving.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import OrderedDict
from pathlib import Path

try:
    from hf_mlcls.space import environment, examples, render
    from hf_mlcls.space.downloads import image_file as _image_file
    from hf_mlcls.space.downloads import write_downloads as _write_downloads
    from hf_mlcls.space.environment import (
        DISPLAY_SIDE,
        IMAGE_SUFFIXES,
        MAX_IMAGES,
        MAX_SIDE,
        MAX_ZERO_SHOT_LABELS,  # noqa: F401  (part of the app module's settings, read by tests)
        NO_MODEL_HINT,
        UserFacingError,
        message,
        safe_name,
    )
    from hf_mlcls.space.images import MAX_PIXELS
    from hf_mlcls.space.images import load_image as _load_image
    from hf_mlcls.space.inference import check_label_names, run_model, score_label_names
    from hf_mlcls.space.store import ModelStore
except ImportError as err:  # the logic is package code: a Space ships it (see docs/space.md)
    sys.exit(f"this Space needs the hf_mlcls package ({err}); `pip install hf_mlcls` or deploy with "
             "`hf-mlcls deploy-space`, which ships it beside app.py")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

APP_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = APP_DIR / "examples"
MAX_UPLOAD_MB = environment.max_upload_mb()

# One temporary folder for everything this process writes (Gradio's cache included).
TMP_ROOT = environment.make_tmp_root()
os.environ["GRADIO_TEMP_DIR"] = str(TMP_ROOT / "gradio")

try:
    import gradio as gr  # noqa: E402  (after GRADIO_TEMP_DIR is set)
except ImportError as err:  # the Space's own dependency, not the package's
    sys.exit(f"this Space needs gradio ({err}); install it with: pip install \"hf_mlcls[space]\"")

STORE: ModelStore | None = None


def scrub(text: str) -> str:
    """The message without file-system paths (this folder and the temporary one included)."""
    return environment.scrub(text, TMP_ROOT, APP_DIR)


def load_image(path: str | None, name: str | None = None, processor=None):
    return _load_image(path, name, max_upload_mb=MAX_UPLOAD_MB, processor=processor)


def image_file(image, name: str = "image") -> str:
    return _image_file(TMP_ROOT, image, name)


def model_sources() -> "OrderedDict[str, str]":
    return environment.model_sources(environment.model_entries(APP_DIR))


def example_files(model_name: str | None = None) -> list[Path]:
    """The examples that fit the model (by its label set; see `hf_mlcls.space.examples`)."""
    labels = None
    if model_name and STORE is not None and model_name in STORE.sources:
        try:
            labels = STORE.get(model_name).labels
        except UserFacingError:
            labels = None
    return examples.examples_for(labels, EXAMPLES_DIR)


# ----------------------------------------------------------------------------- views of a session's results


def render_scores(state: dict, index, threshold: float, top_k: int):
    """Label bars, predicted-labels line, gallery, table and downloads for the current state."""
    if not state["scores"]:
        return {}, "", [], None, None, None
    index = int(index) if index is not None and 0 <= int(index) < len(state["scores"]) else 0
    top_k = max(1, int(top_k))
    scores = np.asarray(state["scores"][index])
    bars = {state["labels"][j]: float(scores[j]) for j in np.argsort(-scores, kind="stable")[:top_k]}
    gallery = [(image_file(image, "thumbnail"), f"{name}: {', '.join(render.top_labels(state, i, threshold)[:4]) or '—'}")
               for i, (image, name) in enumerate(zip(state["images"], state["names"]))]
    import pandas as pd

    table = pd.DataFrame([r for r in render.result_rows(state, threshold) if r["rank"] <= top_k],
                         columns=["image", "rank", "label", "score", "predicted"])
    csv_file, json_file = _write_downloads(TMP_ROOT, state, threshold, top_k)
    return bars, render.predicted_line(state, index, threshold), gallery, table, csv_file, json_file


def render_attention(state: dict, index, label):
    """The chosen label's attention map over the chosen image, at display size, and its caption."""
    if not state["scores"]:
        return None, "Classify an image first."
    index = int(index) if index is not None and 0 <= int(index) < len(state["scores"]) else 0
    scores = np.asarray(state["scores"][index])
    label = int(label) if label is not None and 0 <= int(label) < len(scores) else int(np.argmax(scores))
    query, caption = render.attention_caption(state, index, label)
    return image_file(render.attention_overlay(state["images"][index], state["maps"][index][query]), "attention"), caption


def _outputs(state, status, threshold, top_k):
    bars, line, gallery, table, csv_file, json_file = render_scores(state, 0, threshold, top_k)
    if state["scores"]:
        overlay, caption = render_attention(state, 0, None)
        labels = render.label_choices(state, 0)
        image_dd = gr.update(choices=render.image_choices(state), value=0)
        label_dd = gr.update(choices=labels, value=labels[0][1])
    else:
        overlay, caption = None, ""
        image_dd = gr.update(choices=[], value=None)
        label_dd = gr.update(choices=[], value=None)
    return (state, status, image_dd, bars, line, gallery, label_dd, overlay, caption, table, csv_file, json_file)


# ----------------------------------------------------------------------------- event handlers


def _collect_files(files) -> list[tuple[str, str]]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    out = []
    for f in files:
        path = f if isinstance(f, str) else getattr(f, "name", None) or (f.get("path") if isinstance(f, dict) else None)
        if path:
            out.append((path, safe_name(getattr(f, "orig_name", None) or path)))
    return out


def load_model_info(model_name: str | None):
    if not model_name and STORE is not None and not STORE.sources:
        return message("info", NO_MODEL_HINT)
    try:
        loaded = STORE.get(model_name)
    except UserFacingError as err:
        return message("error", str(err))
    note = " Zero-shot model: type your own labels in the **Zero-shot** tab." if loaded.zero_shot else ""
    return message("ok", loaded.describe() + "." + note)


def model_changed(model_name: str | None):
    """The model line, and the examples that fit the model's labels."""
    return load_model_info(model_name), gr.Dataset(samples=[[str(p)] for p in example_files(model_name)])


def classify(files, model_name, threshold, top_k):
    """Run the model on the uploaded images and render every view."""
    state = render.empty_state()
    notes = []
    try:
        entries = _collect_files(files)
        if not entries:
            raise UserFacingError("Upload one or more images (or pick an example).")
        if not model_name and not STORE.sources:
            raise UserFacingError(NO_MODEL_HINT)
        loaded = STORE.get(model_name)
        if len(entries) > MAX_IMAGES:
            notes.append(f"Only the first {MAX_IMAGES} of {len(entries)} images were classified.")
            entries = entries[:MAX_IMAGES]
        images, names = [], []
        for path, name in entries:
            try:
                images.append(load_image(path, name, processor=loaded.processor))
                names.append(name)
            except UserFacingError as err:
                notes.append(str(err))
        if not images:
            raise UserFacingError(" ".join(notes))
        scores, maps = run_model(loaded, images)
    except UserFacingError as err:
        return _outputs(state, message("error", str(err)), threshold, top_k)
    except Exception as err:  # never let a request take the app down
        return _outputs(state, message("error", f"Something went wrong ({type(err).__name__}); try again."),
                        threshold, top_k)
    for image in images:  # the session keeps display-size copies only
        image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    state.update(model=loaded.name, labels=loaded.labels, names=names, images=images,
                 scores=[s.tolist() for s in scores], maps=list(maps), group_size=loaded.group_size,
                 family=loaded.family)
    status = message("ok", f"Classified {len(images)} image(s) with {loaded.name}.")
    if notes:
        status += "\n\n" + message("error", " ".join(notes))
    return _outputs(state, status, threshold, top_k)


def reclassify(files, model_name, threshold, top_k):
    """After a model change: classify the current uploads again, or leave the page as it is."""
    if not _collect_files(files):
        return tuple(gr.skip() for _ in range(12))
    return classify(files, model_name, threshold, top_k)


def classify_example(example_index, model_name, threshold, top_k):
    """The example at `example_index` of the model's examples; any other index is refused."""
    shown = example_files(model_name)
    try:
        index = int(example_index)
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < len(shown):
        return _outputs(render.empty_state(), message("error", "Unknown example: pick one of the pictures shown."),
                        threshold, top_k)
    return classify([str(shown[index])], model_name, threshold, top_k)


def update_scores(state, index, threshold, top_k):
    """Threshold, top-k or image changed: re-render from the stored scores (no model run)."""
    return render_scores(state or render.empty_state(), index, threshold, top_k)


def change_image(state, index, label, threshold, top_k):
    state = state or render.empty_state()
    if not state["scores"]:
        return {}, "", gr.update(), None, ""
    index = int(index) if index is not None and 0 <= int(index) < len(state["scores"]) else 0
    bars, line, *_ = render_scores(state, index, threshold, top_k)
    choices = render.label_choices(state, index)
    label = int(label) if label is not None else choices[0][1]
    overlay, caption = render_attention(state, index, label)
    return bars, line, gr.update(choices=choices, value=label), overlay, caption


def show_attention(state, index, label):
    return render_attention(state or render.empty_state(), index, label)


def zero_shot(file, labels_text, model_name, threshold):
    """Score typed label names with a zero-shot ML-Decoder model (needs `set_label_names`)."""
    try:
        check_label_names(labels_text)
        entries = _collect_files(file)
        if not entries:
            raise UserFacingError("Upload an image (or pick an example above).")
        loaded = STORE.get(model_name)
        image = load_image(*entries[0], processor=loaded.processor)
        names, scores, maps, unknown = score_label_names(loaded, image, labels_text)
    except UserFacingError as err:
        return {}, message("error", str(err)), None
    except Exception as err:
        return {}, message("error", f"Zero-shot scoring failed ({type(err).__name__}: {scrub(err)[:200]})."), None
    best = int(np.argmax(scores))
    predicted = [names[j] for j in np.argsort(-scores) if scores[j] >= threshold]
    line = (f"Scores for {len(names)} label(s). At ≥ {threshold:.2f}: " + (", ".join(f"**{p}**" for p in predicted)
            or "none") + f". The map shows the query of **{names[best]}**, the best-scoring label.")
    if unknown:
        line += " Words the model's word vectors do not know (each such label is the average of its other words): " + "; ".join(
            f"“{label}”: {', '.join(words)}" for label, words in list(unknown.items())[:10]) + "."
    return ({n: float(s) for n, s in zip(names, scores)}, message("ok", line),
            image_file(render.attention_overlay(image, maps[best]), "attention"))


# ----------------------------------------------------------------------------- the page

CSS = """
#status { min-height: 2.2em; }
.caption { font-size: 0.95em; opacity: 0.9; }
footer { display: none !important; }
"""

INTRO = """
# Multi-label image classification
**Query2Label** and **ML-Decoder** on Hugging Face transformers. Upload photos (or pick an example), set the threshold,
and see every label the model finds, with its own probability, and *where it looked* for each one.
"""

ABOUT = f"""
### How it works
- **Scores** are independent sigmoid probabilities, one per label: several labels can be present at once,
  and they do not sum to one. Labels at or above the **threshold** are the predictions; **top-k** limits the
  bars and the table to each image's k best labels.
- **Where the model looked** shows the decoder's cross-attention over the image. Query2Label has one query
  per label. ML-Decoder has a fixed number of *group* queries, each answering for several labels, so the map
  belongs to the chosen label's group.
- **Zero-shot** ML-Decoder models turn label names into queries, so you can type labels the model never saw.
  Expect much weaker scores than for trained labels.
- The **CSV** download has the columns of `hf-mlcls predict -o results.csv` (image, label, score: the labels at
  or above the threshold); the **JSON** one has every score.

### Limits
Up to {MAX_IMAGES} images per request, {MAX_UPLOAD_MB:g} MB per file, {MAX_PIXELS // 1_000_000}
megapixels per image (bigger images are refused; large ones are downscaled to {MAX_SIDE} px). Uploads are kept
only in a temporary folder that is deleted when the app stops.

Models: load your own with `HF_MLCLS_MODELS=owner/name,/path/to/folder python app.py`.
"""


def build_demo(sources: "OrderedDict[str, str] | None" = None) -> gr.Blocks:
    global STORE
    STORE = ModelStore(sources if sources is not None else model_sources())
    names = list(STORE.sources)
    first = names[0] if names else None
    with gr.Blocks(title="Multi-label image classification — Query2Label & ML-Decoder",
                   delete_cache=(1800, 3600), analytics_enabled=False) as demo:
        # Per-session results; dropped an hour after their last change so memory stays bounded.
        state = gr.State(render.empty_state(), time_to_live=3600)
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model_dd = gr.Dropdown(names, value=first, label="Model", scale=2, elem_id="model")
            model_info = gr.Markdown(message("info", NO_MODEL_HINT) if not names else "", elem_id="model-info")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                with gr.Row():
                    with gr.Column(scale=1):
                        files = gr.File(label="Images (one or several)", file_count="multiple",
                                        file_types=list(IMAGE_SUFFIXES), elem_id="upload", height=150)
                        example_set = gr.Dataset(components=[gr.Image(visible=False)],
                                                 samples=[[str(p)] for p in examples.examples_for(None, EXAMPLES_DIR)],
                                                 type="index", layout="gallery", label="…or pick an example",
                                                 elem_id="examples", samples_per_page=6)
                        with gr.Row():
                            threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Threshold",
                                                  elem_id="threshold")
                            top_k = gr.Slider(1, 50, value=5, step=1, label="Top-k", elem_id="topk")
                        run_btn = gr.Button("Classify", variant="primary", elem_id="classify-btn")
                        status = gr.Markdown(elem_id="status")
                    with gr.Column(scale=1):
                        image_dd = gr.Dropdown([], label="Image", elem_id="image-choice")
                        predicted = gr.Markdown(elem_id="predicted")
                        bars = gr.Label(label="Label scores", elem_id="scores", show_heading=False)
                        with gr.Row():  # downloads in view, not inside a collapsed section
                            csv_file = gr.File(label="CSV (as hf-mlcls predict)", interactive=False, elem_id="csv")
                            json_file = gr.File(label="JSON (every score)", interactive=False, elem_id="json")
                with gr.Row():
                    with gr.Column(scale=1):
                        label_dd = gr.Dropdown([], label="Where did the model look for…", elem_id="label-choice")
                        caption = gr.Markdown(elem_classes=["caption"], elem_id="attention-caption")
                    with gr.Column(scale=1):
                        overlay = gr.Image(label="Cross-attention map", type="filepath", interactive=False,
                                           elem_id="attention", height=360)
                with gr.Accordion("All results", open=False):
                    gallery = gr.Gallery(label="Images", columns=4, height="auto", object_fit="contain", preview=False,
                                         fit_columns=False, elem_id="gallery")
                    table = gr.Dataframe(headers=["image", "rank", "label", "score", "predicted"],
                                         interactive=False, elem_id="table")
            with gr.Tab("Zero-shot", id="zero-shot"):
                gr.Markdown("Type any label names for an **ML-Decoder zero-shot** model (pick one in the model "
                            "list). Each name becomes a query; scores are independent probabilities.")
                with gr.Row():
                    with gr.Column():
                        zs_file = gr.File(label="Image", file_count="single", file_types=list(IMAGE_SUFFIXES),
                                          elem_id="zs-upload", height=120)
                        zs_labels = gr.Textbox(label="Labels", placeholder="dog, frisbee, grass, beach umbrella",
                                               lines=2, elem_id="zs-labels")
                        zs_threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Threshold")
                        zs_btn = gr.Button("Score these labels", variant="primary")
                        zs_status = gr.Markdown(elem_id="zs-status")
                    with gr.Column():
                        zs_bars = gr.Label(label="Scores", elem_id="zs-scores", show_heading=False)
                        zs_overlay = gr.Image(label="Attention of the best label", type="filepath",
                                              interactive=False, height=300)
            with gr.Tab("About", id="about"):
                gr.Markdown(ABOUT)

        classify_outputs = [state, status, image_dd, bars, predicted, gallery, label_dd, overlay, caption, table,
                            csv_file, json_file]
        score_outputs = [bars, predicted, gallery, table, csv_file, json_file]

        model_dd.change(load_model_info, [model_dd], [model_info], api_name="load_model").then(
            model_changed, [model_dd], [model_info, example_set], api_visibility="private"
        ).then(reclassify, [files, model_dd, threshold, top_k], classify_outputs, api_visibility="private")
        demo.load(model_changed, [model_dd], [model_info, example_set], api_visibility="private")
        run_btn.click(classify, [files, model_dd, threshold, top_k], classify_outputs, api_name="classify")
        files.upload(classify, [files, model_dd, threshold, top_k], classify_outputs, api_visibility="private")
        example_set.click(classify_example, [example_set, model_dd, threshold, top_k], classify_outputs,
                          api_name="classify_example")
        threshold.change(update_scores, [state, image_dd, threshold, top_k], score_outputs,
                         api_name="update_scores", trigger_mode="always_last", show_progress="hidden")
        top_k.change(update_scores, [state, image_dd, threshold, top_k], score_outputs,
                     api_visibility="private", trigger_mode="always_last", show_progress="hidden")
        image_dd.input(change_image, [state, image_dd, label_dd, threshold, top_k],
                       [bars, predicted, label_dd, overlay, caption], api_name="change_image")
        label_dd.input(show_attention, [state, image_dd, label_dd], [overlay, caption], api_name="show_attention")
        zs_btn.click(zero_shot, [zs_file, zs_labels, model_dd, zs_threshold], [zs_bars, zs_status, zs_overlay],
                     api_name="zero_shot")
    return demo


def main() -> None:
    # A stopped Space or a test sends SIGTERM: exit normally so the temporary folder is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    demo = build_demo()
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(
        max_file_size=f"{MAX_UPLOAD_MB:g}mb",
        allowed_paths=[str(EXAMPLES_DIR), str(TMP_ROOT)],
        theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="amber"),
        css=CSS,
        show_error=False,
        ssr_mode=False,
    )


if __name__ == "__main__":
    main()
