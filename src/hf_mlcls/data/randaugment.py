"""RandAugment as the official recipes configure it (timm's), with faster NumPy versions of
its shear, translate and sharpness ops (see :mod:`hf_mlcls.data.transforms` for the pipeline
and ``docs/benchmarks.md`` for their speed)."""

from __future__ import annotations

import random
from typing import Any, Callable, Optional, Sequence

import numpy as np
import PIL.Image

__all__ = ["OFFICIAL_RANDAUGMENT_CONFIG", "OFFICIAL_RANDAUGMENT_OPS", "build_randaugment"]


#: timm ops matching the ``randaugment`` package the official recipes use. Its
#: posterize keeps 4..8 bits (timm's ``PosterizeOriginal``); its small grey Cutout op
#: has no timm counterpart and is left out.
OFFICIAL_RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeOriginal", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
#: n=2 ops, each with p=0.5, magnitude drawn uniformly in [0, 10] (mstd > 100).
OFFICIAL_RANDAUGMENT_CONFIG = "rand-n2-m10-mstd101"


# ---------------------------------------------------------------------------------------
# Faster versions of timm's PIL RandAugment ops. PIL runs its affine transforms through a
# generic per-pixel 2-D filter (a function call and 4 or 16 taps in double per pixel),
# though a shear or a translation moves pixels along one axis only; these do the same
# 1-D interpolation with NumPy, a block of rows at a time so the temporaries stay in
# cache. Written here because no library has PIL's exact (a = -1) bicubic or its edge
# rules; each is checked against PIL in tests/test_data_transforms.py.
# ---------------------------------------------------------------------------------------

_BLOCK_ROWS = 64


def _timm_resample(kwargs: dict) -> int:
    """The resampling filter, drawn the way timm's ops draw it (same RNG call)."""
    resample = kwargs.pop("resample", PIL.Image.BICUBIC)
    if isinstance(resample, (list, tuple)):
        resample = random.choice(resample)
    return resample


def _fill_rgb(fillcolor: Any) -> tuple[int, int, int]:
    if fillcolor is None:
        return (0, 0, 0)  # what PIL leaves outside the source when no fill colour is given
    if isinstance(fillcolor, (int, np.integer)):
        return (int(fillcolor),) * 3
    return tuple(int(v) for v in fillcolor[:3])


def _shift_rows(image: PIL.Image.Image, shift: np.ndarray, bicubic: bool, fill: tuple[int, int, int]) -> PIL.Image.Image:
    """Row ``y`` of the result samples the source at x-positions ``(x + 0.5) + shift[y]``:
    PIL's AFFINE transform with matrix ``(1, a, b, 0, 1, 0)``, ``shift[y] = a (y + 0.5) + b``.

    As PIL: a position outside [0, width) takes ``fill``; inside, the sample sits at
    ``position - 0.5`` with neighbours clamped to the image, bilinear ``v0 + (v1 - v0) d``
    or PIL's bicubic (a = -1, Horner form), truncated to uint8.
    """
    width, height = image.size
    pixels = np.frombuffer(image.tobytes("raw", "RGBX"), np.uint32)  # one 4-byte word per pixel
    k = np.floor(shift)
    frac = (shift - k).astype(np.float32)
    k = k.astype(np.intp)
    taps, first = (4, -1) if bicubic else (2, 0)
    span = width + taps - 1
    columns = np.arange(first, span + first)
    out = np.empty((height, width, 4), np.uint8)
    for r0 in range(0, height, _BLOCK_ROWS):
        r1 = min(height, r0 + _BLOCK_ROWS)
        index = columns[None, :] + k[r0:r1, None]
        np.maximum(index, 0, out=index)
        np.minimum(index, width - 1, out=index)
        index += (np.arange(r0, r1) * width)[:, None]
        g = pixels.take(index).view(np.uint8).reshape(r1 - r0, span, 4).astype(np.float32)
        d = frac[r0:r1, None, None]
        if bicubic:
            v0, v1, v2, v3 = (g[:, j : j + width] for j in range(4))
            # PIL: v1 + d * ((v2 - v0) + d * ((2 (v0 - v1) + v2 - v3) + d * (-v0 + v1 - v2 + v3)))
            a = v1 - v0
            p4 = v3 - v2
            p4 += a
            acc = p4 * d
            acc -= a
            acc -= p4
            acc *= d
            acc += v2
            acc -= v0
            acc *= d
            acc += v1
            np.clip(acc, 0, 255, out=acc)
        else:
            v0 = g[:, :width]
            acc = g[:, 1 : width + 1] - v0
            acc *= d
            acc += v0
        out[r0:r1] = acc  # float -> uint8 truncates, as PIL's (UINT8) cast
    position = (np.arange(width) + 0.5)[None, :] + shift[:, None]
    outside = (position < 0) | (position >= width)
    fill_word = np.array(fill + (0,), np.uint8).view(np.uint32)[0]
    np.copyto(out.view(np.uint32).reshape(height, width), fill_word, where=outside)
    return PIL.Image.frombytes("RGB", (width, height), out, "raw", "RGBX")


def _affine_1d(image: PIL.Image.Image, axis: str, slope: float, offset: float, kwargs: dict) -> PIL.Image.Image:
    """PIL's ``transform(size, AFFINE, m)`` for ``m = (1, slope, offset, 0, 1, 0)`` (``axis="x"``)
    or ``(1, 0, 0, slope, 1, offset)`` (``axis="y"``), with timm's resample draw."""
    resample = _timm_resample(kwargs)
    fill = kwargs.get("fillcolor")
    width, height = image.size
    if image.mode != "RGB" or resample not in (PIL.Image.BILINEAR, PIL.Image.BICUBIC) or width < 1 or height < 1:
        matrix = (1, slope, offset, 0, 1, 0) if axis == "x" else (1, 0, 0, slope, 1, offset)
        return image.transform(image.size, PIL.Image.AFFINE, matrix, resample=resample, **kwargs)
    bicubic = resample == PIL.Image.BICUBIC
    if axis == "x":
        return _shift_rows(image, slope * (np.arange(height) + 0.5) + offset, bicubic, _fill_rgb(fill))
    flipped = image.transpose(PIL.Image.Transpose.TRANSPOSE)  # columns become rows
    out = _shift_rows(flipped, slope * (np.arange(width) + 0.5) + offset, bicubic, _fill_rgb(fill))
    return out.transpose(PIL.Image.Transpose.TRANSPOSE)


def _shear_x(img, factor, **kwargs):
    return _affine_1d(img, "x", factor, 0.0, kwargs)


def _shear_y(img, factor, **kwargs):
    return _affine_1d(img, "y", factor, 0.0, kwargs)


def _translate_x_rel(img, pct, **kwargs):
    return _affine_1d(img, "x", 0.0, pct * img.size[0], kwargs)


def _translate_y_rel(img, pct, **kwargs):
    return _affine_1d(img, "y", 0.0, pct * img.size[1], kwargs)


def _translate_x_abs(img, pixels, **kwargs):
    return _affine_1d(img, "x", 0.0, pixels, kwargs)


def _translate_y_abs(img, pixels, **kwargs):
    return _affine_1d(img, "y", 0.0, pixels, kwargs)


def _smooth(image: PIL.Image.Image) -> PIL.Image.Image:
    """``image.filter(ImageFilter.SMOOTH)``: 3x3 kernel [1 1 1; 1 5 1; 1 1 1] / 13, rounded,
    the one-pixel border copied unchanged (PIL's rules)."""
    src = np.asarray(image)
    f = src.astype(np.float32)
    rows = f[:, :-2] + f[:, 1:-1]
    rows += f[:, 2:]
    box = rows[:-2] + rows[1:-1]
    box += rows[2:]
    centre = f[1:-1, 1:-1]
    centre *= 4
    box += centre
    box *= np.float32(1 / 13)
    box += 0.5  # sum / 13 is never within float error of a half, so rounding is exact
    out = src.copy()
    out[1:-1, 1:-1] = box
    return PIL.Image.fromarray(out)


def _sharpness(img, factor, **kwargs):
    if img.mode != "RGB" or min(img.size) < 3:
        from PIL import ImageEnhance

        return ImageEnhance.Sharpness(img).enhance(factor)
    return PIL.Image.blend(_smooth(img), img, factor)  # ImageEnhance.Sharpness's own blend


_FAST_OPS = {
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateXRel": _translate_x_rel,
    "TranslateYRel": _translate_y_rel,
    "TranslateX": _translate_x_abs,
    "TranslateY": _translate_y_abs,
    "Sharpness": _sharpness,
    "SharpnessIncreasing": _sharpness,
}


def build_randaugment(
    config: str = OFFICIAL_RANDAUGMENT_CONFIG,
    ops: Optional[Sequence[str]] = OFFICIAL_RANDAUGMENT_OPS,
    fast: bool = True,
) -> Callable:
    """timm's RandAugment (``ops=None``: timm's default op set for ``config``).

    ``fast=True`` swaps the PIL function behind the shear, translate and sharpness ops
    for the NumPy versions above; op choice, probabilities, magnitudes and the
    resampling draw stay timm's (the same random calls in the same order), so with the
    same seeds the output equals timm's to within 1 on each 0-255 value.
    """
    from timm.data import auto_augment

    # translate_const: timm's default for the absolute-pixel translate ops (not in the official set)
    hparams = {"translate_pct": 0.45, "translate_const": 250, "img_mean": (128, 128, 128)}
    ra = auto_augment.rand_augment_transform(config, hparams, transforms=list(ops) if ops is not None else None)
    if fast:
        for op in ra.ops:
            # only where the op still calls the PIL function these replace
            if op.name in _FAST_OPS and op.aug_fn is auto_augment.NAME_TO_OP.get(op.name):
                op.aug_fn = _FAST_OPS[op.name]
    return ra
