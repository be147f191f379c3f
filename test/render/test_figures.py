"""Figures: prediction vs ground truth comparison, BEV with legend, per-class IoU bars."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from protoocc_ros.classes import OCC3D_COLORS
from protoocc_ros.metrics import OccupancyMetric
from protoocc_ros.render import RenderError, render_bev, render_comparison, render_iou_bars


def read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable PNG"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def grid() -> np.ndarray:
    g = np.full((200, 200, 16), 17, dtype=np.uint8)
    g[:, :, 2] = 11                    # road everywhere
    g[199, 199, 3:6] = 4               # a car at the front-left corner (max x, max y)
    g[0, 0, 3] = 7                     # a pedestrian at the back-right corner
    return g


def test_comparison_marks_wrong_columns(tmp_path):
    gt = grid()
    pred = gt.copy()
    pred[100:110, 100:110, 5] = 10                     # a truck that is not there
    same = read_png(render_comparison(tmp_path / "same.png", gt, gt))
    diff = read_png(render_comparison(tmp_path / "diff.png", pred, gt, title="truck"))
    red = lambda im: ((im[..., 0] > 200) & (im[..., 1] < 80) & (im[..., 2] < 80)).sum()  # noqa: E731
    assert red(same) == 0 < red(diff)
    with pytest.raises(RenderError, match="shape"):
        render_comparison(tmp_path / "x.png", pred[:10], gt)


def test_bev_and_iou_figures_are_written(tmp_path):
    assert read_png(render_bev(tmp_path / "bev.png", grid(), title="t")).shape[0] > 200
    m = OccupancyMetric(use_mask="none")
    m.update(grid(), grid())
    r = m.compute()
    bars = read_png(render_iou_bars(tmp_path / "iou.png", r["per_class_iou"], r["miou"], OCC3D_COLORS))
    assert bars.shape[0] > 300
    with pytest.raises(RenderError, match="empty"):
        render_iou_bars(tmp_path / "none.png", {})
