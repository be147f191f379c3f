"""evaluation_node parameters: one typed dataclass, declared and validated by protoocc_ros.ros.runtime.params."""
from __future__ import annotations

from dataclasses import dataclass

from protoocc_ros.metrics import METRIC_KINDS
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.runtime.params import param

__all__ = ["EvaluationNodeParams"]


@dataclass
class EvaluationNodeParams:
    prediction_topic: str = param(mb.PREDICTION_TOPIC, "SemanticOccupancyGrid predictions")
    ground_truth_topic: str = param(mb.GROUND_TRUTH_TOPIC, "SemanticOccupancyGrid ground truth (255 = unknown)")
    done_topic: str = param(mb.DONE_TOPIC, "replay_node's end-of-replay summary (std_msgs/String JSON)")
    metric: str = param("auto", "auto (by number of classes) | occ3d | semantic_kitti", choices=METRIC_KINDS)
    output_dir: str = param("outputs/evaluation", "directory for evaluation.json and the PNG renders")
    expected_frames: int = param(0, "stop after this many prediction/ground-truth pairs; 0 = no limit",
                                 range=(0, 10**9))
    exit_on_done: bool = param(True, "stop after the replay's /replay/done once its ground truth is all paired")
    done_timeout_s: float = param(10.0, "after /replay/done, stop at the latest after this many seconds",
                                  range=(0.0, 3600.0))
    render: bool = param(True, "write PNG renders with the report")
    max_pending: int = param(200, "unpaired messages kept per topic before the oldest is dropped",
                             range=(1, 100_000))

    def topic(self, kind: str) -> str:
        """The topic of 'prediction' or 'ground_truth'."""
        return self.prediction_topic if kind == "prediction" else self.ground_truth_topic
