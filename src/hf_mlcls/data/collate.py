"""Batching: rows from the transformed dataset → ``{"pixel_values": (B,3,H,W) float,
"labels": (B,C) float}``, the batch the models and the Trainer take."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .transforms import label_vector

__all__ = ["MultiLabelCollator"]


class MultiLabelCollator:
    """Stack ``pixel_values`` and ``labels`` of a list of rows.

    Args:
        num_classes: needed only when rows still hold class-index lists (rows that did
            not go through :func:`~hf_mlcls.data.transforms.apply_transforms`); they are
            turned into multi-hot vectors (with -1 at ``unknown_labels``).
        image_mean, image_std: used when ``pixel_values`` arrive as uint8 (a transform
            built with ``uint8_output=True``): the batch is scaled to [0, 1] and
            normalised here, once per batch instead of once per image.
    """

    def __init__(
        self,
        num_classes: Optional[int] = None,
        image_mean: Optional[Sequence[float]] = None,
        image_std: Optional[Sequence[float]] = None,
    ):
        if (image_mean is None) != (image_std is None):
            raise ValueError("give both image_mean and image_std, or neither")
        self.num_classes = num_classes
        self.image_mean = None if image_mean is None else torch.tensor([float(v) for v in image_mean]).view(1, -1, 1, 1)
        self.image_std = None if image_std is None else torch.tensor([float(v) for v in image_std]).view(1, -1, 1, 1)

    def _labels(self, row: dict) -> torch.Tensor:
        labels = row["labels"]
        if isinstance(labels, torch.Tensor) and labels.dtype.is_floating_point:
            return labels
        if self.num_classes is None:
            raise ValueError(
                "rows hold class-index lists: pass num_classes to MultiLabelCollator, or apply the "
                "dataset transforms (hf_mlcls.data.apply_transforms) first"
            )
        as_list = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        return label_vector(as_list, self.num_classes, row.get("unknown_labels"), row.get("negative_labels"))

    def _scale_uint8(self, images: list[torch.Tensor]) -> torch.Tensor:
        # One image at a time into the batch: each image's passes stay in cache, where
        # whole-batch passes would stream the batch through memory four times. Same
        # operations, same order, so the same bits as scaling the stacked batch.
        out = torch.empty((len(images),) + tuple(images[0].shape), dtype=torch.float32)
        mean = None if self.image_mean is None else self.image_mean[0]
        std = None if self.image_std is None else self.image_std[0]
        for i, image in enumerate(images):
            x = out[i]
            x.copy_(image)
            x.div_(255)
            if mean is not None:
                x.sub_(mean).div_(std)
        return out

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("empty batch")
        images = [torch.as_tensor(r["pixel_values"]) for r in rows]
        whole = _rows_of_one_tensor(images)
        if whole is not None:  # the transform wrote the batch into one tensor (ImageTransform.batch)
            pixel_values = whole
        elif all(x.dtype == torch.uint8 for x in images) and len({tuple(x.shape) for x in images}) == 1:
            pixel_values = self._scale_uint8(images)
        else:
            pixel_values = torch.stack(images)
            if pixel_values.dtype == torch.uint8:  # mixed shapes were refused by stack; mixed dtypes land here
                pixel_values = pixel_values.float().div_(255)
                if self.image_mean is not None:
                    pixel_values.sub_(self.image_mean).div_(self.image_std)
            elif not pixel_values.dtype.is_floating_point:
                pixel_values = pixel_values.float()
        labels = torch.stack([self._labels(r) for r in rows]).float()
        _check_values(pixel_values, labels, uint8_input=all(x.dtype == torch.uint8 for x in images))
        return {"pixel_values": pixel_values, "labels": labels}


def _rows_of_one_tensor(images: list[torch.Tensor]) -> Optional[torch.Tensor]:
    """The float (B, ...) tensor whose rows 0..B-1 are exactly ``images``, in order, when they are
    (a batch written by ``ImageTransform.batch``), so that it needs no copy; else None."""
    base = images[0]._base
    if base is None or base.dim() != images[0].dim() + 1 or not base.dtype.is_floating_point:
        return None
    if base.shape[0] != len(images) or not base.is_contiguous() or any(x._base is not base for x in images):
        return None
    step = base[0].numel() * base.element_size()
    start = base.data_ptr()
    for i, x in enumerate(images):
        if x.data_ptr() != start + i * step or x.shape != base.shape[1:] or x.stride() != base.stride()[1:]:
            return None
    return base


def _check_values(pixel_values: torch.Tensor, labels: torch.Tensor, uint8_input: bool) -> None:
    """The batch's values, checked here on the host, once per batch, before the Trainer moves it to a
    device: the models check values only on the CPU (on an accelerator that would stall every step for
    a device-to-host read), so this is where a GPU run catches a bad image or label. Names the row."""
    if not uint8_input and not bool(torch.isfinite(pixel_values.sum())):
        bad = (~torch.isfinite(pixel_values.flatten(1))).any(1).nonzero().flatten()
        if len(bad):
            raise ValueError(f"pixel_values of batch row {int(bad[0])} contain NaN or inf values")
    valid = (labels == 0) | (labels == 1) | (labels == -1)
    if not bool(valid.all()):
        row, col = (~valid).nonzero()[0].tolist()
        raise ValueError(
            f"labels of batch row {row} hold {labels[row, col].item()!r} at class {col}; "
            "labels may only hold 1 (present), 0 (absent) and -1 (unknown)"
        )
