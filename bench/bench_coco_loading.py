"""Time and peak memory of loading a COCO-sized annotation file into a DatasetDict:
hf_mlcls's COCO loader against pycocotools + ``datasets.Dataset.from_dict``.

    pip install pycocotools        # bench-only dependency, not in setup.cfg
    python bench/bench_coco_loading.py                  # 120,000 images, 850,000 objects
    python bench/bench_coco_loading.py --images 12000 --objects 85000   # a quick run

The annotation file is generated with a fixed seed in the layout and field set of
``instances_train2017.json`` (80 categories with COCO's id gaps, a 16-point polygon,
bbox, area, iscrowd per object; objects drawn over images at random, so ~0.1 % of the
images have none, as in COCO). No image files are written: both sides skip the image
check (``verify_images=False`` for ours), so only annotation parsing and dataset
building are timed.

Each contender runs in a fresh process (so peak RSS is its own), ``--repeat`` times,
alternating, with the file already in the page cache; the table shows the best time
and the largest peak. "load memory" is peak RSS minus the RSS after imports. The
reference builds exactly the same rows (checked by a digest of paths and labels):

    coco = COCO(annotation_file)
    for each image id: sorted class indices of the categories of coco.imgToAnns[id]
    Dataset.from_dict({"image": paths, "labels": labels}, features=<same features>)

"ours (stdlib json)" is our loader with ``orjson`` made unimportable, since the loader
uses ``orjson`` only when it is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Fragment  # noqa: E402

# COCO's 80 category ids (1..90 with gaps)
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def generate(path: str, num_images: int, num_objects: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    images = [
        {"license": int(rng.integers(1, 9)), "file_name": f"{i:012d}.jpg",
         "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg",
         "height": 480, "width": 640, "date_captured": "2013-11-14 11:18:45",
         "flickr_url": f"http://farm3.staticflickr.com/2/{i}_x.jpg", "id": i}
        for i in range(1, num_images + 1)
    ]
    weights = 1.0 / np.arange(1, 81) ** 0.8  # a few frequent classes (like "person"), a long tail
    cats = rng.choice(COCO_IDS, size=num_objects, p=weights / weights.sum())
    owners = rng.integers(1, num_images + 1, size=num_objects)
    poly = np.round(rng.uniform(0, 640, size=(num_objects, 32)), 2)
    boxes = np.round(rng.uniform(0, 300, size=(num_objects, 4)), 2)
    annotations = [
        {"segmentation": [poly[k].tolist()], "area": float(round(boxes[k, 2] * boxes[k, 3], 3)), "iscrowd": 0,
         "image_id": int(owners[k]), "bbox": boxes[k].tolist(), "category_id": int(cats[k]), "id": k + 1}
        for k in range(num_objects)
    ]
    categories = [{"supercategory": "thing", "id": c, "name": f"class_{c}"} for c in COCO_IDS]
    data = {"info": {"description": "generated for bench_coco_loading"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}
    with open(path, "wb") as fh:
        try:
            import orjson

            fh.write(orjson.dumps(data))
        except ImportError:
            fh.write(json.dumps(data).encode())


def _status_kib(field: str) -> int:
    # VmHWM (peak RSS) belongs to the process image, so unlike ru_maxrss it does not
    # carry the parent's peak over fork + exec.
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")


def _digest(paths, labels) -> str:
    h = hashlib.sha256()
    for p, lab in zip(paths, labels):
        h.update(os.path.basename(p).encode())
        h.update(bytes(lab))
    return h.hexdigest()


def run_one(which: str, root: str) -> dict:
    """Runs inside a fresh process; returns the measurements."""
    import datasets

    ann = os.path.join(root, "annotations", "instances_bench.json")
    if which == "ours_stdlib":
        sys.modules["orjson"] = None  # make `import orjson` fail inside the loader
    if which.startswith("ours"):
        from hf_mlcls.data.coco import load_coco
    else:
        from pycocotools.coco import COCO
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    if which.startswith("ours"):
        dd = load_coco(root, splits={"validation": "bench"}, verify_images=False)
    else:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
            coco = COCO(ann)
        cat_ids = sorted(coco.getCatIds())
        index = {c: k for k, c in enumerate(cat_ids)}
        names = [coco.cats[c]["name"] for c in cat_ids]
        image_dir = os.path.join(root, "bench")
        paths, labels = [], []
        for image_id in coco.getImgIds():
            paths.append(os.path.join(image_dir, coco.imgs[image_id]["file_name"]))
            labels.append(sorted({index[a["category_id"]] for a in coco.imgToAnns[image_id]}))
        features = datasets.Features({"image": datasets.Image(), "labels": datasets.List(datasets.ClassLabel(names=names))})
        dd = datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"image": paths, "labels": labels}, features=features)})
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    ds = dd["validation"]
    raw = ds.cast_column("image", datasets.Image(decode=False)).data
    paths = [s["path"] for s in raw.column("image").to_pylist()]
    return {"seconds": seconds, "peak_mib": peak / 1024, "load_mib": (peak - base) / 1024, "rows": ds.num_rows,
            "digest": _digest(paths, ds["labels"]), "names": ds.features["labels"].feature.names[:3]}


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("orjson", "pycocotools", "datasets"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=120_000)
    ap.add_argument("--objects", type=int, default=850_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", help="folder for the generated COCO layout, kept and reused by later runs "
                    "(default: a temporary folder)")
    ap.add_argument("--results", default="coco_loading",
                    help="name of the results fragment: bench/results/NAME.md, for python bench/write_docs.py")
    ap.add_argument("--_run", help=argparse.SUPPRESS)
    ap.add_argument("--_root", help=argparse.SUPPRESS)
    ap.add_argument("--_generate", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._generate:
        generate(args._generate, args.images, args.objects)
        return 0
    if args._run:
        print(json.dumps(run_one(args._run, args._root)))
        return 0

    try:
        import pycocotools  # noqa: F401
    except ImportError:
        print("pycocotools is needed for the reference: pip install pycocotools", file=sys.stderr)
        return 1
    tmp = None
    root = args.keep
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_coco_")
        root = tmp.name
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "bench"), exist_ok=True)
    ann = os.path.join(root, "annotations", "instances_bench.json")
    stamp = os.path.join(root, "bench_params.json")
    params = {"images": args.images, "objects": args.objects, "seed": 0}
    if args.keep and os.path.isfile(ann) and os.path.isfile(stamp) and json.load(open(stamp)) == params:
        print(f"reusing {ann} ({args.images:,} images / {args.objects:,} objects)", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        # in a child process, so this process stays small while the contenders run
        subprocess.run([sys.executable, __file__, "--_generate", ann, "--images", str(args.images),
                        "--objects", str(args.objects)], check=True)
        with open(stamp, "w") as fh:
            json.dump(params, fh)
        print(f"generated {args.images:,} images / {args.objects:,} objects: {ann} "
              f"({os.path.getsize(ann) / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    with open(ann, "rb") as fh:  # into the page cache before anything is timed
        while fh.read(1 << 24):
            pass

    report = Fragment(args.results)
    contenders = ["ours", "ours_stdlib", "pycocotools"]
    results: dict[str, list[dict]] = {c: [] for c in contenders}
    for _ in range(args.repeat):
        for c in contenders:
            out = subprocess.run([sys.executable, __file__, "--_run", c, "--_root", root],
                                 check=True, capture_output=True, text=True)
            results[c].append(json.loads(out.stdout.strip().splitlines()[-1]))
    digests = {r["digest"] for rs in results.values() for r in rs}
    if len(digests) != 1:
        print("MISMATCH: the loaders built different rows", file=sys.stderr)
        return 1

    best = {c: min(r["seconds"] for r in rs) for c, rs in results.items()}
    peak = {c: max(r["peak_mib"] for r in rs) for c, rs in results.items()}
    load = {c: max(r["load_mib"] for r in rs) for c, rs in results.items()}
    label = {"ours": "hf_mlcls load_coco (orjson)", "ours_stdlib": "hf_mlcls load_coco (stdlib json)",
             "pycocotools": "pycocotools COCO + Dataset.from_dict"}
    report.add(f"{args.images:,} images / {args.objects:,} objects ({os.path.getsize(ann) / 1e6:.0f} MB); "
               f"{_versions()}; each contender in a fresh process, {args.repeat} rounds alternating; best time, "
               f"largest memory; rows: {results['ours'][0]['rows']:,} (identical on every side, checked by a digest).")
    report.add()
    table = report.table(["loader", "time (s)", "peak RSS (MiB)", "load memory (MiB)", "speed vs pycocotools"])
    for c in contenders:
        table.add(label[c], f"{best[c]:.2f}", f"{peak[c]:,.0f}", f"{load[c]:,.0f}",
                  f"{best['pycocotools'] / best[c]:.2f}x faster")
    report.add()
    report.add(f"Memory ratio (load memory, pycocotools / ours with orjson): {load['pycocotools'] / load['ours']:.2f}.")
    report.write()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
