"""ROS-free inference on camera sets: the predictors (PyTorch, ONNX Runtime) the node, protoocc-eval and the
benchmarks share, and the 2D navigation grid of a prediction."""
from __future__ import annotations

from protoocc_ros.inference.predictor import (
    BACKENDS,
    OccupancyPredictor,
    OnnxRuntimePredictor,
    Prediction,
    Predictor,
    PredictorError,
    load_predictor,
)

__all__ = ["BACKENDS", "OccupancyPredictor", "OnnxRuntimePredictor", "Prediction", "Predictor", "PredictorError",
           "load_predictor"]
