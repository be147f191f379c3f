"""occupancy_node's outputs of one set: ~/occupancy, ~/occupied_voxels, ~/markers and ~/occupancy_2d (lifecycle
publishers).

~/occupancy_2d is the navigation grid of protoocc_ros.inference.occupancy_2d (obstacles in a height band, free,
unseen by the rig) as nav_msgs/OccupancyGrid, reliable and transient local (depth 1, like a map: nav2's static
layer and RViz's Map display subscribe that way); its settings are the live occupancy_2d.* parameters.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from protoocc_ros.classes import ClassTable
from protoocc_ros.inference.occupancy_2d import (
    Grid2DError,
    Grid2DSpec,
    VisibilityCache,
    band_levels,
    obstacle_labels_for,
    project_to_2d,
)
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing.markers import OccupancyMarkers, serializer_matches_rclpy
from protoocc_ros.ros.publishing.navigation_grid import cells_to_msg
from protoocc_ros.ros.publishing.occupancy_msg import grid_to_msg
from protoocc_ros.ros.publishing.occupied_points import OccupiedVoxels, VoxelCentres
from protoocc_ros.ros.publishing.pointcloud import create_cloud
from protoocc_ros.ros.runtime.params import ParamError
from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos

if TYPE_CHECKING:  # the node's parameters, read by every call (an annotation only: nodes/ imports this module)
    from protoocc_ros.ros.nodes.occupancy_params import OccupancyNodeParams

__all__ = ["OccupancyOutputs"]


class OccupancyOutputs:
    """The node's occupancy publishers and how a set's labels become their messages."""

    def __init__(self, node: Any, classes: ClassTable, point_cloud_range: Sequence[float], voxel_size: float,
                 grid_size: Sequence[int], image_size: Sequence[int], p: OccupancyNodeParams) -> None:
        self.classes = classes
        self.point_cloud_range, self.voxel_size = list(point_cloud_range), float(voxel_size)
        self.grid_size = tuple(grid_size)
        self.visibility = VisibilityCache(image_size, point_cloud_range, voxel_size, grid_size)
        self.centres = VoxelCentres(point_cloud_range, voxel_size, grid_size)
        self.grid_s = 0.0  # time the last publish took to send ~/occupancy (s)
        self._band: tuple[tuple[Any, ...], Grid2DSpec, np.ndarray] | None = None
        self.grid_2d_spec(p)  # a band or class list that does not fit the model fails configure
        self.markers = OccupancyMarkers(list(classes.names), classes.colors, classes.free_label, ns="occupancy",
                                        delete_all_first=p.markers_delete_all)
        self.markers_as_bytes = serializer_matches_rclpy()  # ~10x faster than one Point object per voxel
        if not self.markers_as_bytes:
            node.get_logger().warning("this distro's visualization_msgs/Marker layout differs from the one the "
                                      "fast marker serializer writes; building MarkerArray messages (slower)")
        self.grid = node.create_lifecycle_publisher(SemanticOccupancyGrid, "~/occupancy", reliable_qos(10))
        self.cloud = node.create_lifecycle_publisher(PointCloud2, "~/occupied_voxels", reliable_qos(2))
        self.marker_pub = node.create_lifecycle_publisher(MarkerArray, "~/markers", reliable_qos(2))
        self.grid_2d = node.create_lifecycle_publisher(OccupancyGrid, "~/occupancy_2d", latched_qos(1))

    def publishers(self) -> list[Any]:
        return [self.grid, self.cloud, self.marker_pub, self.grid_2d]

    def destroy(self, node: Any) -> None:
        for pub in self.publishers():
            node.destroy_lifecycle_publisher(pub)

    def grid_2d_spec(self, p: OccupancyNodeParams) -> tuple[Grid2DSpec, np.ndarray]:
        """(spec, band z levels) of the occupancy_2d.* parameters; ParamError naming the parameter when they do not
        fit the model's classes or grid (also the check of a live change)."""
        key = (tuple(p.occupancy_2d_obstacle_classes), p.occupancy_2d_min_height_m, p.occupancy_2d_max_height_m,
               p.occupancy_2d_ground_z_m, p.occupancy_2d_min_confidence)
        if self._band is not None and self._band[0] == key:
            return self._band[1], self._band[2]
        try:
            labels = obstacle_labels_for(self.classes, p.occupancy_2d_obstacle_classes)
        except Grid2DError as exc:
            raise ParamError(f"parameter 'occupancy_2d.obstacle_classes' = {p.occupancy_2d_obstacle_classes}: "
                             f"{exc}") from None
        spec = Grid2DSpec(labels, p.occupancy_2d_min_height_m, p.occupancy_2d_max_height_m, p.occupancy_2d_ground_z_m,
                          p.occupancy_2d_min_confidence)
        try:
            levels = band_levels(spec, self.point_cloud_range, self.voxel_size, self.grid_size)
        except Grid2DError as exc:
            raise ParamError(f"parameters 'occupancy_2d.min_height_m' / 'max_height_m' / 'ground_z_m': {exc}") from None
        self._band = (key, spec, levels)
        return spec, levels

    def publish(self, p: OccupancyNodeParams, labels: np.ndarray, confidence: np.ndarray, stamp_ns: int,
                lidar2img: Any, want_shown: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Publish the enabled outputs, the grid first; returns the labels as shown (free below the score threshold;
        only with ``want_shown``, else None) and the 2D cells (None when ~/occupancy_2d is off). lidar2img (N, 4, 4)
        of the model's input: the rig's visibility. The occupied voxels are found once for the cloud and the
        markers (occupied_points.py)."""
        header = Header(frame_id=p.base_frame)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        pcr, vs, free = self.point_cloud_range, self.voxel_size, self.classes.free_label
        t0 = time.monotonic()
        if p.publish_occupancy:
            self.grid.publish(grid_to_msg(labels, pcr, vs, list(self.classes.names), free, header,
                                          confidence if p.publish_confidence else None))
        self.grid_s = time.monotonic() - t0  # the grid is out (the rest follows it)
        if p.publish_occupied_voxels or p.publish_markers:
            occupied = OccupiedVoxels.of(labels, confidence, self.centres, free, p.score_threshold)
            if p.publish_occupied_voxels:
                self.cloud.publish(create_cloud(header, occupied.cloud_points()))
            if p.publish_markers:
                build = self.markers.build_serialized if self.markers_as_bytes else self.markers.build
                self.marker_pub.publish(build(labels, pcr, vs, header, occupied))
        cells = None
        if p.publish_occupancy_2d:
            spec, levels = self.grid_2d_spec(p)
            cells = project_to_2d(labels, confidence, self.visibility(lidar2img, levels), spec, levels)
            self.grid_2d.publish(cells_to_msg(cells, pcr, vs, spec.ground_z_m, header))
        shown = np.where(confidence >= p.score_threshold, labels, np.uint8(free)) if want_shown else None
        return shown, cells
