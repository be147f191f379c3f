"""SE(3), quaternion and voxel-grid helpers shared by data, metrics and renders (docs/architecture.md, Conventions).

Quaternions are (w, x, y, z) as in nuScenes; transforms are 4x4 homogeneous matrices; grids are indexed
[x, y, z] with voxel (i, j, k) centred at ``range_min + (index + 0.5) * voxel_size``. Numpy only.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> rotation matrix (3, 3). The quaternion is normalised first."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(np.asarray(q, dtype=np.float64))
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    unit = np.asarray(q) / np.linalg.norm(q)
    return -unit if unit[0] < 0 else unit


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation (3, 3) by ``yaw`` radians about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Columns: the optical x (right), y (down), z (forward) axes of a camera looking along ego +x, in the ego
# frame (x forward, y left, z up): the optical-frame convention of REP 103 / sensor_msgs/CameraInfo.
OPTICAL_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def optical_rotation(yaw: float) -> np.ndarray:
    """Optical frame -> ego rotation (3, 3) of a level camera looking along ego yaw ``yaw`` (radians)."""
    return yaw_matrix(yaw) @ OPTICAL_AXES


def make_transform(R: np.ndarray | None = None, t: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """4x4 transform from rotation (3, 3) and translation (3,); missing parts are identity / zero."""
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T


def transform_from_pose(translation: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """4x4 transform from a nuScenes-style pose record (translation, rotation quaternion w, x, y, z)."""
    return make_transform(quaternion_to_matrix(rotation_wxyz), translation)


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (R^T, -R^T t)."""
    T = np.asarray(T, dtype=np.float64)
    inv = np.eye(4)
    inv[:3, :3] = T[:3, :3].T
    inv[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inv


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points (..., 3) -> (..., 3)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ T[:3, :3].T + T[:3, 3]


def grid_shape(point_cloud_range: Sequence[float], voxel_size: float) -> tuple[int, int, int]:
    """Grid shape (X, Y, Z) of a range [x_min, y_min, z_min, x_max, y_max, z_max] at ``voxel_size`` metres."""
    r = np.asarray(point_cloud_range, dtype=np.float64)
    x, y, z = (int(round(v)) for v in (r[3:] - r[:3]) / voxel_size)
    return x, y, z


def voxel_centers(point_cloud_range: Sequence[float], voxel_size: float) -> np.ndarray:
    """Centres of all voxels of the grid, float64 (X, Y, Z, 3) in metres, indexed [x, y, z]."""
    lo = np.asarray(point_cloud_range[:3], dtype=np.float64)
    axes = [lo[a] + (np.arange(n) + 0.5) * voxel_size for a, n in enumerate(grid_shape(point_cloud_range,
                                                                                      voxel_size))]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def index_to_world(index: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float) -> np.ndarray:
    """Voxel indices (..., 3) -> centres (..., 3) in metres."""
    return np.asarray(point_cloud_range[:3], dtype=np.float64) + (np.asarray(index) + 0.5) * voxel_size


def world_to_index(points: np.ndarray, point_cloud_range: Sequence[float],
                   voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (..., 3) in metres -> (voxel indices int64 (..., 3), inside-grid bool (...))."""
    lo = np.asarray(point_cloud_range[:3], dtype=np.float64)
    idx = np.floor((np.asarray(points, dtype=np.float64) - lo) / voxel_size).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(grid_shape(point_cloud_range, voxel_size))), axis=-1)
    return idx, inside
