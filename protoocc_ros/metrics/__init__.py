"""Benchmark metrics without ROS (docs/architecture.md "Metrics"): Occ3D mIoU (``occupancy``) and SemanticKITTI SSC
(``ssc``)."""
from __future__ import annotations

from protoocc_ros.metrics.errors import MetricError
from protoocc_ros.metrics.occupancy import OccupancyMetric
from protoocc_ros.metrics.select import METRIC_KINDS, build_metric, metric_kind
from protoocc_ros.metrics.ssc import SSCMetric

__all__ = ["METRIC_KINDS", "MetricError", "OccupancyMetric", "SSCMetric", "build_metric", "metric_kind"]
