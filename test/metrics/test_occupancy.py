"""Occ3D mIoU against hand-computed cases and the official Metric_mIoU formulas."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from protoocc_ros.metrics import MetricError, OccupancyMetric

FREE = 17


def official_miou(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, float]:
    """Transcription of the official Metric_mIoU (add_batch with use_image_mask, count_miou)."""
    n = 18
    hist = np.zeros((n, n))
    for pred, gt, mask in frames:
        p, g = pred[mask].flatten(), gt[mask].flatten()
        k = (g >= 0) & (g < n)
        hist += np.bincount(n * g[k].astype(int) + p[k].astype(int), minlength=n ** 2).reshape(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    return iou, float(np.nanmean(iou[:n - 1]))


def test_hand_computed_two_classes_and_absent_classes_are_nan():
    # gt:   car car car road road free free
    # pred: car car road road road car free
    gt = np.array([4, 4, 4, 11, 11, FREE, FREE])
    pred = np.array([4, 4, 11, 11, 11, 4, FREE])
    m = OccupancyMetric(use_mask="none")
    m.update(pred, gt)
    r = m.compute()
    # car: tp 2, gt 3, pred 3 -> 2 / (3 + 3 - 2) = 0.5 ; road: tp 2, gt 2, pred 3 -> 2 / 3
    assert r["per_class_iou"]["car"] == pytest.approx(0.5)
    assert r["per_class_iou"]["driveable_surface"] == pytest.approx(2 / 3)
    assert math.isnan(r["per_class_iou"]["bus"])  # absent from both: NaN, as the official code
    assert r["miou"] == pytest.approx((0.5 + 2 / 3) / 2)  # nanmean skips the 15 absent classes
    assert "free" not in r["per_class_iou"]
    # free: tp 1, gt 2, pred 1 -> 1/2 ; geometry: occupied tp 5 of union 6
    assert r["free_iou"] == pytest.approx(0.5)
    assert r["geometry_iou"] == pytest.approx(5 / 6)


def test_class_only_in_prediction_has_zero_iou_and_counts_in_mean():
    gt = np.array([4, 4, FREE, FREE])
    pred = np.array([4, 4, 7, FREE])  # a pedestrian hallucinated in free space
    m = OccupancyMetric(use_mask="none")
    m.update(pred, gt)
    r = m.compute()
    assert r["per_class_iou"]["pedestrian"] == 0.0
    assert r["miou"] == pytest.approx((1.0 + 0.0) / 2)


def test_camera_mask_and_ignore_label_remove_voxels():
    gt = np.array([[4, 4], [255, 11]])
    pred = np.array([[4, 11], [4, 11]])
    mask = np.array([[True, False], [True, True]])
    m = OccupancyMetric()
    m.update(pred, gt, mask)
    r = m.compute()
    assert r["num_voxels"] == 2  # masked voxel and gt 255 dropped
    assert r["per_class_iou"]["car"] == 1.0 and r["per_class_iou"]["driveable_surface"] == 1.0


def test_accumulates_confusion_over_frames_not_mean_of_frames():
    m = OccupancyMetric(use_mask="none")
    m.update(np.array([4, 4, 4, 4]), np.array([4, 4, 4, 4]))  # car IoU 1 in this frame
    m.update(np.array([FREE]), np.array([4]))                  # car IoU 0 in this frame
    assert m.compute()["per_class_iou"]["car"] == pytest.approx(4 / 5)  # not (1 + 0) / 2


def test_matches_official_formula_on_random_frames():
    rng = np.random.default_rng(0)
    frames = []
    m = OccupancyMetric(use_mask="camera")
    for _ in range(4):
        gt = rng.choice([0, 3, 4, 11, 13, 16, 17, 17, 17], size=(20, 20, 4))
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 18, gt.shape))
        mask = rng.random(gt.shape) < 0.8
        frames.append((pred, gt, mask))
        m.update(pred, gt, mask)
    iou, miou = official_miou(frames)
    ours = m.per_class_iou()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(iou))
    np.testing.assert_allclose(ours[~np.isnan(iou)], iou[~np.isnan(iou)])
    assert m.compute()["miou"] == pytest.approx(miou)


def test_merge_equals_single_accumulation_and_json_round_trip():
    rng = np.random.default_rng(1)
    data = [(rng.integers(0, 18, 50), rng.integers(0, 18, 50)) for _ in range(4)]
    whole, a, b = (OccupancyMetric(use_mask="none") for _ in range(3))
    for i, (p, g) in enumerate(data):
        whole.update(p, g)
        (a if i % 2 else b).update(p, g)
    a.merge(b)
    np.testing.assert_array_equal(a.hist, whole.hist)
    assert a.num_frames == 4
    text = whole.to_json()
    parsed = json.loads(text)  # strict JSON (NaN -> null)
    assert parsed["results"]["miou"] == pytest.approx(whole.compute()["miou"])
    again = OccupancyMetric.from_json(text)
    np.testing.assert_array_equal(again.hist, whole.hist)


def test_table_lists_every_semantic_class_and_miou():
    m = OccupancyMetric(use_mask="none")
    m.update(np.array([4, 17]), np.array([4, 17]))
    text = m.table()
    assert "car" in text and "100.00" in text and "mIoU" in text and "vegetation" in text


@pytest.mark.parametrize("pred,gt,mask,match", [
    (np.zeros(3, int), np.zeros(4, int), np.ones(4, bool), "shape"),
    (np.array([0, 18]), np.array([0, 0]), np.ones(2, bool), "pred holds label 18"),
    (np.array([0, 1]), np.array([0, 40]), np.ones(2, bool), "gt holds label 40"),
    (np.array([0.5, 1.0]), np.array([0, 1]), np.ones(2, bool), "dtype"),
    (np.array([0, 1]), np.array([0, 1]), None, "no mask"),
])
def test_bad_input_raises_metric_error(pred, gt, mask, match):
    with pytest.raises(MetricError, match=match):
        OccupancyMetric().update(pred, gt, mask)


def test_merge_refuses_different_settings():
    with pytest.raises(MetricError, match="cannot merge"):
        OccupancyMetric(use_mask="camera").merge(OccupancyMetric(use_mask="lidar"))
