"""Benchmark metrics without ROS (design §4): Occ3D mIoU (``occupancy``) and SemanticKITTI SSC (``ssc``)."""
from __future__ import annotations

from protoocc_ros.metrics.errors import MetricError
from protoocc_ros.metrics.occupancy import OccupancyMetric
from protoocc_ros.metrics.ssc import SSCMetric

__all__ = ["MetricError", "OccupancyMetric", "SSCMetric"]
