"""Uploaded images, opened safely: type, size and pixel-count limits, EXIF rotation, RGB for display.

Only decoding and display happen here; what the model sees is made by the model's own image processor
(`inference.preprocess`).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .environment import IMAGE_SUFFIXES, MAX_SIDE, UserFacingError, safe_name

__all__ = ["MAX_PIXELS", "display_rgb", "load_image"]

# Decompression-bomb guard: PIL refuses images above twice this and warns above it; we refuse both.
MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _fallback_rgb(img: Image.Image) -> Image.Image:
    """RGB for display when the processor has no `to_rgb`: deep images scaled to 8 bits, alpha over white."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(img, dtype=np.float32)
        top = float(array.max()) or 1.0
        img = Image.fromarray(np.clip(array / top * 255, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def display_rgb(img: Image.Image, processor=None) -> Image.Image:
    """The image in RGB as it is shown: the processor's own `to_rgb` when it has one, else `_fallback_rgb`."""
    to_rgb: Callable | None = getattr(processor, "to_rgb", None)
    if callable(to_rgb):
        return to_rgb(img)
    return _fallback_rgb(img)


def load_image(path: str | None, name: str | None = None, *, max_upload_mb: float = 10.0,
               processor=None) -> Image.Image:
    """Open an uploaded image safely: type, size and pixel-count limits; RGB; at most MAX_SIDE px."""
    name = safe_name(name or path or "image")
    if not path:
        raise UserFacingError("No image was uploaded.")
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise UserFacingError(f"“{name}” is not an image file (accepted: {', '.join(IMAGE_SUFFIXES)}).")
    try:
        size = os.path.getsize(path)
    except OSError:
        raise UserFacingError(f"“{name}” could not be read; upload it again.") from None
    if size > max_upload_mb * 1024 * 1024:
        raise UserFacingError(f"“{name}” is {size / 2**20:.1f} MB; the limit is {max_upload_mb:g} MB.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                img.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at reduced size when possible
                img.seek(0)
                img.load()
                image = ImageOps.exif_transpose(img)
                image = display_rgb(image, processor)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserFacingError(
            f"“{name}” is too large to open safely (limit {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)."
        ) from None
    except UnidentifiedImageError:
        raise UserFacingError(f"“{name}” is not an image this app can read (or it is corrupt).") from None
    except Exception:  # truncated or corrupt data, unsupported modes
        raise UserFacingError(f"“{name}” looks damaged or truncated and could not be decoded.") from None
    if min(width, height) < 1:
        raise UserFacingError(f"“{name}” has no pixels.")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image
