"""Fixed layouts of the two benchmarks: camera names, label-grid ranges, voxel sizes and grid shapes.

The one home of these facts (docs/architecture.md "Conventions"): the config defaults, the dataset
loaders, the synthetic sample and the replay node read them from here. Numpy-free, imports nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

NUSCENES_CAMERAS: tuple[str, ...] = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT",
)
KITTI_CAMERA = "image_2"


@dataclass(frozen=True)
class GridLayout:
    """A label grid in the ego frame: range [x_min, y_min, z_min, x_max, y_max, z_max] (m), voxel size (m), shape."""

    point_cloud_range: tuple[float, float, float, float, float, float]
    voxel_size: float
    grid_size: tuple[int, int, int]


OCC3D = GridLayout((-40.0, -40.0, -1.0, 40.0, 40.0, 5.4), 0.4, (200, 200, 16))
KITTI = GridLayout((0.0, -25.6, -2.0, 51.2, 25.6, 4.4), 0.2, (256, 256, 32))
OCC3D_RANGE = OCC3D.point_cloud_range
KITTI_RANGE = KITTI.point_cloud_range
