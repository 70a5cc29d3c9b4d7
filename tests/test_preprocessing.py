"""One preprocessing for every path: odd image files (EXIF-rotated JPEG, RGBA, transparent palette,
16-bit grey, CMYK, grey) give the same pixels and scores through the model's image processor, the
pipeline (given the file's path or the opened image), `hf_mlcls.inference.predict_files`, the training
evaluation transform and the Space."""

from __future__ import annotations

import builtins
import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, ImageClassificationPipeline, pipeline

import hf_mlcls
from hf_mlcls.data import transforms_from_image_processor
from hf_mlcls.inference import load_model, predict_files
from hf_mlcls.models.image_processing_multilabel import MultiLabelImageProcessor, to_rgb
from hf_mlcls.models.pipeline_multilabel import MultiLabelImageClassificationPipeline
from helpers_space import import_app

LABELS = {0: "cat", 1: "dog", 2: "tree"}
TINY = dict(backbone="test_resnet", hidden_dim=96, dim_feedforward=32, id2label=LABELS, image_size=32)

#: files whose alpha channel or bit depth transformers' stock `ImageClassificationPipeline` loses before any
#: image processor sees them (its `load_image` calls `convert("RGB")`). (A transparent palette entry survives:
#: PIL keeps it as the RGB image's transparent colour, which `to_rgb` composites on white.)
CONVERTED_BY_THE_STOCK_PIPELINE = {"rgba.png", "gray16.png"}


def _pixels(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colour gradients plus noise: a resize or a rotation changes them visibly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def write_odd_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    px = _pixels(24, 40, 0)
    files = {}

    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: viewers rotate it 90 degrees clockwise
    files["exif_rotated.jpg"] = folder / "exif_rotated.jpg"
    Image.fromarray(px).save(files["exif_rotated.jpg"], format="JPEG", quality=95, exif=exif.tobytes())

    alpha = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (24, 1))  # clear on the left, opaque on the right
    files["rgba.png"] = folder / "rgba.png"
    Image.fromarray(np.dstack([px, alpha]), mode="RGBA").save(files["rgba.png"])

    palette = Image.fromarray(px).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    colours = palette.getpalette()[:24]
    colours[:3] = [200, 30, 30]  # the transparent entry stores red
    palette.putpalette(colours)
    indices = np.asarray(palette).copy()
    indices[:, :12] = 0  # a transparent band on the left
    transparent = Image.fromarray(indices, mode="P")
    transparent.putpalette(colours)
    files["palette_transparent.png"] = folder / "palette_transparent.png"
    transparent.save(files["palette_transparent.png"], transparency=0)

    files["gray16.png"] = folder / "gray16.png"
    Image.fromarray((px[..., 0].astype(np.uint16) * 180)).save(files["gray16.png"])  # up to 45900 of 65535

    files["cmyk.jpg"] = folder / "cmyk.jpg"
    Image.fromarray(px).convert("CMYK").save(files["cmyk.jpg"], format="JPEG", quality=95)

    files["gray.png"] = folder / "gray.png"
    Image.fromarray(px[..., 1]).save(files["gray.png"])
    return files


def import_space_app(tmp: Path, monkeypatch):
    """spaces/app.py as a module (no server), its temporary folder under ``tmp``; the environment variables
    it sets are put back after the test."""
    monkeypatch.setenv("HF_MLCLS_SPACE_TMP", str(tmp))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))  # app.py sets it on import
    return import_app("hf_mlcls_space_app_preprocessing")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("preprocessing")
    torch.manual_seed(0)
    folder = root / "model"
    hf_mlcls.create_model("q2l-r101-448", **TINY).save_pretrained(folder)
    model = load_model(str(folder), device="cpu")
    processor = AutoImageProcessor.from_pretrained(folder)
    return dict(root=root, folder=folder, model=model, processor=processor, files=write_odd_files(root / "images"))


def _scores(model, pixel_values: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(pixel_values).logits.sigmoid()[0].numpy()


def _reference(setup, name: str) -> tuple[torch.Tensor, np.ndarray]:
    """The processor called directly on the opened file: the pixels and scores every path must give."""
    with Image.open(setup["files"][name]) as image:
        pixel_values = setup["processor"](images=image, return_tensors="pt")["pixel_values"]
    return pixel_values, _scores(setup["model"], pixel_values)


def _by_label(model, scores: np.ndarray) -> dict[str, float]:
    return {model.config.id2label[i]: float(s) for i, s in enumerate(scores)}


PATHS = ["processor", "predict_files", "eval_transform", "pipeline", "space"]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_gives_the_processors_scores(setup, path, tmp_path, monkeypatch):
    model, processor = setup["model"], setup["processor"]
    if path == "space":
        pytest.importorskip("gradio", reason="the Space's decoding needs gradio to import spaces/app.py")
        app = import_space_app(tmp_path, monkeypatch)
    if path == "pipeline":
        pipe = pipeline("image-classification", model=str(setup["folder"]), device="cpu")
    gaps = {}
    for name, file in setup["files"].items():
        expected_pixels, expected = _reference(setup, name)
        pixels = None
        if path == "processor":  # also straight from the path, and from the decoded image
            pixels = processor(images=str(file), return_tensors="pt")["pixel_values"]
            with Image.open(file) as image:
                torch.testing.assert_close(processor(images=[to_rgb(image)], return_tensors="pt")["pixel_values"], pixels, atol=0, rtol=0)
            got = _by_label(model, _scores(model, pixels))
        elif path == "predict_files":
            (result,) = predict_files(model, [str(file)], top_k=len(LABELS), progress=False)
            got = {item["label"]: item["score"] for item in result["labels"]}
        elif path == "eval_transform":
            pixels = transforms_from_image_processor(processor, train=False)(str(file))[None]
            got = _by_label(model, _scores(model, pixels))
        elif path == "pipeline":  # given the file's path, and the opened (undecoded) image
            pixels = pipe.preprocess(str(file))["pixel_values"]
            got = {item["label"]: item["score"] for item in pipe(str(file), top_k=None)}
            with Image.open(file) as image:
                torch.testing.assert_close(pipe.preprocess(image)["pixel_values"], pixels, atol=0, rtol=0)
                from_image = {item["label"]: item["score"] for item in pipe(image, top_k=None)}
            assert from_image == got, name
        else:  # the Space's own upload decoding (given the model's processor where it takes one)
            takes_processor = "processor" in inspect.signature(app.load_image).parameters
            image = app.load_image(str(file), name, **({"processor": processor} if takes_processor else {}))
            pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
            got = _by_label(model, _scores(model, pixels))
        if pixels is not None and not torch.equal(pixels, expected_pixels):
            gaps[name] = f"pixel values differ by up to {float((pixels - expected_pixels).abs().max()):.4f}"
            continue
        gap = max(abs(got[label] - s) for label, s in _by_label(model, expected).items())
        if gap > 1e-6:  # predict_files rounds scores to 6 decimals
            gaps[name] = f"scores differ by {gap:.2e}"
    assert not gaps, f"{path} disagrees with the image processor: {gaps}"


def test_the_stock_pipeline_loses_what_ours_keeps(setup):
    """Why the package has its own pipeline class: transformers' stock one, given the same files, sees the
    processor's pixels except for files with an alpha channel or 16 bits, which it converts with
    convert("RGB") first; `pipeline("image-classification", ...)` builds ours for these models."""
    ours = pipeline("image-classification", model=str(setup["folder"]), device="cpu")
    assert type(ours) is MultiLabelImageClassificationPipeline
    stock = pipeline("image-classification", model=str(setup["folder"]), device="cpu",
                     pipeline_class=ImageClassificationPipeline)
    assert type(stock) is ImageClassificationPipeline and isinstance(stock.image_processor, MultiLabelImageProcessor)
    for name, file in setup["files"].items():
        same = torch.equal(stock.preprocess(str(file))["pixel_values"], _reference(setup, name)[0])
        assert same == (name not in CONVERTED_BY_THE_STOCK_PIPELINE), name


def test_decoding_policy(setup):
    files = setup["files"]
    with Image.open(files["exif_rotated.jpg"]) as image:
        stored = np.asarray(image.convert("RGB"))
        upright = to_rgb(image)
    assert upright.size == (24, 40)  # width and height swapped: turned upright
    np.testing.assert_array_equal(np.asarray(upright), np.rot90(stored, k=-1))  # 90 degrees clockwise
    with Image.open(files["rgba.png"]) as image:
        rgb = np.asarray(to_rgb(image)).astype(int)
        source = np.asarray(image).astype(int)
    assert (rgb[:, 0] == 255).all()  # fully transparent column: white
    np.testing.assert_array_equal(rgb[:, -1], source[:, -1, :3])  # opaque column: its own colour
    with Image.open(files["palette_transparent.png"]) as image:
        rgb = np.asarray(to_rgb(image))
    assert (rgb[:, :12] == 255).all()  # the transparent entry's stored red is never seen
    with Image.open(files["gray16.png"]) as image:
        values = np.asarray(image).astype(np.int64)
        rgb = np.asarray(to_rgb(image))
    assert values.max() > 255  # a real 16-bit file: clipping would make it mostly white
    np.testing.assert_array_equal(rgb[..., 0], np.rint(values / 257.0))
    with Image.open(files["cmyk.jpg"]) as image:
        np.testing.assert_array_equal(np.asarray(to_rgb(image)), np.asarray(image.convert("RGB")))
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0, np.nan]], np.float32), mode="F")
    np.testing.assert_array_equal(np.asarray(to_rgb(floats))[0, :, 0], [0, 128, 255, 0])
    wide = Image.fromarray(np.array([[0, 100_000, 200_000]], np.int32), mode="I")
    np.testing.assert_array_equal(np.asarray(to_rgb(wide))[0, :, 0], [0, 128, 255])  # scaled by its maximum
    plain = Image.new("RGB", (3, 3))
    assert to_rgb(plain) is plain


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("resample", [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
def test_eval_transform_equals_the_processor_bit_for_bit(setup, normalize, resample):
    processor = MultiLabelImageProcessor(size={"height": 20, "width": 28}, resample=resample, do_normalize=normalize,
                                         image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    transform = transforms_from_image_processor(processor, train=False)
    for name, file in setup["files"].items():
        expected = processor(images=str(file), return_tensors="pt")["pixel_values"][0]
        assert torch.equal(transform(str(file)), expected), name


def test_processor_inputs_and_errors():
    processor = MultiLabelImageProcessor(size=8, do_normalize=False)
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = processor(images=Image.fromarray(array), return_tensors="pt")["pixel_values"]
    for same in (array, array.transpose(2, 0, 1), torch.from_numpy(array.transpose(2, 0, 1).copy()), array / 255.0):
        torch.testing.assert_close(processor(images=same, return_tensors="pt")["pixel_values"], expected, atol=0, rtol=0)
    assert processor(images=[array, array], return_tensors="np")["pixel_values"].shape == (2, 3, 8, 8)
    assert len(processor(images=[array])["pixel_values"]) == 1
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        processor(images=array * 2.0)
    with pytest.raises(TypeError, match="PIL images, file paths"):
        processor(images=[{"not": "an image"}])
    with pytest.raises(ValueError, match="cannot be stacked"):
        processor(images=[array, array[:3]], do_resize=False, return_tensors="pt")
    with pytest.raises(TypeError, match="unexpected argument"):
        processor(images=array, do_center_crop=True)


def test_save_writes_the_processor_once_and_refuses_pickle_weights(tmp_path, monkeypatch):
    model = hf_mlcls.create_model("q2l-r101-448", **TINY)
    calls = []
    original = MultiLabelImageProcessor.save_pretrained
    monkeypatch.setattr(MultiLabelImageProcessor, "save_pretrained", lambda self, *a, **k: calls.append(a) or original(self, *a, **k))
    model.save_pretrained(tmp_path / "a", safe_serialization=True)
    assert len(calls) == 1
    saved = json.loads((tmp_path / "a" / "preprocessor_config.json").read_text())
    assert saved["size"] == {"height": 32, "width": 32} and saved["resample"] == 2
    assert json.loads((tmp_path / "a" / "config.json").read_text())["auto_map"]["AutoImageProcessor"] == (
        "image_processing_multilabel.MultiLabelImageProcessor"
    )
    with pytest.raises(ValueError, match="safe_serialization=False"):
        model.save_pretrained(tmp_path / "b", safe_serialization=False)
    assert not (tmp_path / "b").exists()


def test_pipeline_never_asks_to_run_code(setup, monkeypatch):
    asked = []
    monkeypatch.setattr(builtins, "input", lambda *a: asked.append(a) or "n")
    pipe = pipeline("image-classification", model=str(setup["folder"]), device="cpu")
    assert isinstance(pipe.image_processor, MultiLabelImageProcessor)
    assert not asked, asked


def test_a_folder_with_an_old_vit_processor_still_loads_and_predicts(setup, tmp_path):
    from transformers import ViTImageProcessor

    folder = tmp_path / "old"
    setup["model"].save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]["AutoImageProcessor"]  # as older versions saved it
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").unlink()
    (folder / "image_processing_multilabel.py").unlink(missing_ok=True)
    ViTImageProcessor(size={"height": 32, "width": 32}, resample=2, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    assert isinstance(AutoImageProcessor.from_pretrained(folder), ViTImageProcessor)
    model = load_model(str(folder), device="cpu")
    file = str(setup["files"]["rgba.png"])
    (result,) = predict_files(model, [file], top_k=3, progress=False)
    expected = _by_label(model, _reference(setup, "rgba.png")[1])
    assert all(abs(item["score"] - expected[item["label"]]) <= 1e-6 for item in result["labels"])
    assert len(pipeline("image-classification", model=str(folder), device="cpu")(file, top_k=None)) == 3


REMOTE = textwrap.dedent(
    """
    import sys
    sys.modules["hf_mlcls"] = None  # the package must not be importable here
    import torch
    from transformers import AutoImageProcessor
    processor = AutoImageProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert "transformers_modules" in type(processor).__module__, type(processor).__module__
    torch.save(processor(images=sys.argv[2], return_tensors="pt")["pixel_values"], sys.argv[3])
    """
)


def test_the_processor_loads_as_remote_code_without_the_package(setup, tmp_path):
    file = setup["files"]["palette_transparent.png"]
    out = tmp_path / "pixels.pt"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", REMOTE, str(setup["folder"]), str(file), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    torch.testing.assert_close(torch.load(out, weights_only=True), _reference(setup, "palette_transparent.png")[0], atol=0, rtol=0)
