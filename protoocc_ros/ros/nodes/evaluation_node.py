"""evaluation_node (docs/architecture.md "ROS interfaces"): predictions vs ground truth by stamp -> running mIoU,
JSON report + renders at exit.

Predictions (`prediction_topic`) and ground truth (`ground_truth_topic`, 255 = unknown outside mask_camera)
are paired by identical header stamps and accumulated with protoocc_ros.metrics (Occ3D mIoU for 18-class
grids, SemanticKITTI SSC for 20-class grids; `metric` overrides). After every pair a JSON summary goes out on
`~/summary` (std_msgs/String). The report (`<output_dir>/evaluation.json`) and renders (BEV prediction vs
ground truth of the last pair, per-class IoU bars) are written when the node stops, which happens
  - after `expected_frames` pairs (if > 0),
  - after the replay node's /replay/done summary (if `exit_on_done`): once every ground-truth frame the
    replay announced has arrived and been paired, or `done_timeout_s` after the announcement,
  - on SIGINT / SIGTERM.
The exit status is 0 when the report was written.
"""
from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import rclpy
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from protoocc_ros.classes import KITTI_NUM_CLASSES, class_table
from protoocc_ros.metrics import MetricError, OccupancyMetric, SSCMetric, build_metric
from protoocc_ros.metrics.confusion import dumps
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.nodes.evaluation_params import EvaluationNodeParams
from protoocc_ros.ros.publishing.occupancy_msg import UNKNOWN_LABEL, OccupancyGrid, OccupancyMsgError, msg_to_grid
from protoocc_ros.ros.runtime.params import declared_params
from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos
from protoocc_ros.ros.runtime.spin import spin_until

NODE_NAME = "evaluation_node"
REPORT_NAME = "evaluation.json"
PARAMS = EvaluationNodeParams


class EvaluationNodeError(Exception):
    """Invalid evaluation parameters or incompatible grids; the message names the parameter/topic and value."""


class EvaluationNode(Node):
    """Pairs grids by stamp and accumulates the benchmark metric."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.p = declared_params(self, EvaluationNodeParams, EvaluationNodeError, NODE_NAME)
        self.metric: OccupancyMetric | SSCMetric | None = None
        self._pending: dict[str, OrderedDict[int, OccupancyGrid]] = {"prediction": OrderedDict(),
                                                                      "ground_truth": OrderedDict()}
        self.counts = {"prediction": 0, "ground_truth": 0, "paired": 0, "dropped": 0, "rejected": 0}
        self.frames: list[dict[str, Any]] = []            # per pair: stamp and per-frame mIoU
        self.last_pair: tuple[OccupancyGrid, OccupancyGrid] | None = None
        self.done_summary: dict[str, Any] | None = None
        self._done_at = 0.0
        self.finished = False
        self.stop_reason = ""
        self._summary_pub = self.create_publisher(String, "~/summary", reliable_qos(10))
        self.create_subscription(SemanticOccupancyGrid, self.p.prediction_topic,
                                 lambda m: self._on_grid("prediction", m), reliable_qos(50))
        self.create_subscription(SemanticOccupancyGrid, self.p.ground_truth_topic,
                                 lambda m: self._on_grid("ground_truth", m), reliable_qos(50))
        self.create_subscription(String, self.p.done_topic, self._on_done, latched_qos())
        # steady clock: with use_sim_time a ROS-time timer would stop with the replay's /clock
        self.create_timer(0.2, self._check_done, clock=RosClock(clock_type=ClockType.STEADY_TIME))

    # --- pairing -------------------------------------------------------------------------------------------
    def _on_grid(self, kind: str, msg: SemanticOccupancyGrid) -> None:
        try:
            grid = msg_to_grid(msg)
        except OccupancyMsgError as exc:
            self.counts["rejected"] += 1
            self.get_logger().error(f"{self.p.topic(kind)}: {exc}")
            return
        self.counts[kind] += 1
        other = "ground_truth" if kind == "prediction" else "prediction"
        match = self._pending[other].pop(grid.stamp_ns, None)
        if match is None:
            pending = self._pending[kind]
            pending[grid.stamp_ns] = grid
            while len(pending) > self.p.max_pending:
                pending.popitem(last=False)
                self.counts["dropped"] += 1
            return
        pred, gt = (grid, match) if kind == "prediction" else (match, grid)
        self.add_pair(pred, gt)

    def add_pair(self, pred: OccupancyGrid, gt: OccupancyGrid) -> None:
        """Accumulate one prediction/ground-truth pair (same stamp) and publish the running summary."""
        if pred.labels.shape != gt.labels.shape:
            self.counts["rejected"] += 1
            self.get_logger().error(f"stamp {gt.stamp_ns}: prediction grid {pred.labels.shape} and ground truth "
                                    f"{gt.labels.shape} differ; pair skipped")
            return
        if self.metric is None:
            self.metric = self._make_metric(gt)
        frame_metric = self._make_metric(gt)
        try:
            self.metric.update(pred.labels, gt.labels)
            frame_metric.update(pred.labels, gt.labels)
        except MetricError as exc:
            self.counts["rejected"] += 1
            self.get_logger().error(f"stamp {gt.stamp_ns}: {exc}")
            return
        self.counts["paired"] += 1
        self.frames.append({"stamp_ns": gt.stamp_ns, "miou": frame_metric.compute()["miou"]})
        self.last_pair = (pred, gt)
        self._summary_pub.publish(String(data=dumps(self.summary())))
        if self.p.expected_frames and self.counts["paired"] >= self.p.expected_frames:
            self._stop(f"expected_frames={self.p.expected_frames} reached")

    def _make_metric(self, gt: OccupancyGrid) -> OccupancyMetric | SSCMetric:
        n = len(gt.class_names) or (KITTI_NUM_CLASSES if gt.free_label == 0 else gt.free_label + 1)
        # 255 outside mask_camera is skipped by the metric: the camera mask is already applied by replay.
        return build_metric(n, gt.free_label, kind=self.p.metric, use_mask="none",
                            class_names=gt.class_names or None)

    # --- stopping ------------------------------------------------------------------------------------------
    def _on_done(self, msg: String) -> None:
        try:
            self.done_summary = json.loads(msg.data)
        except json.JSONDecodeError:
            self.done_summary = {"raw": msg.data}
        self._done_at = time.monotonic()
        self.get_logger().info(f"replay finished: {msg.data[:200]}")

    def _check_done(self) -> None:
        if self.done_summary is None or not self.p.exit_on_done or self.finished:
            return
        announced = self.done_summary.get("frames")
        all_gt = isinstance(announced, int) and self.counts["ground_truth"] >= announced
        if all_gt and not self._pending["ground_truth"]:
            self._stop("all ground truth of the replay paired")
        elif time.monotonic() - self._done_at > self.p.done_timeout_s:
            self._stop(f"done_timeout_s={self.p.done_timeout_s} after /replay/done")

    def _stop(self, reason: str) -> None:
        if not self.finished:
            self.finished, self.stop_reason = True, reason
            self.get_logger().info(f"stopping: {reason}")

    # --- results -------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        results = self.metric.compute() if self.metric is not None else {}
        return {"frames": self.counts["paired"], "miou": results.get("miou"), "counts": dict(self.counts),
                "last_stamp_ns": self.frames[-1]["stamp_ns"] if self.frames else None}

    def report(self) -> dict[str, Any]:
        return {
            "metric": type(self.metric).__name__ if self.metric is not None else None,
            "config": self.metric.config() if self.metric is not None else None,
            "results": self.metric.compute() if self.metric is not None else None,
            "counts": {**self.counts, "unpaired_prediction": len(self._pending["prediction"]),
                       "unpaired_ground_truth": len(self._pending["ground_truth"])},
            "stop_reason": self.stop_reason or "shutdown",
            "replay": self.done_summary,
            "frames": self.frames,
            "confusion_matrix": self.metric.hist.tolist() if self.metric is not None else None,
            "topics": {"prediction": self.p.prediction_topic, "ground_truth": self.p.ground_truth_topic},
        }

    def write_outputs(self) -> list[Path]:
        """Write evaluation.json (+ renders); returns the written paths."""
        out = Path(self.p.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        report_path = out / REPORT_NAME
        report_path.write_text(dumps(self.report()))
        written = [report_path]
        if self.p.render and self.metric is not None and self.last_pair is not None:
            written += write_renders(out, self.metric, *self.last_pair)
        return written


def write_renders(out: Path, metric: OccupancyMetric | SSCMetric, pred: OccupancyGrid,
                  gt: OccupancyGrid) -> list[Path]:
    """BEV prediction vs ground truth of one pair (unknown ground truth greyed out) and the per-class IoU bars."""
    from protoocc_ros.render import render_comparison, render_iou_bars

    n = metric.num_classes
    stamp_s = gt.stamp_ns / 1e9
    results = metric.compute()
    table = class_table(n)
    names, colors = table.names, table.colors
    ious = results["per_class_iou"]
    bars_colors = [colors[names.index(c)] if c in names else (128, 128, 128) for c in ious]
    return [
        render_comparison(out / "bev_prediction_vs_ground_truth.png", pred.labels, gt.labels,
                          mask=gt.labels != UNKNOWN_LABEL, num_classes=n,
                          title=f"stamp {stamp_s:.3f} s: prediction | ground truth | errors"),
        render_iou_bars(out / "iou_bars.png", ious, miou=results["miou"], colors=bars_colors,
                        title=f"{type(metric).__name__}: {metric.num_frames} frames, "
                              f"mIoU {100 * results['miou']:.2f}"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ros2 run protoocc_ros evaluation_node`; returns the exit status."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = EvaluationNode()
    except EvaluationNodeError as exc:
        print(f"evaluation_node: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin_until(executor, lambda: node.finished)
    paths = node.write_outputs()
    print(f"evaluation_node: {node.summary()} -> {', '.join(str(p) for p in paths)}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
