"""Occ3D-nuScenes semantic occupancy mIoU (docs/architecture.md "Data"), identical to the official ``Metric_mIoU``.

Official definition (CVPR2023-3D-Occupancy-Prediction, projects/mmdet3d_plugin/datasets/occ_metrics.py):
per frame, keep the voxels with ``mask_camera`` (or ``mask_lidar``), add ``bincount(n * gt + pred)`` to an
18 x 18 histogram (rows = ground truth, ground-truth labels outside [0, 18) such as 255 are skipped); at the
end ``IoU_c = hist[c, c] / (hist[c, :].sum() + hist[:, c].sum() - hist[c, c])`` and
``mIoU = nanmean(IoU[0:17])`` -- the free class 17 takes part in the histogram (a free voxel predicted as car
is a car false positive) but not in the mean. A class absent from both prediction and ground truth has IoU
0/0 = NaN and is *skipped* by ``nanmean``; a class present in only one of them has IoU 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from protoocc_ros.classes import IGNORE_LABEL, OCC3D_FREE_LABEL, class_names_for
from protoocc_ros.metrics.confusion import ConfusionMetric, confusion, format_table
from protoocc_ros.metrics.errors import MetricError

MASK_KINDS = ("camera", "lidar", "none")


class OccupancyMetric(ConfusionMetric):
    """Occ3D mIoU over the semantic classes, accumulated as one confusion matrix over all frames."""

    def __init__(self, num_classes: int = 18, free_label: int | None = OCC3D_FREE_LABEL,
                 use_mask: str = "camera", class_names: tuple[str, ...] | list[str] | None = None) -> None:
        if use_mask not in MASK_KINDS:
            raise MetricError(f"use_mask={use_mask!r}: expected one of {MASK_KINDS}")
        if free_label is not None and not 0 <= free_label < num_classes:
            raise MetricError(f"free_label={free_label}: expected a class id in [0, {num_classes}) or None")
        self.free_label = free_label
        self.use_mask = use_mask
        super().__init__(num_classes, tuple(class_names) if class_names else class_names_for(num_classes))

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "free_label": self.free_label, "use_mask": self.use_mask,
                "class_names": list(self.class_names)}

    def update(self, pred: Any, gt: Any, mask: Any | None = None) -> None:
        """Add one frame (or a batch): ``pred``/``gt`` integer labels of equal shape, ``mask`` the visibility
        mask of ``use_mask`` (required unless use_mask == 'none'). Ground-truth 255 voxels are skipped."""
        if mask is None and self.use_mask != "none":
            raise MetricError(f"update: use_mask={self.use_mask!r} but no mask was given; pass mask_"
                              f"{self.use_mask} or build the metric with use_mask='none'")
        p, g = self._labelled(pred, gt, mask if self.use_mask != "none" else None, IGNORE_LABEL)
        self.hist += confusion(g, p, self.num_classes)  # rows = gt, cols = pred (official hist_info)
        self.num_frames += 1

    def per_class_iou(self) -> np.ndarray:
        """float64 (num_classes,) IoU per class; NaN where the class is in neither prediction nor ground truth."""
        tp = np.diag(self.hist).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return tp / (self.hist.sum(1) + self.hist.sum(0) - tp)

    def semantic_classes(self) -> list[int]:
        """Class ids averaged into the mIoU (all but the free label)."""
        return [c for c in range(self.num_classes) if c != self.free_label]

    def compute(self) -> dict:
        """``miou`` (fraction, NaN-skipping mean over the semantic classes), ``per_class_iou`` {name: IoU},
        ``geometry_iou`` (occupied vs free), ``num_frames``, ``num_voxels``, ``use_mask``."""
        iou = self.per_class_iou()
        sem = self.semantic_classes()
        valid = iou[sem][~np.isnan(iou[sem])]
        miou = float(valid.mean()) if valid.size else float("nan")
        result = {
            "miou": miou,
            "per_class_iou": {self.class_names[c]: float(iou[c]) for c in sem},
            "num_frames": self.num_frames,
            "num_voxels": int(self.hist.sum()),
            "use_mask": self.use_mask,
        }
        if self.free_label is not None:
            f = self.free_label
            occ_tp = self.hist.sum() - self.hist[f, :].sum() - self.hist[:, f].sum() + self.hist[f, f]
            union = self.hist.sum() - self.hist[f, f]
            result["free_iou"] = float(iou[f])
            result["geometry_iou"] = float(occ_tp / union) if union else float("nan")
        return result

    def table(self) -> str:
        """Per-class IoU table in percent with the mIoU (as printed by the official ``count_miou``)."""
        r = self.compute()
        footer = [("mIoU", r["miou"])] + ([("geometry IoU", r["geometry_iou"])] if "geometry_iou" in r else [])
        return format_table(f"Occ3D semantic occupancy, {self.num_frames} frames, mask: {self.use_mask}",
                            list(r["per_class_iou"].items()), footer)
