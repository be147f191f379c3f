"""RViz MarkerArray of an occupancy grid (design §5 ``~/markers``): one CUBE_LIST per class, stale classes deleted."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from protoocc_ros.ros.occupancy_msg import occupied_voxels

__all__ = ["OccupancyMarkers"]


class OccupancyMarkers:
    """Builds MarkerArrays for successive grids, remembering which class markers exist.

    Marker id = class label, namespace ``ns``. A class drawn before but empty now gets a DELETE;
    with ``delete_all_first`` every array starts with DELETEALL instead (simpler for viewers, more traffic).
    colors: (C, 3) uint8 RGB per label (e.g. protoocc_ros.classes.OCC3D_COLORS).
    """

    def __init__(self, class_names: Sequence[str], colors: np.ndarray, free_label: int, ns: str = "occupancy",
                 alpha: float = 1.0, delete_all_first: bool = False) -> None:
        colors = np.asarray(colors)
        if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) < len(class_names):
            raise ValueError(f"colors: shape {colors.shape}, expected ({len(class_names)}, 3) RGB, one per class")
        self.class_names = list(class_names)
        self.colors = colors.astype(np.float32) / 255.0
        self.free_label = int(free_label)
        self.ns = ns
        self.alpha = float(alpha)
        self.delete_all_first = delete_all_first
        self._shown: set[int] = set()

    def build(self, labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
              header: Header) -> MarkerArray:
        """MarkerArray for one (X, Y, Z) label grid in header.frame_id."""
        points = occupied_voxels(labels, point_cloud_range, voxel_size, self.free_label)
        out = MarkerArray()
        if self.delete_all_first:
            out.markers.append(Marker(header=header, ns=self.ns, action=Marker.DELETEALL))
        present = sorted(int(c) for c in np.unique(points["label"]) if c < len(self.class_names))
        for label in present:
            out.markers.append(self._cube_list(label, points[points["label"] == label], voxel_size, header))
        if not self.delete_all_first:
            for label in sorted(self._shown - set(present)):
                out.markers.append(Marker(header=header, ns=self.ns, id=label, action=Marker.DELETE))
        self._shown = set(present)
        return out

    def _cube_list(self, label: int, points: np.ndarray, voxel_size: float, header: Header) -> Marker:
        r, g, b = (float(v) for v in self.colors[label])
        marker = Marker(header=header, ns=self.ns, id=label, type=Marker.CUBE_LIST, action=Marker.ADD)
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = float(voxel_size)
        marker.color = ColorRGBA(r=r, g=g, b=b, a=self.alpha)
        marker.text = self.class_names[label]
        xyz = np.stack([points["x"], points["y"], points["z"]], axis=1).astype(np.float64)  # (N, 3)
        marker.points = [Point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]
        return marker
