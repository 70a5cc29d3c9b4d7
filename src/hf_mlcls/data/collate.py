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

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("empty batch")
        pixel_values = torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows])
        if pixel_values.dtype == torch.uint8:
            pixel_values = pixel_values.float().div_(255)
            if self.image_mean is not None:
                pixel_values.sub_(self.image_mean).div_(self.image_std)
        elif not pixel_values.dtype.is_floating_point:
            pixel_values = pixel_values.float()
        labels = torch.stack([self._labels(r) for r in rows]).float()
        return {"pixel_values": pixel_values, "labels": labels}
