"""Builders of small datasets in each native on-disk layout, broken files included.

Each builder writes under a folder it is given and returns what the files encode
(class names, expected label matrices), so tests compare the loader with the fixture
and not with itself.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from typing import Optional, Sequence

import numpy as np
import PIL.Image


# ---------------------------------------------------------------- images


def _pixels(seed: int, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def write_image(path: str, kind: str = "rgb", seed: int = 0, size: int = 24) -> str:
    """Write one image file. ``kind``: rgb (JPEG), png, gray, palette, cmyk, gray16,
    rgba, la, truncated (a JPEG cut in half), corrupt (random bytes), empty."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    px = _pixels(seed, size)
    if kind == "rgb":
        PIL.Image.fromarray(px).save(path, format="JPEG", quality=90)
    elif kind == "png":
        PIL.Image.fromarray(px).save(path, format="PNG")
    elif kind == "gray":
        PIL.Image.fromarray(px[..., 0]).save(path, format="JPEG")
    elif kind == "palette":
        PIL.Image.fromarray(px).convert("P", palette=PIL.Image.ADAPTIVE, colors=16).save(path, format="PNG", transparency=0)
    elif kind == "cmyk":
        PIL.Image.fromarray(px).convert("CMYK").save(path, format="JPEG")
    elif kind == "gray16":
        PIL.Image.fromarray(px[..., 0].astype(np.uint16) * 257).save(path, format="PNG")
    elif kind == "rgba":
        PIL.Image.fromarray(np.dstack([px, px[..., :1]])).save(path, format="PNG")
    elif kind == "la":
        PIL.Image.fromarray(px[..., :2].copy(), mode="LA").save(path, format="PNG")
    elif kind == "truncated":
        buf = io.BytesIO()
        PIL.Image.fromarray(_pixels(seed, 64)).save(buf, format="JPEG", quality=95)
        data = buf.getvalue()
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
    elif kind == "corrupt":
        with open(path, "wb") as fh:
            fh.write(b"this is not an image at all" * 10)
    elif kind == "empty":
        open(path, "wb").close()
    else:
        raise ValueError(kind)
    return path


def rgb16_png(width: int, height: int, value: int) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one)."""
    raw = b"".join(b"\x00" + np.full((width, 3), value, ">u2").tobytes() for _ in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def multi_hot(rows: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    out = np.zeros((len(rows), num_classes), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, list(r)] = 1
    return out


# ---------------------------------------------------------------- COCO

COCO_CATS = [(1, "person"), (2, "bicycle"), (3, "car"), (5, "airplane"), (11, "fire hydrant")]


def make_coco(root: str, year: int = 2014, broken: bool = True) -> dict:
    """A COCO folder with 5 categories (ids with gaps, listed out of order).

    val: 6 images; image 13 has no annotation, image 14's file is missing (if
    ``broken``), 15 is empty, 16 truncated; annotations repeat categories and include
    a crowd one. Returns the expected labels per split for both protocols.
    """
    cats = [{"id": i, "name": n, "supercategory": "x"} for i, n in reversed(COCO_CATS)]
    index = {cid: k for k, (cid, _) in enumerate(COCO_CATS)}
    splits = {
        "train": {
            1: [1, 1, 3],
            2: [2],
            3: [11, 5, 1],
            4: [3],
        },
        "val": {
            10: [1, 2],
            11: [5, 5, 5],
            12: [11],
            13: [],
            14: [3],
            15: [1],
            16: [2, 3],
        },
    }
    kinds = {14: "missing", 15: "empty", 16: "truncated"} if broken else {}
    expected = {}
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, imgs in splits.items():
        native = f"{split}{year}"
        images, anns = [], []
        aid = 100 if split == "train" else 500
        for image_id, cat_ids in imgs.items():
            name = f"COCO_{native}_{image_id:012d}.jpg"
            kind = kinds.get(image_id, "rgb")
            if kind != "missing":
                write_image(os.path.join(root, native, name), kind, seed=image_id)
            images.append({"id": image_id, "file_name": name, "width": 24, "height": 24})
            for j, c in enumerate(cat_ids):
                aid += 1
                anns.append({"id": aid, "image_id": image_id, "category_id": c, "bbox": [0, 0, 4, 4], "area": 16.0,
                             "iscrowd": 1 if (image_id == 3 and j == 0) else 0, "segmentation": [[0, 0, 4, 0, 4, 4]]})
        # annotations out of image order, as in the real files
        anns = anns[::-1]
        with open(os.path.join(root, "annotations", f"instances_{native}.json"), "w") as fh:
            json.dump({"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}, fh, indent=1)
        ours = "train" if split == "train" else "validation"
        good = [i for i in imgs if i not in kinds]
        expected[ours] = {
            "ids": good,
            "all": [sorted({index[c] for c in imgs[i]}) for i in good],
            "nonempty_ids": [i for i in good if imgs[i]],
        }
    expected["names"] = [n for _, n in COCO_CATS]
    expected["skipped"] = {"validation": {"missing": 1, "empty": 1, "truncated": 1} if broken else {}}
    return expected


# ---------------------------------------------------------------- VOC


def _voc_xml(filename: str, objects: Sequence[tuple[str, int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        for n, d in objects
    )
    return f"<annotation><folder>VOC</folder><filename>{filename}</filename><size><width>24</width><height>24</height><depth>3</depth></size>{objs}</annotation>"


VOC_SPLITS = {
    "train": {
        "000005": [("chair", 0), ("chair", 1), ("person", 0)],
        "000007": [("car", 0)],
        "000009": [("horse", 0), ("person", 1)],  # person difficult only -> unknown
    },
    "val": {
        "000012": [("car", 0), ("tvmonitor", 1), ("tvmonitor", 1)],
        "000016": [("bicycle", 0)],
    },
    "test": {
        "000001": [("dog", 0), ("person", 0)],
        "000002": [("train", 1)],
    },
}


def make_voc(root: str, year: int = 2007, with_test: bool = True, nested: bool = True) -> str:
    voc = os.path.join(root, "VOCdevkit", f"VOC{year}") if nested else root
    for d in ("Annotations", os.path.join("ImageSets", "Main"), "JPEGImages"):
        os.makedirs(os.path.join(voc, d), exist_ok=True)
    for split, items in VOC_SPLITS.items():
        if split == "test" and not with_test:
            continue
        with open(os.path.join(voc, "ImageSets", "Main", f"{split}.txt"), "w") as fh:
            fh.write("".join(f"{i}\n" for i in items))
        for image_id, objs in items.items():
            with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as fh:
                fh.write(_voc_xml(image_id + ".jpg", objs))
            write_image(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), "rgb", seed=int(image_id))
    return voc


def voc_expected(split: str, difficult_as_positive: bool = False):
    from hf_mlcls.data import VOC_CLASSES

    idx = {c: i for i, c in enumerate(VOC_CLASSES)}
    labels, unknown = [], []
    for objs in VOC_SPLITS[split].values():
        pos = {idx[n] for n, d in objs if not d or difficult_as_positive}
        hard = {idx[n] for n, d in objs if d} - pos
        labels.append(sorted(pos))
        unknown.append(sorted(hard) if not difficult_as_positive else [])
    return labels, unknown


# ---------------------------------------------------------------- NUS-WIDE

NUS_CONCEPTS = ["airport", "animal", "beach", "sky"]
NUS_TRAIN = [("actor/0001_1.jpg", [1, 3]), ("actor/0002_2.jpg", []), ("beach/0003_3.jpg", [2, 3]), ("beach/0004_4.jpg", [0])]
NUS_TEST = [("sky/0005_5.jpg", [3]), ("sky/0006_6.jpg", [0, 1, 2, 3])]
NUS_MISSING = {"beach/0004_4.jpg"}  # a dead Flickr link: never downloaded


def make_nus_official(root: str, concepts_in_subdir: bool = False) -> None:
    if concepts_in_subdir:
        os.makedirs(os.path.join(root, "ConceptsList"), exist_ok=True)
        cpath = os.path.join(root, "ConceptsList", "Concepts81.txt")
    else:
        os.makedirs(root, exist_ok=True)
        cpath = os.path.join(root, "Concepts81.txt")
    with open(cpath, "w") as fh:
        fh.write("\n".join(NUS_CONCEPTS) + "\n")
    os.makedirs(os.path.join(root, "ImageList"), exist_ok=True)
    os.makedirs(os.path.join(root, "TrainTestLabels"), exist_ok=True)
    for nat, rows in (("Train", NUS_TRAIN), ("Test", NUS_TEST)):
        with open(os.path.join(root, "ImageList", f"{nat}Imagelist.txt"), "w") as fh:
            for k, (p, _) in enumerate(rows):
                # the release uses Windows separators; one line keeps the absolute prefix
                win = p.replace("/", "\\")
                fh.write((f"C:\\ImageData\\Flickr\\{win}" if k == 0 else win) + "\r\n")
        for j, concept in enumerate(NUS_CONCEPTS):
            with open(os.path.join(root, "TrainTestLabels", f"Labels_{concept}_{nat}.txt"), "w") as fh:
                fh.write("".join(f"{1 if j in labs else 0}\n" for _, labs in rows))
        for k, (p, _) in enumerate(rows):
            if p not in NUS_MISSING:
                write_image(os.path.join(root, "Flickr", p), "rgb", seed=k)


def make_nus_csv(root: str) -> None:
    os.makedirs(root, exist_ok=True)
    lines = ["image_path,tags,split"]
    for split, rows in (("train", NUS_TRAIN), ("val", NUS_TEST)):
        for k, (p, labs) in enumerate(rows):
            names = ", ".join(f"'{NUS_CONCEPTS[j]}'" for j in labs)
            lines.append(f'images/{p},"[{names}]",{split}')
            if p not in NUS_MISSING:
                write_image(os.path.join(root, "images", p), "rgb", seed=k)
    with open(os.path.join(root, "data.csv"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- Open Images

OI_CLASSES = [("/m/01", "Cat"), ("/m/02", "Dog"), ("/m/03", "Car"), ("/m/04", "Tree"), ("/m/05", "Bank"), ("/m/06", "Bank")]
OI_TRAINABLE = ["/m/02", "/m/01", "/m/04", "/m/05", "/m/06"]  # /m/03 (Car) is not trainable
OI_TRAIN = [
    # ImageID, LabelName, Confidence
    ("000a1", "/m/01", 1), ("000a1", "/m/02", 0), ("000a1", "/m/03", 1),
    ("000b2", "/m/04", 1), ("000b2", "/m/04", 1), ("000b2", "/m/05", 0),
    ("000c3", "/m/02", 0),
    ("000d4", "/m/06", 1), ("000a1", "/m/04", 0),
]
OI_VAL = [("100a1", "/m/02", 1), ("100b2", "/m/01", 0), ("100b2", "/m/02", 1)]


def make_openimages(root: str, missing_image: Optional[str] = "000c3") -> None:
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "oidv6-class-descriptions.csv"), "w") as fh:
        fh.write("LabelName,DisplayName\n" + "".join(f"{m},{n}\n" for m, n in OI_CLASSES))
    with open(os.path.join(root, "oidv6-classes-trainable.txt"), "w") as fh:
        fh.write("\n".join(OI_TRAINABLE) + "\n")
    for fname, split, rows in (("oidv6-train-annotations-human-imagelabels.csv", "train", OI_TRAIN),
                               ("validation-annotations-human-imagelabels.csv", "validation", OI_VAL)):
        with open(os.path.join(root, fname), "w") as fh:
            fh.write("ImageID,Source,LabelName,Confidence\n")
            fh.write("".join(f"{i},verification,{m},{c}\n" for i, m, c in rows))
        for k, image_id in enumerate(dict.fromkeys(i for i, _, _ in rows)):
            if image_id != missing_image:
                write_image(os.path.join(root, split, f"{image_id}.jpg"), "rgb", seed=k)


# ---------------------------------------------------------------- csv / jsonl

GENERIC_CLASSES = ["cat", "dog", "traffic light"]
GENERIC_ROWS = {
    "train": [("img/a.jpg", ["cat"]), ("img/b.png", ["dog", "traffic light"]), ("img/c.jpg", []),
              ("img/d.jpg", ["cat", "dog"])],
    "validation": [("img/e.jpg", ["traffic light"]), ("img/f.jpg", ["dog"])],
}


def make_generic_images(root: str) -> None:
    for rows in GENERIC_ROWS.values():
        for k, (p, _) in enumerate(rows):
            write_image(os.path.join(root, p), "png" if p.endswith(".png") else "rgb", seed=k)


def make_csv(root: str, sep: str = "|", val_name: str = "validation.csv") -> None:
    os.makedirs(root, exist_ok=True)
    make_generic_images(root)
    for split, rows in GENERIC_ROWS.items():
        fname = "train.csv" if split == "train" else val_name
        with open(os.path.join(root, fname), "w") as fh:
            fh.write("image,labels\n")
            fh.write("".join(f'{p},"{sep.join(labs)}"\n' for p, labs in rows))


def make_jsonl(root: str, as_indices: bool = False) -> None:
    os.makedirs(root, exist_ok=True)
    make_generic_images(root)
    for split, rows in GENERIC_ROWS.items():
        with open(os.path.join(root, f"{split}.jsonl"), "w") as fh:
            for p, labs in rows:
                value = [GENERIC_CLASSES.index(n) for n in labs] if as_indices else labs
                fh.write(json.dumps({"image": p, "labels": value}) + "\n")


def generic_expected(split: str, classes: Sequence[str]) -> np.ndarray:
    idx = {c: i for i, c in enumerate(classes)}
    return multi_hot([[idx[n] for n in labs] for _, labs in GENERIC_ROWS[split]], len(classes))
