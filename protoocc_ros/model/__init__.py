"""Plain-PyTorch ProtoOcc (paper Secs. 3.1-3.4): no ROS, no mmcv/mmdet3d, no custom CUDA ops."""
from __future__ import annotations

from protoocc_ros.config import ProtoOccConfig
from protoocc_ros.model.errors import ModelError
from protoocc_ros.model.protoocc import (
    ProtoOcc,
    ProtoOccOutput,
    count_parameters_by_stage,
    count_prototype_parameters,
)
from protoocc_ros.model.temporal_memory import TemporalMemory

__all__ = ["ModelError", "ProtoOcc", "ProtoOccOutput", "TemporalMemory", "build_model", "count_parameters_by_stage",
           "count_prototype_parameters"]


def build_model(cfg: ProtoOccConfig) -> ProtoOcc:
    """The model of a config (same as ``ProtoOcc.from_config``)."""
    return ProtoOcc.from_config(cfg)
