"""Train / eval image transforms of the official recipes, applied lazily with
``with_transform``.

Both official pipelines are: square resize to the model's size (no crop) → Cutout (one
hole, half the side, random colour) → RandAugment → ``[0, 1]`` tensor → (optional)
normalisation; evaluation is resize → tensor → normalisation. Here:

- the resize is PIL bilinear, the same call torchvision's ``Resize`` makes on a PIL
  image, so the eval transform gives the official tensors bit for bit;
- :class:`Cutout` is written here (no library has this variant: a random-colour fill
  and a hole of a fixed fraction of the image side);
- RandAugment is timm's, configured to the distribution of the ``randaugment`` package
  both official trainings import (2 ops, each applied with probability 0.5, magnitude
  uniform over the whole range, the same op families and ranges);
- decoding goes through :func:`hf_mlcls.data.images.open_rgb` (any mode → RGB); the
  train transform lets a JPEG decode at a reduced scale when the target is at most
  half its size (``draft``), which is cheap and changes only the downscale filter.

Speed (measured in ``bench/bench_data.py``, numbers in ``docs/benchmarks.md``):

- RandAugment's shear / translate ops and Sharpness run through NumPy versions of PIL's
  own arithmetic (:func:`build_randaugment`, ``fast=True``, the default): same random
  draws, same sampling positions, border and fill rules, the same bilinear and
  (a = -1) bicubic kernels and truncation; an output value differs from PIL's by at
  most 1 (float32 against PIL's double), Sharpness not at all. PIL is used for all
  other ops, for non-RGB images and for other resampling filters.
- ``backend="torchvision"`` decodes JPEGs with libjpeg-turbo straight into a uint8
  tensor (the same pixels PIL decodes) and resizes that tensor with torchvision's
  antialiased uint8 kernel (Pillow's algorithm; a value differs from PIL's resize by at
  most 1 when downscaling, 2 when upscaling, on a small fraction of values). Cutout and
  RandAugment still see a PIL image, so the augmentation draws are unchanged.
  ``backend="pil"`` (the default) keeps the eval transform bit-exact with the
  official one.
- A batch of rows (the DataLoader asks ``datasets`` for a whole batch at once) goes through
  :meth:`ImageTransform.batch`: every image is written straight into its row of one batch
  tensor, which :class:`~hf_mlcls.data.collate.MultiLabelCollator` then takes as the batch,
  instead of one fresh tensor per image copied again into a fresh stacked batch. Same values.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import datasets
import numpy as np
import PIL.Image
import torch

from .images import open_rgb, open_rgb_tensor

__all__ = [
    "BACKENDS",
    "OFFICIAL_RANDAUGMENT_OPS",
    "Cutout",
    "ImageTransform",
    "MultiLabelBatchTransform",
    "apply_transforms",
    "build_eval_transform",
    "build_randaugment",
    "build_train_transform",
    "label_vector",
    "transforms_from_image_processor",
]

from .randaugment import OFFICIAL_RANDAUGMENT_CONFIG, OFFICIAL_RANDAUGMENT_OPS, build_randaugment  # noqa: F401


_INTERPOLATION = {"bilinear": PIL.Image.BILINEAR, "bicubic": PIL.Image.BICUBIC, "nearest": PIL.Image.NEAREST}

#: Where decoding and resizing happen: ``"pil"`` (PIL, the official pipeline's calls) or
#: ``"torchvision"`` (libjpeg-turbo decode into a tensor, torchvision's uint8 resize).
BACKENDS = ("pil", "torchvision")


def _size(image_size: Union[int, Sequence[int]]) -> tuple[int, int]:
    """(height, width)."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    h, w = image_size
    return int(h), int(w)


class Cutout:
    """Paint one rectangle of a random colour over a PIL image, in place.

    The hole is ``round(factor * side)`` wide on each axis, its centre uniform over the
    pixels, clipped at the borders (so holes near an edge are smaller), the colour
    uniform over RGB: the distribution of the official recipes' Cutout.
    """

    def __init__(self, factor: float = 0.5):
        if not 0 < factor <= 1:
            raise ValueError(f"cutout factor must be in (0, 1], got {factor}")
        self.factor = factor

    def __call__(self, image: PIL.Image.Image) -> PIL.Image.Image:
        width, height = image.size
        half_h = int(self.factor * height + 0.5) // 2
        half_w = int(self.factor * width + 0.5) // 2
        cy, cx = random.randrange(height), random.randrange(width)
        box = (max(0, cx - half_w), max(0, cy - half_h), min(width, cx + half_w + 1), min(height, cy + half_h + 1))
        colour = (random.randint(0, 255), random.randint(0, 255), random.randint(0, 255))
        image.paste(colour, box)
        return image

    def __repr__(self) -> str:
        return f"Cutout(factor={self.factor})"


class ImageTransform:
    """Image source (PIL image, path, bytes or ``{"path", "bytes"}``) → (3, H, W) tensor.

    Steps: open as RGB (JPEG draft decoding when ``draft``) → resize to ``size`` →
    ``pil_augment`` (Cutout, RandAugment) → uint8 tensor → float in [0, 1] →
    ``(x - mean) / std`` when ``mean``/``std`` are given. ``uint8_output=True`` stops
    at the uint8 tensor (4× less to pass between worker processes); the collator
    then scales and normalises the whole batch.

    ``backend="torchvision"`` decodes JPEGs with ``torchvision.io.decode_jpeg`` and
    resizes the uint8 tensor with torchvision's antialiased kernel (bilinear or bicubic;
    ``"nearest"`` stays PIL's), about 5x faster than PIL's resize; values may differ from
    the ``"pil"`` backend's by 1 (2 when upscaling). Augmentations still get a PIL image.
    """

    def __init__(
        self,
        size: Union[int, Sequence[int]],
        image_mean: Optional[Sequence[float]] = None,
        image_std: Optional[Sequence[float]] = None,
        pil_augment: Sequence[Callable] = (),
        draft: bool = False,
        uint8_output: bool = False,
        interpolation: str = "bilinear",
        backend: str = "pil",
    ):
        self.size = _size(size)
        if (image_mean is None) != (image_std is None):
            raise ValueError("give both image_mean and image_std, or neither")
        self.image_mean = None if image_mean is None else tuple(float(v) for v in image_mean)
        self.image_std = None if image_std is None else tuple(float(v) for v in image_std)
        self.pil_augment = list(pil_augment)
        self.draft = draft
        self.uint8_output = uint8_output
        if interpolation not in _INTERPOLATION:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION)}")
        self.interpolation = interpolation
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        if self.image_mean is not None:
            self._mean = torch.tensor(self.image_mean).view(-1, 1, 1)
            self._std = torch.tensor(self.image_std).view(-1, 1, 1)

    def batch(self, sources: Sequence[Any]) -> list[torch.Tensor]:
        """``[self(s) for s in sources]``, the same tensors, written into one (B, 3, H, W) float
        tensor and returned as its rows: the collator then takes that tensor as the batch
        instead of copying every image into a new one (:class:`MultiLabelCollator`)."""
        if self.uint8_output or not len(sources):
            return [self(source) for source in sources]
        out = torch.empty((len(sources), 3) + self.size, dtype=torch.float32)
        return [self(source, out=out[i]) for i, source in enumerate(sources)]

    def __call__(self, source: Any, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The transformed image; written into ``out`` (a float32 (3, H, W) tensor) when given."""
        if self.backend == "torchvision":
            return self._call_torchvision(source, out)
        h, w = self.size
        owned = not isinstance(source, PIL.Image.Image)
        image = open_rgb(source, draft_size=(w, h) if self.draft else None)
        if image.size != (w, h):
            image = image.resize((w, h), _INTERPOLATION[self.interpolation])
            owned = True
        if self.pil_augment:
            if not owned:
                image = image.copy()  # Cutout paints in place; never on the caller's image
            for aug in self.pil_augment:
                image = aug(image)
        return self._finish(torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1), out)

    def _call_torchvision(self, source: Any, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, w = self.size
        x = open_rgb_tensor(source, draft_size=(w, h) if self.draft else None)  # a new tensor, never the caller's
        if tuple(x.shape[-2:]) != (h, w):
            if self.interpolation == "nearest":  # torchvision's nearest picks other pixels than PIL's
                image = PIL.Image.fromarray(x.permute(1, 2, 0).numpy()).resize((w, h), PIL.Image.NEAREST)
                x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
            else:
                from torchvision.transforms.v2 import InterpolationMode
                from torchvision.transforms.v2.functional import resize

                mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
                x = resize(x, [h, w], interpolation=mode, antialias=True)
        if self.pil_augment:
            image = PIL.Image.fromarray(x.permute(1, 2, 0).numpy())
            for aug in self.pil_augment:
                image = aug(image)
            x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return self._finish(x, out)

    def _finish(self, x: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(3, H, W) uint8, any strides → contiguous uint8, or float scaled and normalised
        with the arithmetic of torchvision's ToTensor + Normalize (bit for bit), in ``out``
        when given."""
        if self.uint8_output:
            if out is not None:
                raise ValueError("uint8_output=True: the transform returns uint8 tensors; `out` is not used")
            return x.contiguous()
        if out is None:
            out = torch.empty(x.shape, dtype=torch.float32)
        elif out.shape != x.shape or out.dtype != torch.float32:
            raise ValueError(f"`out` must be a float32 tensor of shape {tuple(x.shape)}, got {out.dtype} {tuple(out.shape)}")
        out.copy_(x)  # layout change and conversion in one pass
        out.div_(255)
        if self.image_mean is not None:
            out.sub_(self._mean).div_(self._std)
        return out

    def __repr__(self) -> str:
        return (f"ImageTransform(size={self.size}, mean={self.image_mean}, std={self.image_std}, "
                f"augment={self.pil_augment}, draft={self.draft}, uint8_output={self.uint8_output}, "
                f"backend={self.backend!r})")


def build_train_transform(
    image_size: Union[int, Sequence[int]],
    image_mean: Optional[Sequence[float]] = None,
    image_std: Optional[Sequence[float]] = None,
    cutout: bool = True,
    cutout_factor: float = 0.5,
    randaugment: bool = True,
    *,
    randaugment_config: str = OFFICIAL_RANDAUGMENT_CONFIG,
    randaugment_ops: Optional[Sequence[str]] = OFFICIAL_RANDAUGMENT_OPS,
    draft: bool = True,
    uint8_output: bool = False,
    interpolation: str = "bilinear",
    backend: str = "torchvision",
    fast_randaugment: bool = True,
) -> ImageTransform:
    """Square resize → Cutout → RandAugment → tensor → normalisation (the official train
    recipe). ``image_mean``/``image_std`` ``None`` means no normalisation ([0, 1]
    inputs, as TResNet models take). The default ``backend="torchvision"`` is the fast
    decode and resize (see :class:`ImageTransform`: pixels within one level of PIL's resize
    before augmentation, the same augmentation draws); ``backend="pil"`` gives the official
    pipeline's pixels exactly. ``fast_randaugment=False`` runs timm's PIL ops unchanged (see
    :func:`build_randaugment`). Evaluation keeps PIL by default (:func:`build_eval_transform`),
    so a converted checkpoint sees the official eval tensors bit for bit."""
    augment: list[Callable] = []
    if cutout:
        augment.append(Cutout(cutout_factor))
    if randaugment:
        augment.append(build_randaugment(randaugment_config, randaugment_ops, fast=fast_randaugment))
    return ImageTransform(image_size, image_mean, image_std, augment, draft=draft, uint8_output=uint8_output,
                          interpolation=interpolation, backend=backend)


def build_eval_transform(
    image_size: Union[int, Sequence[int]],
    image_mean: Optional[Sequence[float]] = None,
    image_std: Optional[Sequence[float]] = None,
    *,
    draft: bool = False,
    uint8_output: bool = False,
    interpolation: str = "bilinear",
    backend: str = "pil",
) -> ImageTransform:
    """Square resize → tensor → normalisation: equal to the official eval transform (bit
    for bit with the default ``backend="pil"``; ``"torchvision"`` is faster and within
    1/255 before normalisation, see :class:`ImageTransform`)."""
    return ImageTransform(image_size, image_mean, image_std, (), draft=draft, uint8_output=uint8_output,
                          interpolation=interpolation, backend=backend)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    try:
        value = obj[key]
        return default if value is None else value
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, default)


def transforms_from_image_processor(processor: Any, train: bool, **kwargs: Any) -> ImageTransform:
    """Build the train or eval transform from a transformers image processor: the
    square size from ``processor.size`` (``{"height", "width"}``, or
    ``{"shortest_edge"}`` taken as the side, or an int), the resize filter from
    ``processor.resample`` (PIL nearest, bilinear or bicubic), mean/std from
    ``image_mean``/``image_std`` when ``do_normalize`` is true. ``kwargs`` go to
    :func:`build_train_transform` / :func:`build_eval_transform`.

    With a model's ``MultiLabelImageProcessor`` the eval transform (default ``backend="pil"``)
    gives exactly the processor's ``pixel_values``: it decodes with the processor's
    ``to_rgb`` (through :func:`open_rgb`) and resizes and normalises with the same calls
    (tests/test_preprocessing.py checks it on odd files)."""
    size = getattr(processor, "size", None)
    if size is None:
        raise ValueError(f"{type(processor).__name__} has no size")
    if isinstance(size, (int, np.integer)):
        hw: tuple[int, int] = (int(size), int(size))
    else:
        height, width = _get(size, "height"), _get(size, "width")
        if height is not None and width is not None:
            hw = (int(height), int(width))
        elif _get(size, "shortest_edge") is not None:
            side = int(_get(size, "shortest_edge"))
            hw = (side, side)
        else:
            raise ValueError(f"cannot read a square size from processor.size={size!r}")
    mean = std = None
    if getattr(processor, "do_normalize", True):
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        if mean is not None and isinstance(mean, (int, float)):
            mean, std = [mean] * 3, [std] * 3
    resample = getattr(processor, "resample", None)
    if "interpolation" not in kwargs and resample is not None:
        names = {int(filt): name for name, filt in _INTERPOLATION.items()}
        try:  # a PIL filter number, or a torchvision InterpolationMode ("bilinear", ...)
            value = getattr(resample, "value", resample)
            kwargs["interpolation"] = value if value in _INTERPOLATION else names[int(value)]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"processor.resample={resample!r}: only PIL nearest (0), bilinear (2) and bicubic (3) are supported"
            ) from None
    if train:
        return build_train_transform(hw, mean, std, **kwargs)
    return build_eval_transform(hw, mean, std, **kwargs)


def label_vector(
    labels: Sequence[int],
    num_classes: int,
    unknown_labels: Optional[Sequence[int]] = None,
    negative_labels: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Float multi-hot vector: 1 at ``labels``, -1 (unknown) at ``unknown_labels``,
    0 elsewhere. When ``negative_labels`` is given (verified labels, as Open Images
    rows hold them), everything not listed is unknown: -1, with 0 at the negatives."""
    if negative_labels is not None:
        vec = torch.full((num_classes,), -1.0)
        if len(negative_labels):
            vec[torch.as_tensor(list(negative_labels), dtype=torch.long)] = 0.0
    else:
        vec = torch.zeros(num_classes)
        if unknown_labels is not None and len(unknown_labels):
            vec[torch.as_tensor(list(unknown_labels), dtype=torch.long)] = -1.0
    if len(labels):
        vec[torch.as_tensor(list(labels), dtype=torch.long)] = 1.0
    return vec


def _num_classes(features: datasets.Features) -> int:
    feature = features["labels"]
    inner = getattr(feature, "feature", feature)
    if not isinstance(inner, datasets.ClassLabel):
        raise ValueError(f"'labels' must be a list of ClassLabel, got {feature}")
    return inner.num_classes


class MultiLabelBatchTransform:
    """The ``with_transform`` function: a batch of rows → ``{"pixel_values": [(3,H,W)],
    "labels": [(C,) float]}``; other columns are dropped."""

    def __init__(self, image_transform: Callable[[Any], torch.Tensor], num_classes: int):
        self.image_transform = image_transform
        self.num_classes = int(num_classes)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        n = len(batch["labels"])
        unknown = batch.get("unknown_labels") or [None] * n
        negative = batch.get("negative_labels")
        negative = negative if negative is not None else [None] * n
        images = batch["image"]
        batched = getattr(self.image_transform, "batch", None)  # one batch tensor the collator can take as is
        return {
            "pixel_values": batched(images) if batched is not None else [self.image_transform(i) for i in images],
            "labels": [label_vector(batch["labels"][i], self.num_classes, unknown[i], negative[i]) for i in range(n)],
        }


def _with_transform(ds: datasets.Dataset, image_transform: Callable) -> datasets.Dataset:
    # Hand the transform the stored path/bytes, not a decoded image, so it controls the
    # decoding (draft mode, RGB conversion of 16-bit files).
    if isinstance(ds.features.get("image"), datasets.Image) and ds.features["image"].decode:
        ds = ds.cast_column("image", datasets.Image(decode=False))
    return ds.with_transform(MultiLabelBatchTransform(image_transform, _num_classes(ds.features)))


def apply_transforms(
    dataset: Union[datasets.DatasetDict, datasets.Dataset],
    train_transform: Optional[Callable] = None,
    eval_transform: Optional[Callable] = None,
    train_splits: Sequence[str] = ("train",),
) -> Union[datasets.DatasetDict, datasets.Dataset]:
    """Attach the lazy transforms: splits named in ``train_splits`` get
    ``train_transform``, the others ``eval_transform``; a split whose transform is
    ``None`` is left as it is. A single ``Dataset`` gets ``train_transform`` when
    given, else ``eval_transform``. Rows then read ``{"pixel_values", "labels"}``
    and nothing is decoded before a row is asked for."""
    if isinstance(dataset, datasets.Dataset):
        tf = train_transform if train_transform is not None else eval_transform
        if tf is None:
            raise ValueError("give train_transform or eval_transform")
        return _with_transform(dataset, tf)
    if train_transform is None and eval_transform is None:
        raise ValueError("give train_transform and/or eval_transform")
    out = datasets.DatasetDict()
    for name, ds in dataset.items():
        tf = train_transform if name in train_splits else eval_transform
        out[name] = ds if tf is None else _with_transform(ds, tf)
    return out
