import random
import types

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
import torch
from data_fixtures import make_coco, write_image

import datasets
from hf_mlcls.data import (
    Cutout,
    MultiLabelCollator,
    apply_transforms,
    build_eval_transform,
    build_train_transform,
    label_vector,
    load_multilabel_dataset,
    load_report,
    transforms_from_image_processor,
)
from hf_mlcls.data.transforms import OFFICIAL_RANDAUGMENT_OPS, build_randaugment

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("normalise", [False, True])
def test_eval_transform_equals_the_official_one(tmp_path, normalise):
    from torchvision import transforms as T

    path = write_image(str(tmp_path / "a.jpg"), "rgb", seed=2, size=37)
    steps = [T.Resize((20, 20)), T.ToTensor()] + ([T.Normalize(MEAN, STD)] if normalise else [])
    official = T.Compose(steps)(PIL.Image.open(path).convert("RGB"))
    ours = build_eval_transform(20, *( (MEAN, STD) if normalise else (None, None)))({"path": path, "bytes": None})
    assert ours.dtype == torch.float32 and ours.shape == (3, 20, 20)
    torch.testing.assert_close(ours, official, rtol=0, atol=0)


def _official_cutout_mask(size, cy, cx, factor=0.5):
    """The official recipe's hole for a given centre, drawn the way it draws it."""
    image = PIL.Image.new("L", (size, size), 0)
    side = int(factor * size + 0.5)
    y1, y2 = np.clip([cy - side // 2, cy + side // 2], 0, size)
    x1, x2 = np.clip([cx - side // 2, cx + side // 2], 0, size)
    PIL.ImageDraw.Draw(image).rectangle([int(x1), int(y1), int(x2), int(y2)], fill=255)
    return np.asarray(image) > 0


@pytest.mark.parametrize("size, factor", [(9, 0.5), (10, 0.5), (12, 0.3)])
def test_cutout_hole_matches_the_official_geometry(monkeypatch, size, factor):
    for cy in range(size):
        for cx in range(size):
            centres = iter([cy, cx])
            monkeypatch.setattr(random, "randrange", lambda n: next(centres))
            monkeypatch.setattr(random, "randint", lambda a, b: 200)
            out = np.asarray(Cutout(factor)(PIL.Image.new("RGB", (size, size), (0, 0, 0))))
            np.testing.assert_array_equal(out[..., 0] == 200, _official_cutout_mask(size, cy, cx, factor))


def test_cutout_colour_is_random():
    random.seed(0)
    colours = {Cutout(1.0)(PIL.Image.new("RGB", (8, 8))).getpixel((4, 4)) for _ in range(50)}  # always covers (4, 4)
    assert len(colours) > 40


def test_train_transform(tmp_path):
    path = write_image(str(tmp_path / "a.jpg"), "rgb", size=64)
    tf = build_train_transform(32, MEAN, STD)
    names = [op.name for op in tf.pil_augment[1].ops]
    assert isinstance(tf.pil_augment[0], Cutout) and "PosterizeOriginal" in names and len(names) == 14
    assert tf.pil_augment[1].num_layers == 2 and all(op.prob == 0.5 for op in tf.pil_augment[1].ops)
    random.seed(0), np.random.seed(0)
    a = tf(path)
    random.seed(0), np.random.seed(0)
    b = tf(path)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, build_eval_transform(32, MEAN, STD)(path))
    plain = build_train_transform(32, cutout=False, randaugment=False, draft=False)(path)
    torch.testing.assert_close(plain, build_eval_transform(32)(path))


def test_caller_image_is_not_painted():
    image = PIL.Image.new("RGB", (16, 16), (0, 0, 0))
    build_train_transform(16, randaugment=False)(image)
    assert image.getextrema() == ((0, 0), (0, 0), (0, 0))


def test_uint8_output_with_batch_normalisation(tmp_path):
    paths = [write_image(str(tmp_path / f"{i}.png"), "png", seed=i) for i in range(3)]
    float_rows = [{"pixel_values": build_eval_transform(16, MEAN, STD)(p), "labels": torch.zeros(2)} for p in paths]
    u8_rows = [{"pixel_values": build_eval_transform(16, uint8_output=True)(p), "labels": torch.zeros(2)} for p in paths]
    assert u8_rows[0]["pixel_values"].dtype == torch.uint8
    a = MultiLabelCollator()(float_rows)["pixel_values"]
    b = MultiLabelCollator(image_mean=MEAN, image_std=STD)(u8_rows)["pixel_values"]
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_from_image_processor():
    from transformers import ViTImageProcessor

    proc = ViTImageProcessor(size={"height": 48, "width": 40}, image_mean=MEAN, image_std=STD)
    tf = transforms_from_image_processor(proc, train=False)
    assert tf.size == (48, 40) and tf.image_mean == MEAN and not tf.pil_augment
    tf = transforms_from_image_processor(proc, train=True, cutout_factor=0.25)
    assert tf.pil_augment[0].factor == 0.25
    tresnet_like = types.SimpleNamespace(size={"shortest_edge": 64}, do_normalize=False, image_mean=MEAN, image_std=STD)
    tf = transforms_from_image_processor(tresnet_like, train=False)
    assert tf.size == (64, 64) and tf.image_mean is None


def test_label_vector():
    assert label_vector([0, 3], 5).tolist() == [1, 0, 0, 1, 0]
    assert label_vector([0], 4, unknown_labels=[2]).tolist() == [1, 0, -1, 0]
    assert label_vector([1], 4, negative_labels=[0]).tolist() == [0, 1, -1, -1]


def test_collator_from_index_lists():
    rows = [{"pixel_values": torch.zeros(3, 4, 4), "labels": [1], "unknown_labels": [0]},
            {"pixel_values": torch.zeros(3, 4, 4), "labels": []}]
    batch = MultiLabelCollator(num_classes=3)(rows)
    assert batch["labels"].tolist() == [[-1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="pass num_classes"):
        MultiLabelCollator()(rows)


@pytest.fixture(scope="module")
def coco_ds(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("coco"))
    make_coco(root, broken=False)
    return load_multilabel_dataset("coco2014", root)


def test_lazy_rows_and_unknowns(coco_ds):
    tds = apply_transforms(coco_ds, build_train_transform(16), build_eval_transform(16))
    row = tds["validation"][0]
    assert set(row) == {"pixel_values", "labels"}
    assert row["pixel_values"].shape == (3, 16, 16)
    assert row["labels"].tolist() == [1, 1, 0, 0, 0]
    # the stored dataset is untouched: still paths, still decodable by datasets
    assert isinstance(coco_ds["validation"][0]["image"], PIL.Image.Image)


def test_dataloader_with_workers(coco_ds):
    tds = apply_transforms(coco_ds, build_train_transform(16), build_eval_transform(16))
    loader = torch.utils.data.DataLoader(tds["train"], batch_size=2, num_workers=2, collate_fn=MultiLabelCollator())
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["pixel_values"].shape == (2, 3, 16, 16) and batches[0]["pixel_values"].dtype == torch.float32
    assert batches[0]["labels"].shape == (2, 5) and batches[0]["labels"].dtype == torch.float32
    labels = torch.cat([b["labels"] for b in batches])
    expected = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 0, 0, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.float32)
    torch.testing.assert_close(labels, expected)


def test_save_and_reload_keeps_names_and_report(coco_ds, tmp_path):
    coco_ds.save_to_disk(str(tmp_path / "saved"))
    back = datasets.load_from_disk(str(tmp_path / "saved"))
    assert back["train"].features == coco_ds["train"].features
    assert back["train"].features["labels"].feature.names == ["person", "bicycle", "car", "airplane", "fire hydrant"]
    assert load_report(back) == load_report(coco_ds)
    tds = apply_transforms(back, eval_transform=build_eval_transform(16), train_transform=build_eval_transform(16))
    torch.testing.assert_close(
        tds["validation"][1]["pixel_values"],
        apply_transforms(coco_ds, eval_transform=build_eval_transform(16))["validation"][1]["pixel_values"],
    )


# --- fast paths: each compared with the straightforward one -------------------------------

def _photo(size, seed=0):
    """A smooth image with edges and flat areas (where float rounding would show first)."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = PIL.Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((w, h), PIL.Image.BICUBIC)
    PIL.ImageDraw.Draw(image).rectangle([w // 4, h // 4, w // 2, h // 2], fill=(200, 30, 90))
    return image


def _op(ra, name):
    op = next(op for op in ra.ops if op.name == name)
    op.prob = 1.0
    return op


@pytest.mark.parametrize("name", ["ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "TranslateX", "TranslateY",
                                  "Sharpness"])
@pytest.mark.parametrize("size", [(64, 48), (31, 17), (3, 5), (1, 1)])
def test_fast_randaugment_ops_match_pil(name, size):
    ops = list(OFFICIAL_RANDAUGMENT_OPS) + ["TranslateX", "TranslateY"]
    slow, fast = _op(build_randaugment(ops=ops, fast=False), name), _op(build_randaugment(ops=ops, fast=True), name)
    assert fast.aug_fn is not slow.aug_fn
    image = _photo(size)
    worst, differing = 0, 0
    for seed in range(40):  # magnitudes, signs and bilinear / bicubic drawn by each seed
        random.seed(seed)
        a = np.asarray(slow(image)).astype(int)
        state = random.getstate()
        random.seed(seed)
        b = np.asarray(fast(image)).astype(int)
        assert random.getstate() == state  # the same random draws
        worst, differing = max(worst, np.abs(a - b).max()), differing + (a != b).sum()
    assert worst <= (0 if name == "Sharpness" else 1)
    assert differing <= 0.01 * 40 * image.size[0] * image.size[1] * 3


def test_fast_ops_fall_back_to_pil_where_they_do_not_apply():
    for name in ("ShearX", "TranslateYRel", "Sharpness"):
        slow, fast = _op(build_randaugment(fast=False), name), _op(build_randaugment(fast=True), name)
        for image in (_photo((20, 16)).convert("RGBA"),) + ((_photo((20, 16)).convert("L"),) if name == "Sharpness" else ()):
            random.seed(1)
            a = slow(image)
            random.seed(1)
            b = fast(image)
            assert a.mode == b.mode and a.tobytes() == b.tobytes()
        # other filters than bilinear / bicubic, and no fill colour
        for op in (slow, fast):
            op.kwargs = dict(resample=PIL.Image.NEAREST)
        random.seed(1)
        a = slow(_photo((20, 16)))
        random.seed(1)
        assert a.tobytes() == fast(_photo((20, 16))).tobytes()


def test_fast_randaugment_same_draws_same_images():
    images = [_photo((48, 48), seed) for seed in range(5)] + [_photo((33, 20), 9)]
    slow, fast = build_randaugment(fast=False), build_randaugment(fast=True)
    for seed in range(60):
        for image in images:
            random.seed(seed), np.random.seed(seed)
            a = np.asarray(slow(image)).astype(int)
            states = random.getstate(), np.random.get_state()[1].copy()
            random.seed(seed), np.random.seed(seed)
            b = np.asarray(fast(image)).astype(int)
            assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
            assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("kind", ["rgb", "png", "cmyk"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_torchvision_backend_eval_within_one_level(tmp_path, kind, interpolation):
    from torchvision import transforms as T

    path = write_image(str(tmp_path / f"a.{kind}"), kind, seed=3, size=57)
    resample = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                "nearest": T.InterpolationMode.NEAREST}[interpolation]
    for size in (20, 32):  # downscaling
        official = T.Compose([T.Resize((size, size), interpolation=resample), T.PILToTensor()])(
            PIL.Image.open(path).convert("RGB"))
        ours = build_eval_transform(size, uint8_output=True, interpolation=interpolation, backend="torchvision")(path)
        assert ours.dtype == torch.uint8 and ours.shape == (3, size, size) and ours.is_contiguous()
        worst = (ours.int() - official.int()).abs().max()
        assert worst <= (0 if interpolation == "nearest" else 1)
    floats = build_eval_transform(32, MEAN, STD, backend="torchvision")(path)
    exact = build_eval_transform(32, MEAN, STD)(path)
    assert floats.is_contiguous() and (floats - exact).abs().max() <= 1.01 / 255 / min(STD)


def test_torchvision_backend_train(tmp_path):
    path = write_image(str(tmp_path / "a.jpg"), "rgb", size=64)
    tv = build_train_transform(32, MEAN, STD, backend="torchvision", draft=False)
    pil = build_train_transform(32, MEAN, STD, draft=False)
    assert tv.backend == "torchvision" and "torchvision" in repr(tv)
    for seed in range(20):
        random.seed(seed), np.random.seed(seed)
        a = tv(path)
        random.seed(seed), np.random.seed(seed)
        b = pil(path)
        assert a.shape == b.shape == (3, 32, 32)
        # a 1-level resize difference may cross a Solarize / Posterize threshold: compare most values
        assert ((a - b).abs() > 1.01 / 255 / min(STD)).float().mean() < 0.02
    no_aug = build_train_transform(32, MEAN, STD, cutout=False, randaugment=False, backend="torchvision", draft=False)
    assert (no_aug(path) - build_eval_transform(32, MEAN, STD)(path)).abs().max() <= 1.01 / 255 / min(STD)
    image = PIL.Image.new("RGB", (16, 16), (0, 0, 0))
    build_train_transform(16, randaugment=False, backend="torchvision")(image)
    assert image.getextrema() == ((0, 0), (0, 0), (0, 0))
    with pytest.raises(ValueError, match="backend"):
        build_eval_transform(16, backend="cv2")


def test_collator_scales_uint8_image_by_image_with_the_batch_arithmetic():
    rows = [{"pixel_values": torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8), "labels": torch.zeros(2)}
            for _ in range(4)]
    batch = MultiLabelCollator(image_mean=MEAN, image_std=STD)(rows)["pixel_values"]
    stacked = torch.stack([r["pixel_values"] for r in rows]).float().div_(255)
    stacked.sub_(torch.tensor(MEAN).view(1, 3, 1, 1)).div_(torch.tensor(STD).view(1, 3, 1, 1))
    assert torch.equal(batch, stacked)
    plain = MultiLabelCollator()(rows)["pixel_values"]
    assert torch.equal(plain, torch.stack([r["pixel_values"] for r in rows]).float().div_(255))
