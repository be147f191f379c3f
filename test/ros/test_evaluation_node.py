"""evaluation_node over real DDS: scores a ground-truth stream against itself (mIoU 100 %) and against a known
corruption (mIoU computed here by hand), stops on expected_frames, /replay/done or SIGINT, writes JSON + PNGs."""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import ros_helpers as rh
from protoocc_ros.classes import OCC3D_CLASS_NAMES
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.publishing.occupancy_msg import UNKNOWN_LABEL, grid_to_msg

RANGE = [0.0, 0.0, 0.0, 4.0, 4.0, 1.6]   # 10 x 10 x 4 voxels of 0.4 m
T0 = 1_700_000_000_000_000_000
CAR, TRUCK, ROAD, FREE = 4, 10, 11, 17


def _ground_truth(k: int) -> np.ndarray:
    """Free space, a road layer, a car and a truck; the last x-slab is outside the camera mask (255)."""
    gt = np.full((10, 10, 4), FREE, dtype=np.uint8)
    gt[:, :, 0] = ROAD
    gt[2:4, 2 + k % 3:5 + k % 3, 1:3] = CAR     # 2*3*2 = 12 voxels
    gt[6:9, 6:8, 1:2] = TRUCK                   # 3*2*1 = 6 voxels
    gt[9] = UNKNOWN_LABEL
    return gt


def _car_as_truck(gt: np.ndarray) -> np.ndarray:
    pred = gt.copy()
    pred[pred == CAR] = TRUCK
    pred[pred == UNKNOWN_LABEL] = CAR            # must not count: the ground truth is unknown there
    return pred


def _kitti_ground_truth(k: int) -> np.ndarray:
    """SemanticKITTI labels: empty (0), road (9), a car (1); 255 = invalid."""
    gt = np.zeros((10, 10, 4), dtype=np.uint8)
    gt[:, :, 0] = 9
    gt[1:3, 1 + k:4 + k, 1:3] = 1
    gt[9] = UNKNOWN_LABEL
    return gt


def _run_evaluation(tmp_path: Path, n_frames: int, predict: Callable[[np.ndarray], np.ndarray],
                    params: dict, after_publish: Callable[..., None] | None = None,
                    ground_truth: Callable[[int], np.ndarray] = _ground_truth,
                    class_names: tuple[str, ...] = OCC3D_CLASS_NAMES, free: int = FREE) -> dict:
    """Start evaluation_node, publish n_frames GT/prediction pairs (predictions first, in reverse order, to
    exercise pairing), run `after_publish(node, executor, evaluation, summaries)`, wait for the node to exit;
    returns the JSON report."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    from protoocc_ros.msg import SemanticOccupancyGrid
    from protoocc_ros.ros.runtime.qos import reliable_qos

    out = tmp_path / "eval"
    with rh.ros_context() as context:
        node = Node("grid_talker", context=context)
        pred_pub = node.create_publisher(SemanticOccupancyGrid, mb.PREDICTION_TOPIC, reliable_qos(100))
        gt_pub = node.create_publisher(SemanticOccupancyGrid, mb.GROUND_TRUTH_TOPIC, reliable_qos(100))
        summaries: list[String] = []
        node.create_subscription(String, "/evaluation_node/summary", summaries.append, reliable_qos(100))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        with rh.NodeProcess("protoocc_ros.ros.nodes.evaluation_node", tmp_path / "eval.log",
                            params={"output_dir": str(out), **params}) as evaluation:
            matched = rh.spin_until(executor, lambda: pred_pub.get_subscription_count() > 0
                                    and gt_pub.get_subscription_count() > 0, 20.0)
            assert matched, evaluation.output()
            rh.spin_until(executor, lambda: False, 0.5)   # the subscriber side matches a moment later
            header = lambda k: mb.header(T0 + k * 100_000_000, "base_link")  # noqa: E731
            for k in reversed(range(n_frames)):
                pred_pub.publish(grid_to_msg(predict(ground_truth(k)), RANGE, 0.4, class_names, free, header(k)))
            for k in range(n_frames):
                gt_pub.publish(grid_to_msg(ground_truth(k), RANGE, 0.4, class_names, free, header(k)))
            if after_publish is not None:
                after_publish(node, executor, evaluation, summaries)
            rh.spin_until(executor, lambda: evaluation.proc.poll() is not None, 20.0)
            assert evaluation.wait(5.0) == 0, evaluation.output()
        executor.shutdown()
        node.destroy_node()
    report = json.loads((out / "evaluation.json").read_text())
    report["_summaries"] = [json.loads(s.data) for s in summaries]
    return report


def test_ground_truth_against_itself_scores_100(tmp_path: Path) -> None:
    report = _run_evaluation(tmp_path, 3, lambda gt: gt, {"expected_frames": 3})
    assert report["results"]["miou"] == pytest.approx(1.0)
    assert report["counts"]["paired"] == 3 and report["stop_reason"].startswith("expected_frames")
    assert [f["miou"] for f in report["frames"]] == pytest.approx([1.0] * 3)
    # only the classes present are averaged (Occ3D nanmean): car, truck, road
    ious = report["results"]["per_class_iou"]
    assert {k for k, v in ious.items() if v is not None} == {"car", "truck", "driveable_surface"}
    assert report["_summaries"][-1]["frames"] == 3
    for png in ("bev_prediction_vs_ground_truth.png", "iou_bars.png"):
        assert (tmp_path / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_car_predicted_as_truck_gives_known_miou(tmp_path: Path) -> None:
    n = 4
    report = _run_evaluation(tmp_path, n, _car_as_truck, {"expected_frames": n, "render": False})
    cars, trucks = 12 * n, 6 * n
    # car: 0 true positives; truck: 6n TP, union = 6n GT + 12n wrong predictions; road: exact
    expected = np.mean([0.0, trucks / (trucks + cars), 1.0])
    assert report["results"]["miou"] == pytest.approx(expected)
    assert report["results"]["per_class_iou"]["car"] == 0.0
    # voxels outside the camera mask (GT 255) are not counted: 9 visible x-slabs of 10 x 4
    assert report["results"]["num_voxels"] == n * 9 * 10 * 4
    assert not (tmp_path / "eval" / "iou_bars.png").exists()


def test_stops_after_replay_done_once_all_ground_truth_is_paired(tmp_path: Path) -> None:
    def announce_done(node, executor, evaluation, summaries) -> None:
        from std_msgs.msg import String

        from protoocc_ros.ros.runtime.qos import latched_qos

        node.create_publisher(String, mb.DONE_TOPIC, latched_qos()).publish(String(data=json.dumps({"frames": 2})))

    # use_sim_time as in the launch files, with no /clock at all: the stop check must not run on ROS time
    report = _run_evaluation(tmp_path, 2, lambda gt: gt, {"render": False, "done_timeout_s": 20.0,
                                                          "use_sim_time": True}, announce_done)
    assert report["stop_reason"] == "all ground truth of the replay paired"
    assert report["counts"]["paired"] == 2 and report["replay"] == {"frames": 2}


def test_sigint_writes_the_report_of_the_frames_so_far(tmp_path: Path) -> None:
    def interrupt(node, executor, evaluation, summaries) -> None:
        paired = rh.spin_until(executor, lambda: len(summaries) == 2, 20.0)
        assert paired, evaluation.output()
        evaluation.proc.send_signal(signal.SIGINT)

    report = _run_evaluation(tmp_path, 2, lambda gt: gt, {"render": False}, interrupt)
    assert report["stop_reason"] == "shutdown" and report["counts"]["paired"] == 2


def test_sigterm_writes_the_report_too(tmp_path: Path) -> None:
    def terminate(node, executor, evaluation, summaries) -> None:
        assert rh.spin_until(executor, lambda: len(summaries) == 1, 20.0), evaluation.output()
        evaluation.proc.send_signal(signal.SIGTERM)

    report = _run_evaluation(tmp_path, 1, lambda gt: gt, {"render": False}, terminate)
    assert report["counts"]["paired"] == 1


def test_twenty_class_grids_are_scored_with_the_semantic_kitti_metric(tmp_path: Path) -> None:
    from protoocc_ros.classes import KITTI_CLASS_NAMES

    def car_as_empty(gt: np.ndarray) -> np.ndarray:
        pred = gt.copy()
        pred[pred == 1] = 0
        return pred

    report = _run_evaluation(tmp_path, 2, car_as_empty, {"expected_frames": 2, "render": False},
                             ground_truth=_kitti_ground_truth, class_names=KITTI_CLASS_NAMES, free=0)
    assert report["metric"] == "SSCMetric"
    r = report["results"]
    # road is right, the car is missed: completion = road / (road + car); SSC mIoU averages all 19 classes
    road, car = 2 * 10 * 9, 2 * 2 * 3 * 2
    assert r["completion_iou"] == pytest.approx(road / (road + car))
    assert r["per_class_iou"]["road"] == pytest.approx(1.0) and r["per_class_iou"]["car"] == 0.0
    assert r["miou"] == pytest.approx(1.0 / 19)
