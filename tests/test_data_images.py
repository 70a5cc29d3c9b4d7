import numpy as np
import PIL.Image
import pytest
import torch
from data_fixtures import rgb16_png, write_image

from hf_mlcls.data import ImageOpenError, check_image_file, open_rgb
from hf_mlcls.data.images import open_rgb_tensor


@pytest.mark.parametrize("kind", ["rgb", "png", "gray", "palette", "cmyk", "gray16", "rgba", "la"])
def test_every_mode_becomes_rgb(tmp_path, kind):
    path = write_image(str(tmp_path / f"x.{kind}"), kind, seed=3)
    image = open_rgb(path)
    assert image.mode == "RGB" and image.size == (24, 24)
    assert check_image_file(path) is None


def test_16_bit_is_scaled_not_clipped(tmp_path):
    path = write_image(str(tmp_path / "g16.png"), "gray16", seed=3)
    source = np.asarray(PIL.Image.open(path)).astype(np.int64)
    got = np.asarray(open_rgb(path))[..., 0].astype(np.int64)
    np.testing.assert_array_equal(got, np.rint(source / 257.0))
    rgb48 = open_rgb(rgb16_png(4, 4, 40000))
    assert rgb48.mode == "RGB" and np.asarray(rgb48).max() == round(40000 / 257)


def test_float_and_int_modes():
    f = PIL.Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), mode="F")
    assert np.asarray(open_rgb(f)).max() == 255
    i = PIL.Image.fromarray(np.full((4, 4), 65535, dtype=np.int32), mode="I")
    assert np.asarray(open_rgb(i)).min() == 255
    small = PIL.Image.fromarray(np.full((4, 4), 100, dtype=np.int32), mode="I")
    assert np.asarray(open_rgb(small)).max() == 100


def test_alpha_is_composited_on_white(tmp_path):
    path = write_image(str(tmp_path / "a.png"), "rgba", seed=5)
    rgba = np.asarray(PIL.Image.open(path)).astype(np.float64)
    alpha = rgba[..., 3:] / 255
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)
    got = np.asarray(open_rgb(path)).astype(np.float64)
    assert np.abs(got - expected).max() <= 1  # PIL's integer rounding
    opaque, clear = alpha[..., 0] == 1, alpha[..., 0] == 0
    np.testing.assert_array_equal(got[opaque], rgba[..., :3][opaque])
    assert (got[clear] == 255).all()


def test_sources_bytes_and_storage_dict(tmp_path):
    path = write_image(str(tmp_path / "a.png"), "png", seed=1)
    data = open(path, "rb").read()
    ref = np.asarray(open_rgb(path))
    np.testing.assert_array_equal(np.asarray(open_rgb(data)), ref)
    np.testing.assert_array_equal(np.asarray(open_rgb({"bytes": data, "path": "ignored.png"})), ref)
    np.testing.assert_array_equal(np.asarray(open_rgb({"bytes": None, "path": path})), ref)


def test_draft_decoding_keeps_at_least_the_target(tmp_path):
    path = str(tmp_path / "big.jpg")
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)).save(path)
    assert open_rgb(path, draft_size=(100, 100)).size == (150, 100)  # 1/4 scale
    assert open_rgb(path, draft_size=(300, 300)).size == (600, 400)  # no 1/2 fits
    assert open_rgb(path).size == (600, 400)


@pytest.mark.parametrize(
    "kind, reason",
    [("empty", "empty"), ("corrupt", "corrupt"), ("truncated", "truncated")],
)
def test_check_reasons(tmp_path, kind, reason):
    path = write_image(str(tmp_path / "bad.jpg"), kind)
    assert check_image_file(path).startswith(reason)
    assert check_image_file(path, "exists") == (None if kind != "empty" else "empty")
    with pytest.raises(ImageOpenError, match="bad.jpg"):
        open_rgb(path)


def test_check_missing_and_truncated_png(tmp_path):
    assert check_image_file(str(tmp_path / "nope.jpg")) == "missing"
    assert check_image_file(str(tmp_path)) == "not a file"
    path = write_image(str(tmp_path / "t.png"), "png")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) - 30])
    assert check_image_file(path) is not None
    assert check_image_file(path, "none") is None


@pytest.mark.parametrize("kind", ["rgb", "png", "gray", "palette", "cmyk", "gray16", "rgba", "la"])
def test_tensor_opening_gives_open_rgb_pixels(tmp_path, kind):
    path = write_image(str(tmp_path / f"x.{kind}"), kind, seed=4, size=37)
    expected = np.asarray(open_rgb(path))
    for source in (path, open(path, "rb").read(), {"bytes": None, "path": path}, PIL.Image.open(path)):
        x = open_rgb_tensor(source)
        assert x.dtype == torch.uint8 and x.shape == (3, 37, 37)
        np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("options", [dict(), dict(progressive=True), dict(subsampling=0), dict(subsampling=1)])
def test_tensor_opening_of_jpeg_variants(tmp_path, options):
    # torchvision's libjpeg-turbo decode must give PIL's pixels, whatever the JPEG flavour
    rng = np.random.default_rng(0)
    path = str(tmp_path / "v.jpg")
    PIL.Image.fromarray(rng.integers(0, 255, (45, 61, 3), dtype=np.uint8)).save(path, quality=85, **options)
    np.testing.assert_array_equal(open_rgb_tensor(path).permute(1, 2, 0).numpy(), np.asarray(open_rgb(path)))


def test_tensor_opening_draft_and_writable(tmp_path):
    path = str(tmp_path / "big.jpg")
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)).save(path)
    assert open_rgb_tensor(path, draft_size=(100, 100)).shape == (3, 100, 150)  # 1/4 scale, as open_rgb
    np.testing.assert_array_equal(
        open_rgb_tensor(path, draft_size=(100, 100)).permute(1, 2, 0).numpy(), np.asarray(open_rgb(path, (100, 100)))
    )
    assert open_rgb_tensor(path, draft_size=(300, 300)).shape == (3, 400, 600)
    image = PIL.Image.new("RGB", (4, 4), (9, 9, 9))
    x = open_rgb_tensor(image)
    x.zero_()  # a copy: the caller's image is untouched
    assert image.getpixel((0, 0)) == (9, 9, 9)


@pytest.mark.parametrize("kind", ["empty", "corrupt", "truncated"])
def test_tensor_opening_errors_name_the_file(tmp_path, kind):
    path = write_image(str(tmp_path / "bad.jpg"), kind)
    with pytest.raises(ImageOpenError, match="bad.jpg"):
        open_rgb_tensor(path)
    with pytest.raises(ImageOpenError, match="nope.jpg"):
        open_rgb_tensor(str(tmp_path / "nope.jpg"))
