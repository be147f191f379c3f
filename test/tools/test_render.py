"""protoocc-render: labels, predictions vs ground truth, metrics and camera images to PNG; bad input exits 2."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from protoocc_ros.metrics import OccupancyMetric
from protoocc_ros.tools import render as render_cli


def read_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable PNG"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
