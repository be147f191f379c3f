"""Which benchmark metric scores a label grid: Occ3D mIoU or SemanticKITTI SSC (the one rule, used everywhere)."""
from __future__ import annotations

from collections.abc import Sequence

from protoocc_ros.classes import IGNORE_LABEL, KITTI_EMPTY_LABEL, KITTI_NUM_CLASSES, OCC3D_FREE_LABEL
from protoocc_ros.metrics.errors import MetricError
from protoocc_ros.metrics.occupancy import OccupancyMetric
from protoocc_ros.metrics.ssc import SSCMetric

METRIC_KINDS = ("auto", "occ3d", "semantic_kitti")


def metric_kind(num_classes: int, free_label: int | None, kind: str = "auto") -> str:
    """'occ3d' or 'semantic_kitti'; ``auto``: SemanticKITTI for 20 classes with 0 = empty, else Occ3D."""
    if kind not in METRIC_KINDS:
        raise MetricError(f"metric {kind!r}: expected one of {METRIC_KINDS}")
    if kind != "auto":
        return kind
    return "semantic_kitti" if num_classes == KITTI_NUM_CLASSES and free_label == KITTI_EMPTY_LABEL else "occ3d"


def build_metric(num_classes: int, free_label: int | None = OCC3D_FREE_LABEL, *, kind: str = "auto",
                 use_mask: str = "none", ignore_index: int = IGNORE_LABEL,
                 class_names: Sequence[str] | None = None) -> OccupancyMetric | SSCMetric:
    """The metric of a grid's label set (``kind`` as :func:`metric_kind`); ``use_mask`` applies to Occ3D only."""
    names = list(class_names) if class_names else None
    if metric_kind(num_classes, free_label, kind) == "semantic_kitti":
        return SSCMetric(num_classes, ignore_index, names)
    return OccupancyMetric(num_classes, free_label, use_mask, names)
