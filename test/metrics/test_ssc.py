"""SemanticKITTI SSC metrics against hand-computed cases and the semantic-kitti-api formulas."""
from __future__ import annotations

import numpy as np
import pytest

from protoocc_ros.metrics import MetricError, SSCMetric
from protoocc_ros.metrics.ssc import EPSILON


def test_hand_computed_completion_and_semantics():
    # gt:   empty empty car car road road ignore
    # pred: empty car   car road road empty car
    gt = np.array([0, 0, 1, 1, 9, 9, 255])
    pred = np.array([0, 1, 1, 9, 9, 0, 1])
    m = SSCMetric()
    m.update(pred, gt)
    r = m.compute()
    # occupied-vs-empty over the 6 kept voxels: both occupied 3 (car,car->road,road), pred-only 1, gt-only 1
    assert r["completion_iou"] == pytest.approx(3 / 5)
    assert r["precision"] == pytest.approx(3 / (4 + EPSILON))
    assert r["recall"] == pytest.approx(3 / (4 + EPSILON))
    # car: tp 1, fp 1 (empty->car), fn 1 (car->road) = 1/3 ; road: tp 1, fp 1, fn 1 = 1/3
    assert r["per_class_iou"]["car"] == pytest.approx(1 / 3)
    assert r["per_class_iou"]["road"] == pytest.approx(1 / 3)
    # absent classes have IoU 0 (official 1e-15 guard) and count in the mean over 19 classes
    assert r["per_class_iou"]["bicycle"] == 0.0
    assert r["miou"] == pytest.approx((1 / 3 + 1 / 3) / 19)
    assert "empty" not in r["per_class_iou"]


def test_matches_semantic_kitti_api_on_random_frames():
    rng = np.random.default_rng(0)
    conf = np.zeros((20, 20), dtype=np.int64)
    m = SSCMetric()
    for _ in range(3):
        gt = rng.choice([0, 0, 0, 1, 9, 11, 13, 15, 255], size=(16, 16, 4))
        pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, 20, gt.shape))
        m.update(pred, gt)
        keep = gt != 255  # get_eval_mask
        np.add.at(conf, (pred[keep], gt[keep]), 1)  # iouEval.addBatch: rows = pred
    tp = np.diag(conf)
    iou = tp / (tp + (conf.sum(1) - tp) + (conf.sum(0) - tp) + 1e-15)
    r = m.compute()
    assert r["miou"] == pytest.approx(iou[1:].mean())
    assert r["precision"] == pytest.approx(conf[1:, 1:].sum() / (conf[1:, :].sum() + EPSILON))
    assert r["recall"] == pytest.approx(conf[1:, 1:].sum() / (conf[:, 1:].sum() + EPSILON))
    assert r["completion_iou"] == pytest.approx(conf[1:, 1:].sum() / (conf.sum() - conf[0, 0]))


def test_extra_mask_and_merge():
    gt = np.array([1, 1, 0, 0])
    pred = np.array([1, 0, 0, 1])
    a, b, whole = SSCMetric(), SSCMetric(), SSCMetric()
    a.update(pred[:2], gt[:2])
    b.update(pred[2:], gt[2:])
    whole.update(pred, gt)
    np.testing.assert_array_equal(a.merge(b).hist, whole.hist)
    masked = SSCMetric()
    masked.update(pred, gt, mask=np.array([True, False, True, False]))
    assert masked.compute()["completion_iou"] == 1.0
    again = SSCMetric.from_json(whole.to_json())
    assert again.compute() == whole.compute()


def test_bad_input_raises_metric_error():
    with pytest.raises(MetricError, match="pred holds label 20"):
        SSCMetric().update(np.array([20]), np.array([1]))
    with pytest.raises(MetricError, match="gt holds label 77"):
        SSCMetric().update(np.array([1]), np.array([77]))
    with pytest.raises(MetricError, match="shape"):
        SSCMetric().update(np.zeros((2, 2), int), np.zeros(4, int))
    with pytest.raises(MetricError, match="expected 'SSCMetric'"):
        SSCMetric.from_json('{"metric": "OccupancyMetric"}')
