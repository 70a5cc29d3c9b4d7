"""Draw the Space's example images (no downloads): `python spaces/make_examples.py`.

- Three drawn scenes (street, park, beach), deterministic, a few KB each. They show how the app works;
  a model trained on photographs will not find much in drawings, so upload your own photos for real results.
- Three digit mosaics from the demo set's validation split (`hf_mlcls.data.generate_demo_dataset`,
  unseen handwriting), for the demo model (`outputs/demo`).

`examples/examples.json` records what each image shows; the app offers a model the examples that show
one of its labels (see `hf_mlcls.space.examples`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

W, H = 384, 288
OUT = Path(__file__).resolve().parent / "examples"


def _gradient(top, bottom, height=H):
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    rows = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return Image.fromarray(np.repeat(rows, W, axis=1).astype(np.uint8))


def _tree(draw, x, ground, size):
    draw.rectangle([x - size // 10, ground - size, x + size // 10, ground], fill=(101, 67, 33))
    for dy, r in ((size, size // 2), (int(size * 1.35), int(size * 0.4))):
        draw.ellipse([x - r, ground - dy - r, x + r, ground - dy + r], fill=(34, 120, 50))


def _car(draw, x, y, color):
    draw.rounded_rectangle([x, y - 28, x + 110, y], radius=8, fill=color)
    draw.polygon([(x + 22, y - 28), (x + 38, y - 50), (x + 78, y - 50), (x + 94, y - 28)], fill=color)
    draw.polygon([(x + 30, y - 30), (x + 42, y - 46), (x + 56, y - 46), (x + 56, y - 30)], fill=(190, 225, 245))
    draw.polygon([(x + 60, y - 30), (x + 60, y - 46), (x + 75, y - 46), (x + 86, y - 30)], fill=(190, 225, 245))
    for wx in (x + 24, x + 86):
        draw.ellipse([wx - 13, y - 13, wx + 13, y + 13], fill=(30, 30, 30))
        draw.ellipse([wx - 6, y - 6, wx + 6, y + 6], fill=(160, 160, 160))


def street() -> Image.Image:
    img = _gradient((120, 180, 240), (215, 235, 250))
    draw = ImageDraw.Draw(img)
    for i, (h, c) in enumerate(((150, (180, 90, 70)), (190, (200, 200, 190)), (120, (110, 130, 160)), (170, (220, 170, 120)))):
        x0 = 10 + i * 95
        draw.rectangle([x0, 210 - h, x0 + 85, 210], fill=c)
        for wy in range(220 - h, 200, 24):
            for wx in range(x0 + 10, x0 + 75, 22):
                draw.rectangle([wx, wy, wx + 12, wy + 14], fill=(250, 240, 190))
    draw.rectangle([0, 210, W, H], fill=(70, 70, 75))
    for x in range(0, W, 48):
        draw.rectangle([x, 246, x + 26, 250], fill=(240, 240, 240))
    _car(draw, 60, 262, (200, 40, 40))
    _car(draw, 220, 240, (40, 90, 200))
    return img


def park() -> Image.Image:
    img = _gradient((90, 160, 235), (200, 225, 245))
    draw = ImageDraw.Draw(img)
    draw.ellipse([300, 24, 350, 74], fill=(255, 220, 80))
    draw.rectangle([0, 190, W, H], fill=(90, 170, 70))
    for x, s in ((50, 70), (130, 55), (330, 80)):
        _tree(draw, x, 200, s)
    draw.rectangle([180, 222, 280, 230], fill=(120, 80, 40))  # bench
    draw.rectangle([186, 230, 192, 250], fill=(80, 60, 40))
    draw.rectangle([268, 230, 274, 250], fill=(80, 60, 40))
    draw.ellipse([205, 245, 245, 268], fill=(150, 100, 60))  # a dog, more or less
    draw.ellipse([238, 236, 258, 256], fill=(150, 100, 60))
    return img.filter(ImageFilter.SMOOTH)


def beach() -> Image.Image:
    img = _gradient((250, 170, 120), (255, 225, 170), 150)
    canvas = Image.new("RGB", (W, H))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.ellipse([160, 95, 240, 175], fill=(255, 120, 60))
    draw.rectangle([0, 140, W, 205], fill=(40, 110, 170))
    for y in range(150, 200, 12):
        draw.line([(0, y), (W, y + 3)], fill=(80, 150, 200), width=2)
    draw.rectangle([0, 200, W, H], fill=(235, 210, 150))
    draw.pieslice([40, 170, 160, 260], 180, 360, fill=(220, 50, 80))  # umbrella
    draw.rectangle([98, 215, 102, 275], fill=(90, 60, 40))
    draw.polygon([(250, 150), (330, 150), (300, 120)], fill=(250, 250, 250))  # a sail
    draw.rectangle([255, 150, 325, 160], fill=(120, 70, 40))
    return canvas.filter(ImageFilter.SMOOTH)


SCENES = {
    "beach.jpg": ["beach", "sea", "sky", "sun", "umbrella", "boat"],
    "park.jpg": ["park", "tree", "grass", "sky", "sun", "bench", "dog"],
    "street.jpg": ["street", "road", "building", "sky", "car"],
}


def digit_mosaics(count: int = 3) -> dict[str, list[str]]:
    """The first `count` validation mosaics with two or more digits, saved as PNG: file name -> digit names."""
    from hf_mlcls.data import generate_demo_dataset

    shows = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(generate_demo_dataset(str(Path(tmp) / "demo"), num_train=1, num_validation=40, seed=7))
        coco = json.loads((folder / "annotations" / "instances_val2017.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        labels: dict[int, list[str]] = {}
        for ann in coco["annotations"]:
            labels.setdefault(ann["image_id"], []).append(names[ann["category_id"]])
        for image in coco["images"]:
            found = sorted(set(labels.get(image["id"], [])), key=list(names.values()).index)
            if len(found) < 2:
                continue
            name = f"digits-{len(shows) + 1}.png"
            Image.open(folder / "val2017" / image["file_name"]).convert("RGB").save(OUT / name, optimize=True)
            shows[name] = found
            if len(shows) == count:
                break
    return shows


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, make in (("street", street), ("park", park), ("beach", beach)):
        make().save(OUT / f"{name}.jpg", quality=82, optimize=True)
    manifest = {"images": dict(SCENES, **digit_mosaics()), "default": sorted(SCENES)}
    (OUT / "examples.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
