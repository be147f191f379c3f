"""ROS-free inference on camera sets: the predictor the node, protoocc-eval and the benchmarks share."""
from __future__ import annotations

from protoocc_ros.inference.predictor import OccupancyPredictor, Prediction, PredictorError, load_predictor

__all__ = ["OccupancyPredictor", "Prediction", "PredictorError", "load_predictor"]
