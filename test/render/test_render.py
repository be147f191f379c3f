"""Renders: BEV orientation and colours, mosaic layout, comparison and IoU figures, the protoocc-render CLI."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from protoocc_ros.classes import KITTI_COLORS, OCC3D_COLORS
from protoocc_ros.metrics import OccupancyMetric
from protoocc_ros.render import (RenderError, bev_image, camera_mosaic, render_bev, render_comparison,
                                 render_iou_bars)
from protoocc_ros.render.bev import FREE_COLOR, UNKNOWN_COLOR
from protoocc_ros.tools import render as render_cli


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


def test_bev_puts_forward_up_and_left_left_with_the_top_class():
    img = bev_image(grid())
    assert img.shape == (200, 200, 3)
    front_left, back_right, middle = img[0, 0].astype(int), img[199, 199].astype(int), img[100, 100].astype(int)
    assert np.argmax(front_left) == np.argmax(OCC3D_COLORS[4]) and front_left[0] > 200      # car orange, on top
    assert front_left[2] < 60
    assert np.argmax(back_right) == 2                                                        # pedestrian blue
    assert middle[1] > middle[0] + 100                                                       # road (turquoise)


def test_bev_shows_free_and_unknown_columns():
    g = np.full((4, 4, 3), 17, dtype=np.uint8)
    g[0, 0, 0] = 4
    mask = np.ones_like(g, dtype=bool)
    mask[3, 3] = False
    img = bev_image(g, mask=mask)
    assert (img[0, 0] == UNKNOWN_COLOR).all()          # column (3, 3) unobserved
    assert (img[1, 1] == FREE_COLOR).all()             # observed and free
    assert not (img[3, 3] == FREE_COLOR).all()         # column (0, 0) holds the car
    kitti = bev_image(np.where(g == 17, 0, 1), KITTI_COLORS, free_label=0)
    assert (kitti[1, 1] == FREE_COLOR).all()


def test_bev_rejects_bad_grids():
    with pytest.raises(RenderError, match="3-D"):
        bev_image(np.zeros((4, 4), np.uint8))
    with pytest.raises(RenderError, match="label 30"):
        bev_image(np.full((2, 2, 2), 30, np.uint8))
    with pytest.raises(RenderError, match="dtype float"):
        bev_image(np.zeros((2, 2, 2), np.float32))


def test_mosaic_follows_the_nuscenes_layout():
    names = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
    images = [np.full((10, 20, 3), 40 * i, np.uint8) for i in range(6)]
    m = camera_mosaic(images, names, label=False)
    assert m.shape == (20, 60, 3)
    assert m[0, 20, 0] == 0 and m[0, 0, 0] == 80 and m[0, 40, 0] == 40     # FRONT_LEFT | FRONT | FRONT_RIGHT
    assert m[10, 0, 0] == 160 and m[10, 20, 0] == 120 and m[10, 40, 0] == 200
    with pytest.raises(RenderError, match="image 1"):
        camera_mosaic([images[0], np.zeros((4, 4), np.uint8)])


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


def test_cli_renders_labels_predictions_metrics_and_images(synthetic_dataroot, tmp_path, capsys):
    gt = next((synthetic_dataroot / "gts").rglob("labels.npz"))
    assert render_cli.main([str(gt), "-o", str(tmp_path / "bev.png")]) == 0
    with np.load(gt) as data:
        pred = data["semantics"].copy()
    pred[pred == 4] = 10                                # every car predicted as truck
    np.savez(tmp_path / "pred.npz", pred=pred)
    assert render_cli.main([str(tmp_path / "pred.npz"), "--gt", str(gt), "-o", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "car" in out
    metric = OccupancyMetric()
    with np.load(gt) as data:
        metric.update(pred, data["semantics"], data["mask_camera"])
    (tmp_path / "m.json").write_text(metric.to_json())
    assert render_cli.main(["--metrics", str(tmp_path / "m.json"), "-o", str(tmp_path / "iou.png")]) == 0
    jpgs = sorted((synthetic_dataroot / "samples").rglob("*.jpg"))[:6]
    assert render_cli.main(["--images", *map(str, jpgs), "-o", str(tmp_path / "mosaic.png")]) == 0
    kitti = next((synthetic_dataroot / "semantic_kitti").rglob("*.label"))
    assert render_cli.main([str(kitti), "-o", str(tmp_path / "kitti.png")]) == 0
    for name in ("bev", "cmp", "iou", "mosaic", "kitti"):
        read_png(tmp_path / f"{name}.png")
    assert json.loads((tmp_path / "m.json").read_text())["results"]["per_class_iou"]["car"] == 0.0


def test_cli_reports_bad_input(tmp_path, capsys):
    assert render_cli.main([str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.png")]) == 2
    assert "missing.npz: grid file is missing" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", a=np.zeros(3), b=np.zeros(3))
    assert render_cli.main([str(tmp_path / "bad.npz"), "-o", str(tmp_path / "x.png")]) == 2
    assert "no grid array" in capsys.readouterr().err
    np.save(tmp_path / "flat.npy", np.zeros((5, 5), np.uint8))
    assert render_cli.main([str(tmp_path / "flat.npy"), "-o", str(tmp_path / "x.png")]) == 2
    assert "3-D" in capsys.readouterr().err
