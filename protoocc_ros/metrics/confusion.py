"""Confusion-matrix accumulation shared by the Occ3D and SSC metrics (input checks, bincount, JSON helpers)."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from protoocc_ros.metrics.errors import MetricError


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Tensor / array-like -> numpy array (torch tensors are detached and moved to CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise MetricError(f"{name}: expected a numeric array, got an object array")
    return arr


def select(pred: Any, gt: Any, mask: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and return the flat int64 (pred, gt) of the voxels where ``mask`` is true."""
    p, g = to_numpy(pred, "pred"), to_numpy(gt, "gt")
    if p.shape != g.shape:
        raise MetricError(f"pred has shape {p.shape} but gt has shape {g.shape}; expected equal shapes")
    for name, a in (("pred", p), ("gt", g)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
            raise MetricError(f"{name}: dtype {a.dtype} is not an integer label type")
    if mask is not None:
        m = to_numpy(mask, "mask")
        if m.shape != g.shape:
            raise MetricError(f"mask has shape {m.shape} but gt has shape {g.shape}; expected equal shapes")
        m = m.astype(bool)
        return p[m].astype(np.int64), g[m].astype(np.int64)
    return p.reshape(-1).astype(np.int64), g.reshape(-1).astype(np.int64)


def check_pred_range(pred: np.ndarray, num_classes: int) -> None:
    """Predictions must be class ids in [0, num_classes)."""
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        bad = pred[(pred < 0) | (pred >= num_classes)][0]
        raise MetricError(f"pred holds label {int(bad)}; expected labels in [0, {num_classes})")


def confusion(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """int64 (n, n) matrix counting (rows[i], cols[i]) pairs (np.bincount, as the official Occ3D code)."""
    return np.bincount(n * rows + cols, minlength=n * n).reshape(n, n).astype(np.int64)


def nan_to_none(value: Any) -> Any:
    """Recursively replace float NaN by None so the result is strict JSON."""
    if isinstance(value, dict):
        return {k: nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def dumps(result: dict) -> str:
    """JSON text of a metric result (NaN written as null)."""
    return json.dumps(nan_to_none(result), indent=2, allow_nan=False)


def format_table(title: str, rows: list[tuple[str, float]], footer: list[tuple[str, float]]) -> str:
    """Two-column text table of IoUs in percent (NaN shown as 'nan')."""
    width = max([len(n) for n, _ in rows + footer] + [10])
    line = "-" * (width + 12)
    out = [title, line, f"{'class':<{width}}  {'IoU [%]':>8}", line]
    out += [f"{n:<{width}}  {v * 100:>8.2f}" if not math.isnan(v) else f"{n:<{width}}  {'nan':>8}"
            for n, v in rows]
    out.append(line)
    out += [f"{n:<{width}}  {v * 100:>8.2f}" if not math.isnan(v) else f"{n:<{width}}  {'nan':>8}"
            for n, v in footer]
    return "\n".join(out)


class ConfusionMetric:
    """Base of the benchmark metrics: an int64 confusion matrix accumulated over frames, mergeable, JSON-able.

    Subclasses implement ``update``, ``compute`` and ``config`` (the constructor keyword arguments).
    """

    def __init__(self, num_classes: int, class_names: tuple[str, ...]) -> None:
        if num_classes < 2:
            raise MetricError(f"num_classes={num_classes}: expected at least 2 classes")
        if len(class_names) != num_classes:
            raise MetricError(f"class_names has {len(class_names)} entries; expected num_classes={num_classes}")
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names)
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated frames."""
        self.hist = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.num_frames = 0

    def config(self) -> dict:
        raise NotImplementedError

    def _labelled(self, pred: Any, gt: Any, mask: Any | None, ignore: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat int64 (pred, gt) of the voxels inside ``mask`` whose ground truth is not ``ignore``; checks that
        gt labels are classes or ``ignore`` and that predictions are classes."""
        p, g = select(pred, gt, mask)
        bad = ((g < 0) | (g >= self.num_classes)) & (g != ignore)
        if bad.any():
            raise MetricError(f"gt holds label {int(g[bad][0])}; expected [0, {self.num_classes}) or "
                              f"{ignore} (ignored)")
        keep = g != ignore
        check_pred_range(p[keep], self.num_classes)
        return p[keep], g[keep]

    def update(self, pred: Any, gt: Any, mask: Any | None = None) -> None:
        """Accumulate one frame (or a batch) of predictions against ground truth."""
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError

    def table(self) -> str:
        """The results as the benchmark's printed table."""
        raise NotImplementedError

    def merge(self, other: ConfusionMetric) -> ConfusionMetric:
        """Add another metric's counts (e.g. from another process) into this one; returns self."""
        if type(other) is not type(self) or other.config() != self.config():
            raise MetricError(f"cannot merge {type(other).__name__}{other.config()} into "
                              f"{type(self).__name__}{self.config()}: expected the same metric and settings")
        self.hist += other.hist
        self.num_frames += other.num_frames
        return self

    def to_json(self) -> str:
        """Results, settings and the raw confusion matrix as JSON text (NaN written as null)."""
        return dumps({"metric": type(self).__name__, "config": self.config(), "results": self.compute(),
                      "num_frames": self.num_frames, "confusion_matrix": self.hist.tolist()})

    @classmethod
    def from_json(cls, text: str) -> ConfusionMetric:
        """Rebuild a metric (settings + confusion matrix) from ``to_json`` output."""
        data = json.loads(text)
        if data.get("metric") != cls.__name__:
            raise MetricError(f"JSON holds metric {data.get('metric')!r}; expected {cls.__name__!r}")
        metric = cls(**data["config"])
        hist = np.asarray(data["confusion_matrix"], dtype=np.int64)
        if hist.shape != metric.hist.shape:
            raise MetricError(f"JSON confusion_matrix has shape {hist.shape}; expected {metric.hist.shape}")
        metric.hist = hist
        metric.num_frames = int(data["num_frames"])
        return metric
