"""The image-classification pipeline of Query2Label and ML-Decoder models: every input decoded by one policy.

transformers' ``ImageClassificationPipeline`` opens a path, URL, base64 string or PIL image with
``transformers.image_utils.load_image``, which calls ``convert("RGB")`` before any image processor runs: an
alpha channel is dropped instead of composited on white, and 16-bit values are clipped at 255.
:class:`MultiLabelImageClassificationPipeline` opens the input itself (:func:`open_image`, no conversion) and
decodes it with the model's image processor's ``to_rgb`` (``image_processing_multilabel.to_rgb``: the
package's one decoding policy), so a file given to the pipeline gets the scores that ``hf-mlcls predict`` and
the image processor give. Everything else (``top_k``, ``function_to_apply``, the sigmoid of multi-label
models, label names, batching) is the stock pipeline's, except that on the CPU the forward runs on the
fast inference path (``fast_cpu.fast_model``: the same fp32 logits within about 2e-6; ``HF_MLCLS_FAST_CPU=0``
switches it off).

How it is reached:

* where ``hf_mlcls`` is installed, importing it registers :func:`for_model_types` as the
  ``"image-classification"`` task's class: ``pipeline("image-classification", model=folder)`` builds this
  class for Query2Label and ML-Decoder models and the stock class, unchanged, for every other model;
* a saved model's ``config.json`` names this class in ``custom_pipelines``, and the file ships with the
  model's remote code, so ``pipeline(model=repo_or_folder, trust_remote_code=True)`` (task inferred from the
  config, also offline) and ``pipeline("image-classification", model=..., trust_remote_code=True)`` build it
  where ``hf_mlcls`` is not installed.

Relative imports only: this file ships with the model as Hub remote code.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.pipelines.image_classification import ImageClassificationPipeline

from .fast_cpu import fast_model
from .image_processing_multilabel import to_rgb

__all__ = ["MODEL_TYPES", "MultiLabelImageClassificationPipeline", "for_model_types", "open_image"]

#: the model types this pipeline is for
MODEL_TYPES = ("query2label", "ml_decoder")


def _fetch(url: str, timeout: float | None) -> bytes:
    from huggingface_hub.utils import httpx  # what transformers' load_image fetches URLs with

    response = httpx.get(url, timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return response.content


def _open_bytes(data: bytes, what: str) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"{what}: not an image PIL can read ({err})") from None
    return image


def open_image(image: Any, timeout: float | None = None) -> PIL.Image.Image:
    """A PIL image, as stored (no orientation, mode or depth change), from any input the stock pipeline takes.

    ``image`` is a PIL image (returned as it is), a local path, an ``http(s)://`` URL, a base64 string (with
    or without a ``data:image/...;base64,`` prefix), or the bytes of an image file.
    """
    if isinstance(image, PIL.Image.Image):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(image), "the bytes given")
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if not isinstance(image, str):
        raise TypeError(
            "images must be PIL images, paths, http(s) URLs, base64 strings or bytes; "
            f"got {type(image).__name__}"
        )
    if image.startswith(("http://", "https://")):
        return _open_bytes(_fetch(image, timeout), image)
    if os.path.isfile(image):
        try:
            opened = PIL.Image.open(image)
            opened.load()
        except (OSError, ValueError, SyntaxError) as err:
            raise ValueError(f"{image}: not an image PIL can read ({err})") from None
        return opened
    text = image.split(",", 1)[1] if image.startswith("data:image/") else image
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        shown = image if len(image) <= 80 else image[:77] + "..."
        raise ValueError(
            f"{shown!r} is neither an existing file, an http(s) URL nor a base64-encoded image"
        ) from None
    return _open_bytes(data, "the base64 string given")


class MultiLabelImageClassificationPipeline(ImageClassificationPipeline):
    """``ImageClassificationPipeline`` whose inputs are decoded by the model's image processor's ``to_rgb``.

    Takes what the stock pipeline takes (paths, URLs, base64 strings, PIL images, arrays and tensors) plus the
    bytes of an image file. Arrays and tensors go to the image processor as they are, as in the stock pipeline.
    """

    def preprocess(self, image, timeout=None):
        if isinstance(image, (np.ndarray, torch.Tensor)):
            return super().preprocess(image, timeout=timeout)
        decode = getattr(self.image_processor, "to_rgb", to_rgb)  # a folder with an older processor: the policy still
        rgb = decode(open_image(image, timeout=timeout))
        return self.image_processor(images=rgb, return_tensors="pt").to(self.dtype)

    def _forward(self, model_inputs):
        # fast_model returns the model itself where the fast path does not apply (GPU, fp16, switched off)
        return fast_model(self.model)(**model_inputs)


def for_model_types(fallback: type) -> type:
    """A class to register as a task's pipeline: builds ``MultiLabelImageClassificationPipeline`` for our
    models (``MODEL_TYPES``) and ``fallback`` (the class registered before, unchanged) for every other model.

    ``transformers.pipeline`` picks the class from the task alone, before it loads the model, then calls
    ``pipeline_class(model=model, ...)``; this class looks at that model and builds the right one. It
    subclasses ``fallback`` so that the class attributes ``pipeline()`` reads first (which processors to load)
    are the stock ones.
    """

    def __new__(cls, *args, **kwargs):
        model = kwargs.get("model", args[0] if args else None)
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        chosen = MultiLabelImageClassificationPipeline if model_type in MODEL_TYPES else fallback
        return chosen(*args, **kwargs)  # not an instance of `cls`: Python does not call __init__ again

    return type(
        f"{fallback.__name__}ForMultiLabelModels",
        (fallback,),
        {"__new__": __new__, "__module__": __name__, "_multilabel_fallback": fallback,
         "__doc__": f"{fallback.__name__}, or MultiLabelImageClassificationPipeline for models of type "
                    f"{', '.join(MODEL_TYPES)}."},
    )
