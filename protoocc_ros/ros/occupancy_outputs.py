"""occupancy_node's outputs of one set: ~/occupancy, ~/occupied_voxels and ~/markers (lifecycle publishers)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from protoocc_ros.classes import ClassTable
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.markers import OccupancyMarkers, serializer_matches_rclpy
from protoocc_ros.ros.occupancy_msg import grid_to_msg, occupied_voxels
from protoocc_ros.ros.occupancy_params import OccupancyNodeParams
from protoocc_ros.ros.pointcloud import create_cloud
from protoocc_ros.ros.qos import reliable_qos

__all__ = ["OccupancyOutputs"]


class OccupancyOutputs:
    """The node's three occupancy publishers and how a set's labels become their messages."""

    def __init__(self, node: Any, classes: ClassTable, point_cloud_range: Sequence[float], voxel_size: float,
                 markers_delete_all: bool) -> None:
        self.classes = classes
        self.point_cloud_range, self.voxel_size = list(point_cloud_range), float(voxel_size)
        self.markers = OccupancyMarkers(list(classes.names), classes.colors, classes.free_label, ns="occupancy",
                                        delete_all_first=markers_delete_all)
        self.markers_as_bytes = serializer_matches_rclpy()  # ~10x faster than one Point object per voxel
        if not self.markers_as_bytes:
            node.get_logger().warning("this distro's visualization_msgs/Marker layout differs from the one the "
                                      "fast marker serializer writes; building MarkerArray messages (slower)")
        self.grid = node.create_lifecycle_publisher(SemanticOccupancyGrid, "~/occupancy", reliable_qos(10))
        self.cloud = node.create_lifecycle_publisher(PointCloud2, "~/occupied_voxels", reliable_qos(2))
        self.marker_pub = node.create_lifecycle_publisher(MarkerArray, "~/markers", reliable_qos(2))

    def publishers(self) -> list[Any]:
        return [self.grid, self.cloud, self.marker_pub]

    def destroy(self, node: Any) -> None:
        for pub in self.publishers():
            node.destroy_lifecycle_publisher(pub)

    def publish(self, p: OccupancyNodeParams, labels: np.ndarray, confidence: np.ndarray, stamp_ns: int) -> np.ndarray:
        """Publish the enabled outputs; returns the labels as shown (free below the score threshold)."""
        header = Header(frame_id=p.base_frame)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        pcr, vs, free = self.point_cloud_range, self.voxel_size, self.classes.free_label
        if p.publish_occupancy:
            self.grid.publish(grid_to_msg(labels, pcr, vs, list(self.classes.names), free, header,
                                          confidence if p.publish_confidence else None))
        shown = np.where(confidence >= p.score_threshold, labels, np.uint8(free))  # (X, Y, Z)
        if p.publish_occupied_voxels:
            self.cloud.publish(create_cloud(header, occupied_voxels(shown, pcr, vs, free, confidence)))
        if p.publish_markers:
            build = self.markers.build_serialized if self.markers_as_bytes else self.markers.build
            self.marker_pub.publish(build(shown, pcr, vs, header))
        return shown
