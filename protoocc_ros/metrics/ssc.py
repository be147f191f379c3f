"""SemanticKITTI semantic scene completion metrics (docs/architecture.md "Data"), identical to semantic-kitti-api.

Official definition (semantic-kitti-api evaluate_completion.py + auxiliary/np_ioueval.py): voxels whose ground
truth is 255 (invalid or unlabeled) are dropped, ``conf[pred, gt]`` is accumulated over all frames (rows =
prediction), and with class 0 = empty:
  completion IoU = conf[1:, 1:].sum() / (conf.sum() - conf[0, 0])
  precision      = conf[1:, 1:].sum() / (conf[1:, :].sum() + eps)
  recall         = conf[1:, 1:].sum() / (conf[:, 1:].sum() + eps)
  IoU_c          = tp_c / (tp_c + fp_c + fn_c + 1e-15),  mIoU = mean(IoU[1:20])
with eps = float32 machine epsilon. Unlike Occ3D, a class absent from both prediction and ground truth has
IoU 0 (the 1e-15 guard) and *counts* in the mean.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from protoocc_ros.classes import IGNORE_LABEL, KITTI_EMPTY_LABEL, class_names_for
from protoocc_ros.metrics.confusion import ConfusionMetric, confusion, format_table

EPSILON = float(np.finfo(np.float32).eps)


class SSCMetric(ConfusionMetric):
    """SSC completion IoU / precision / recall and semantic mIoU over classes 1..num_classes-1."""

    def __init__(self, num_classes: int = 20, ignore_index: int = IGNORE_LABEL,
                 class_names: tuple[str, ...] | list[str] | None = None) -> None:
        self.ignore_index = int(ignore_index)
        super().__init__(num_classes, tuple(class_names) if class_names else class_names_for(num_classes))

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "class_names": list(self.class_names)}

    def update(self, pred: Any, gt: Any, mask: Any | None = None) -> None:
        """Add one frame: integer ``pred``/``gt`` of equal shape; gt == ignore_index and voxels outside the
        optional boolean ``mask`` are skipped."""
        p, g = self._labelled(pred, gt, mask, self.ignore_index)
        self.hist += confusion(p, g, self.num_classes)  # rows = pred, cols = gt (official iouEval)
        self.num_frames += 1

    def per_class_iou(self) -> np.ndarray:
        """float64 (num_classes,) IoU per class with the official 1e-15 guard (absent class -> 0)."""
        tp = np.diag(self.hist).astype(np.float64)
        fp = self.hist.sum(1) - tp
        fn = self.hist.sum(0) - tp
        return tp / (tp + fp + fn + 1e-15)

    def compute(self) -> dict:
        """``completion_iou``, ``precision``, ``recall``, ``miou`` (fractions), ``per_class_iou`` {name: IoU}."""
        conf = self.hist.astype(np.float64)
        e = KITTI_EMPTY_LABEL
        occ = [c for c in range(self.num_classes) if c != e]
        tp_occ = conf[np.ix_(occ, occ)].sum()
        denom = conf.sum() - conf[e, e]
        iou = self.per_class_iou()
        return {
            "completion_iou": float(tp_occ / denom) if denom else float("nan"),
            "precision": float(tp_occ / (conf[occ, :].sum() + EPSILON)),
            "recall": float(tp_occ / (conf[:, occ].sum() + EPSILON)),
            "miou": float(iou[occ].mean()),
            "per_class_iou": {self.class_names[c]: float(iou[c]) for c in occ},
            "num_frames": self.num_frames,
            "num_voxels": int(self.hist.sum()),
        }

    def table(self) -> str:
        """Per-class IoU table in percent with mIoU, completion IoU, precision and recall."""
        r = self.compute()
        return format_table(f"SemanticKITTI SSC, {self.num_frames} frames", list(r["per_class_iou"].items()),
                            [("mIoU", r["miou"]), ("completion IoU", r["completion_iou"]),
                             ("precision", r["precision"]), ("recall", r["recall"])])
