"""The 2D navigation grid of a 3D prediction: obstacles in a height band, free, unseen (docs/operating.md "Navigation").

    spec = Grid2DSpec(obstacle_labels_for(table), min_height_m=0.2, max_height_m=2.0)
    levels = band_levels(spec, point_cloud_range, voxel_size, grid_size)           # z indices inside the band
    seen = column_visibility(lidar2img, image_size, point_cloud_range, voxel_size, grid_size, levels)   # (X, Y)
    cells = project_to_2d(labels, confidence, seen, spec, levels)                  # (X, Y) int8

Cell values are those of nav_msgs/OccupancyGrid, per column (x, y) of the 3D grid (same extent and resolution):

  100 (occupied)  a voxel of the column in the height band holds an obstacle label with confidence >= min_confidence
   -1 (unknown)   no camera sees the column: no voxel centre of the band projects into a camera image, with the
                  projection the model makes of its query pillars (``spatial_cross_attention.project_points``:
                  in front of the camera and inside the image); also a column whose only obstacle in the band is
                  below min_confidence (the model saw something but is not sure)
    0 (free)      otherwise: the band is predicted free, or holds only ground classes

The height band is [ground_z_m + min_height_m, ground_z_m + max_height_m] on the voxel *centres* (z of the ego
frame). Obstacle labels: every class but free and the flat ground classes (classes.GROUND_CLASS_NAMES:
driveable surface, other flat, sidewalk, terrain; road, parking, other-ground for SemanticKITTI) unless named.
The visibility depends only on the rig and the band; ``VisibilityCache`` recomputes it when either changes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protoocc_ros.classes import GROUND_CLASS_NAMES, ClassTable
from protoocc_ros.model.spatial_cross_attention import project_points

__all__ = ["Grid2DError", "Grid2DSpec", "OCCUPIED", "FREE", "UNKNOWN", "obstacle_labels_for", "band_levels",
           "column_visibility", "project_to_2d", "VisibilityCache"]

OCCUPIED, FREE, UNKNOWN = 100, 0, -1


class Grid2DError(ValueError):
    """A 2D grid setting does not fit the label set or the grid; the message names the setting and the value."""


@dataclass(frozen=True)
class Grid2DSpec:
    """What makes a cell occupied: obstacle labels, the height band above the ground (m), a confidence floor."""

    obstacle_labels: tuple[int, ...]
    min_height_m: float = 0.2
    max_height_m: float = 2.0
    ground_z_m: float = 0.0
    min_confidence: float = 0.0


def obstacle_labels_for(table: ClassTable, names: Sequence[str] = ()) -> tuple[int, ...]:
    """Labels of the named classes, or (no names) every class but free and the ground classes."""
    if not names:
        return tuple(i for i, n in enumerate(table.names) if i != table.free_label and n not in GROUND_CLASS_NAMES)
    unknown = [n for n in names if n not in table.names]
    if unknown:
        raise Grid2DError(f"obstacle classes {unknown}: not classes of this model (classes: {list(table.names)})")
    return tuple(sorted(table.names.index(n) for n in names))


def band_levels(spec: Grid2DSpec, point_cloud_range: Sequence[float], voxel_size: float,
                grid_size: Sequence[int]) -> np.ndarray:
    """z indices whose voxel centre lies in the band; Grid2DError when none does."""
    z_min, nz = float(point_cloud_range[2]), int(grid_size[2])
    centres = z_min + (np.arange(nz) + 0.5) * voxel_size
    lo, hi = spec.ground_z_m + spec.min_height_m, spec.ground_z_m + spec.max_height_m
    levels = np.nonzero((centres >= lo - 1e-9) & (centres <= hi + 1e-9))[0]
    if levels.size == 0:
        raise Grid2DError(f"height band [{lo:g}, {hi:g}] m (ground_z_m {spec.ground_z_m:g} + [min_height_m "
                          f"{spec.min_height_m:g}, max_height_m {spec.max_height_m:g}]) holds no voxel centre: the "
                          f"centres are {centres[0]:g} .. {centres[-1]:g} m every {voxel_size:g} m")
    return levels


def column_visibility(lidar2img: np.ndarray | torch.Tensor, image_size: Sequence[int],
                      point_cloud_range: Sequence[float], voxel_size: float, grid_size: Sequence[int],
                      levels: np.ndarray) -> np.ndarray:
    """(X, Y) bool: some camera sees a voxel centre of the column at one of ``levels``.

    lidar2img (N, 4, 4): ego -> pixels of images of ``image_size`` (H, W), the model's input (the projection of
    ``project_points``: in front of the camera, inside the image).
    """
    nx, ny = int(grid_size[0]), int(grid_size[1])
    lo = np.asarray(point_cloud_range[:3], dtype=np.float64)
    xs = lo[0] + (np.arange(nx) + 0.5) * voxel_size
    ys = lo[1] + (np.arange(ny) + 0.5) * voxel_size
    zs = lo[2] + (np.asarray(levels) + 0.5) * voxel_size
    gx, gy, gz = np.meshgrid(xs, ys, zs, indexing="ij")  # (X, Y, L)
    points = torch.from_numpy(np.stack([gx, gy, gz], -1).reshape(nx * ny, len(zs), 3)).float()  # (X*Y, L, 3)
    l2i = torch.as_tensor(np.asarray(lidar2img) if not isinstance(lidar2img, torch.Tensor) else lidar2img)
    _, visible = project_points(points, l2i.float()[None], (int(image_size[0]), int(image_size[1])))  # (1,N,X*Y,L)
    return visible.any(-1).any(1)[0].reshape(nx, ny).numpy()


def project_to_2d(labels: np.ndarray, confidence: np.ndarray, visible: np.ndarray, spec: Grid2DSpec,
                  levels: np.ndarray) -> np.ndarray:
    """labels (X, Y, Z) uint8, confidence (X, Y, Z) float32, visible (X, Y) bool -> (X, Y) int8 (module docstring)."""
    is_obstacle = np.zeros(256, dtype=bool)  # a lookup table: one gather instead of a compare per class
    is_obstacle[np.asarray(spec.obstacle_labels, dtype=np.int64)] = True
    lo, hi = int(np.min(levels)), int(np.max(levels)) + 1
    contiguous = len(levels) == hi - lo  # the band is a run of levels: a view, not a copy
    band = slice(lo, hi) if contiguous else np.asarray(levels)
    obstacle = is_obstacle[labels[:, :, band]]  # (X, Y, L)
    sure = confidence[:, :, band] >= spec.min_confidence
    out = np.full(labels.shape[:2], FREE, np.int8)
    out[(obstacle & ~sure).any(-1)] = UNKNOWN
    out[(obstacle & sure).any(-1)] = OCCUPIED
    out[~visible] = UNKNOWN
    return out


class VisibilityCache:
    """column_visibility of the last rig and band (the rig rarely changes: it is recomputed only when it does)."""

    def __init__(self, image_size: Sequence[int], point_cloud_range: Sequence[float], voxel_size: float,
                 grid_size: Sequence[int]) -> None:
        self.image_size, self.point_cloud_range = tuple(image_size), list(point_cloud_range)
        self.voxel_size, self.grid_size = float(voxel_size), tuple(grid_size)
        self._key: tuple[bytes, bytes] | None = None
        self._visible: np.ndarray | None = None
        self.computed = 0  # how many times it was computed (tests, diagnostics)

    def __call__(self, lidar2img: np.ndarray | torch.Tensor, levels: np.ndarray) -> np.ndarray:
        l2i = lidar2img.detach().cpu().numpy() if isinstance(lidar2img, torch.Tensor) else np.asarray(lidar2img)
        key = (np.ascontiguousarray(l2i, np.float32).tobytes(), np.asarray(levels, np.int64).tobytes())
        if key != self._key or self._visible is None:
            self._visible = column_visibility(l2i, self.image_size, self.point_cloud_range, self.voxel_size,
                                              self.grid_size, levels)
            self._key = key
            self.computed += 1
        return self._visible
