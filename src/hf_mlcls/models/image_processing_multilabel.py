"""The image processor of Query2Label and ML-Decoder models: the one owner of preprocessing.

Every path that turns an image into ``pixel_values`` uses what this file defines: the
``pipeline`` (``pipeline_multilabel``, which opens files, URLs and bytes without converting them and decodes
with :func:`to_rgb`), `hf_mlcls.inference` (``hf-mlcls predict``, ``examples/evaluate.py``), the
evaluation transform of training (`hf_mlcls.data.transforms_from_image_processor`, which
decodes with :func:`to_rgb` and resizes and normalises with the same calls), and the Space.

Decoding policy (:func:`to_rgb`), any PIL image to 8-bit RGB:

1. EXIF orientation is applied (``ImageOps.exif_transpose``): the image is seen upright, as a
   viewer shows it.
2. Transparency (an alpha channel, ``LA``/``PA``/``RGBA``, or a palette or ``tRNS``
   transparent colour) is composited over **white**, as an image viewer or a web page shows
   it; the colour a transparent pixel happens to store is never seen.
3. More than 8 bits per value is scaled, never clipped: 16-bit (``I;16*``) by 255/65535;
   32-bit integer (``I``) as 8-bit data when it fits in 0..255, as 16-bit data when it fits in
   0..65535, else by 255/its maximum; float (``F``) as [0, 1] data when its maximum is at most 1,
   as 0..255 data up to 255, as 16-bit data up to 65535, else by 255/its maximum. Negative
   values and NaN become 0, rounding is to nearest.
4. Every other mode (palette, ``L``, ``1``, ``CMYK``, ``YCbCr`` ...) goes through PIL's
   ``convert("RGB")``.

Then, as the official evaluation transforms: square resize to ``size`` with PIL
(``resample``, bilinear by default, no crop), scaling to [0, 1] and, when ``do_normalize``,
``(x - image_mean) / image_std``, with the arithmetic of torchvision's ``ToTensor`` and
``Normalize`` (so converted checkpoints see the official tensors bit for bit).

Relative imports only: this file ships with the model as Hub remote code. A saved model's
``config.json`` names it in ``auto_map["AutoImageProcessor"]``, so
``AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)`` works where ``hf_mlcls`` is
not installed; where it is, importing it registers the class for both model types.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

__all__ = ["MultiLabelImageProcessor", "to_rgb"]

_ORIENTATION = 0x0112  # the EXIF orientation tag
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WHITE = (255, 255, 255, 255)


def _upright(image: PIL.Image.Image) -> PIL.Image.Image:
    """``ImageOps.exif_transpose`` when the image has an orientation other than "as stored"."""
    try:
        orientation = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block: show the pixels as stored
        return image
    if orientation in (None, 0, 1):
        return image
    return PIL.ImageOps.exif_transpose(image)


def _scale_high_depth(image: PIL.Image.Image) -> PIL.Image.Image:
    """16-bit, 32-bit integer and float grey images to 8-bit grey, scaled as the module docstring says."""
    array = np.asarray(image).astype(np.float64)
    array = np.nan_to_num(array, nan=0.0, neginf=0.0, posinf=0.0)
    array = np.maximum(array, 0.0)
    peak = float(array.max(initial=0.0))
    if image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif image.mode == "F" and peak <= 1.0:
        scale = 255.0
    elif peak <= 255.0:
        scale = 1.0
    elif peak <= 65535.0:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / peak
    array = np.clip(np.rint(array * scale), 0, 255)
    return PIL.Image.fromarray(array.astype(np.uint8), mode="L")


def _has_transparency(image: PIL.Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Any PIL image as the model sees it before resizing: upright, 8-bit RGB, transparency on white.

    This is the package's one decoding policy (see the module docstring); it returns ``image``
    itself when that is already an upright RGB image, else a new image (the input is never changed).
    """
    if not isinstance(image, PIL.Image.Image):
        raise TypeError(f"to_rgb takes a PIL image, got {type(image).__name__}")
    image = _upright(image)
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return _scale_high_depth(image).convert("RGB")
    if _has_transparency(image):
        rgba = image.convert("RGBA")  # palette / tRNS transparency becomes alpha
        return PIL.Image.alpha_composite(PIL.Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")


def _as_pil(image: Any) -> PIL.Image.Image:
    """A PIL image from a PIL image, a path, or an (H, W, C) / (C, H, W) / (H, W) uint8 or [0, 1] float array."""
    if isinstance(image, PIL.Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        with PIL.Image.open(image) as opened:
            opened.load()
            return to_rgb(opened)  # inside the `with`: the file is read once, then closed
    if torch.is_tensor(image):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # channels first -> channels last
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(f"an image array must be (H, W), (H, W, 3|4) or (3|4, H, W), got shape {image.shape}")
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.floating):
                raise ValueError(f"an image array must be uint8, or float in [0, 1]; got {array.dtype}")
            if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
                raise ValueError("a float image array must hold values in [0, 1]")
            array = np.rint(np.nan_to_num(array) * 255).astype(np.uint8)
        return PIL.Image.fromarray(np.ascontiguousarray(array))
    raise TypeError(
        f"images must be PIL images, file paths, numpy arrays or torch tensors; got {type(image).__name__}"
    )


class MultiLabelImageProcessor(BaseImageProcessor):
    r"""Image processor of Query2Label and ML-Decoder models: decode (:func:`to_rgb`), square resize, normalise.

    Args:
        do_resize (`bool`, defaults to `True`): resize every image to `size` (no crop, the aspect ratio is not kept).
        size (`dict[str, int]`, defaults to `{"height": 448, "width": 448}`): the model's input size; an int means
            a square.
        resample (`int`, defaults to `2`, PIL's bilinear): the PIL resampling filter of the resize.
        do_normalize (`bool`, defaults to `True`): subtract `image_mean` and divide by `image_std` after scaling
            to [0, 1]. TResNet models take [0, 1] inputs: `False`.
        image_mean (`list[float]`, defaults to the ImageNet mean): per-channel mean.
        image_std (`list[float]`, defaults to the ImageNet standard deviation): per-channel standard deviation.

    Call it with one image or a list (PIL images, file paths, or uint8 / [0, 1] float arrays or tensors)::

        inputs = processor(images=[image], return_tensors="pt")   # {"pixel_values": (N, 3, H, W) float32}

    :meth:`to_rgb` is the decoding alone, for showing an image the way the model sees it.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: int | dict[str, int] | None = None,
        resample: int = 2,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.do_resize = bool(do_resize)
        self.size = self._size_dict(448 if size is None else size)
        self.resample = int(resample)
        self.do_normalize = bool(do_normalize)
        self.image_mean = [float(v) for v in (image_mean if image_mean is not None else (0.485, 0.456, 0.406))]
        self.image_std = [float(v) for v in (image_std if image_std is not None else (0.229, 0.224, 0.225))]
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or not all(s > 0 for s in self.image_std):
            raise ValueError(
                f"image_mean and image_std need 3 values each, std all positive; got {self.image_mean}, {self.image_std}"
            )

    @staticmethod
    def _size_dict(size: Any) -> dict[str, int]:
        if isinstance(size, (int, np.integer)):
            return {"height": int(size), "width": int(size)}
        if isinstance(size, dict) and "height" in size and "width" in size:
            return {"height": int(size["height"]), "width": int(size["width"])}
        if isinstance(size, dict) and "shortest_edge" in size:
            return {"height": int(size["shortest_edge"]), "width": int(size["shortest_edge"])}
        raise ValueError(f"size must be an int or {{'height': H, 'width': W}}, got {size!r}")

    @staticmethod
    def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
        """The decoding policy alone (:func:`to_rgb`): upright 8-bit RGB, transparency on white."""
        return to_rgb(image)

    def pixel_values(
        self,
        image: Any,
        do_resize: bool | None = None,
        size: int | dict[str, int] | None = None,
        resample: int | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
    ) -> torch.Tensor:
        """One image as a (3, H, W) float32 tensor."""
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self.size if size is None else self._size_dict(size)
        resample = self.resample if resample is None else int(resample)
        do_normalize = self.do_normalize if do_normalize is None else do_normalize
        rgb = to_rgb(_as_pil(image))
        target = (size["width"], size["height"])
        if do_resize and rgb.size != target:
            rgb = rgb.resize(target, resample)
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)
        out = torch.empty(x.shape, dtype=torch.float32)
        out.copy_(x)
        out.div_(255)
        if do_normalize:
            mean = torch.tensor([float(v) for v in (self.image_mean if image_mean is None else image_mean)])
            std = torch.tensor([float(v) for v in (self.image_std if image_std is None else image_std)])
            out.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
        return out

    def preprocess(self, images: Any, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """``{"pixel_values": ...}`` for one image or a list of them.

        ``return_tensors="pt"`` gives one (N, 3, H, W) float32 tensor, ``"np"`` one array, ``None`` a list of
        (3, H, W) arrays. Keyword arguments (``do_resize``, ``size``, ``resample``, ``do_normalize``,
        ``image_mean``, ``image_std``) override the processor's settings for this call.
        """
        allowed = {"do_resize", "size", "resample", "do_normalize", "image_mean", "image_std"}
        unknown = sorted(set(kwargs) - allowed - {"input_data_format", "data_format"})
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected argument(s) {unknown}; it takes {sorted(allowed)}")
        options = {k: v for k, v in kwargs.items() if k in allowed and v is not None}
        if isinstance(images, (list, tuple)):
            batch = list(images)
        else:
            batch = [images]
        tensors = [self.pixel_values(image, **options) for image in batch]
        if return_tensors is None:
            return BatchFeature(data={"pixel_values": [t.numpy() for t in tensors]})
        if len({tuple(t.shape) for t in tensors}) > 1:
            raise ValueError(
                "the images have different sizes after preprocessing, so they cannot be stacked; "
                "keep do_resize=True (or pass return_tensors=None)"
            )
        if str(return_tensors) in ("pt", "TensorType.PYTORCH"):
            stacked = torch.stack(tensors) if tensors else torch.zeros(0, 3, 0, 0)
            return BatchFeature(data={"pixel_values": stacked})
        return BatchFeature(data={"pixel_values": [t.numpy() for t in tensors]}, tensor_type=return_tensors)

    def __call__(self, images: Any = None, *args, **kwargs) -> BatchFeature:
        if images is None:
            raise ValueError(f"{type(self).__name__} needs images=")
        return self.preprocess(images, *args, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        # No "image_processor_type" (nor an "auto_map") in preprocessor_config.json: AutoImageProcessor then finds
        # the class through the model's config.json (its model_type, or its auto_map as remote code), and the
        # pipeline's AutoVideoProcessor probe finds nothing to offer instead of asking to run a "VideoProcessor".
        out = super().to_dict()
        out.pop("image_processor_type", None)
        out.pop("auto_map", None)
        return out
