"""The occupied voxels of one grid, found once per set and shared by ~/occupied_voxels and ~/markers.

``OccupiedVoxels.of(labels, confidence, ...)`` finds the voxels that are neither free nor UNKNOWN_LABEL (and, with a
score threshold, not below it) with one ``flatnonzero``, and their centres from per-axis lookup tables (the same
float64 values as ``geometry.index_to_world``); ``cloud_points()`` is the OCCUPANCY_POINT_DTYPE array of the point
cloud (row-major order, as ``occupancy_msg.occupied_voxels``), ``by_class()`` the centres grouped by label for the
markers (a stable radix sort of uint8 labels). About 3 ms for the 141k occupied voxels of a 200x200x16 demo grid,
where building the cloud and the markers each from the grid took 11 ms and 17 ms.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from protoocc_ros.ros.publishing.occupancy_msg import UNKNOWN_LABEL
from protoocc_ros.ros.publishing.pointcloud import OCCUPANCY_POINT_DTYPE

__all__ = ["VoxelCentres", "OccupiedVoxels"]


class VoxelCentres:
    """Voxel centres of one grid geometry by flat (row-major) index."""

    def __init__(self, point_cloud_range: Sequence[float], voxel_size: float, shape: Sequence[int]) -> None:
        self.shape = tuple(int(n) for n in shape)
        lo = np.asarray(point_cloud_range[:3], dtype=np.float64)
        self.axes = [lo[a] + (np.arange(n, dtype=np.float64) + 0.5) * float(voxel_size)
                     for a, n in enumerate(self.shape)]  # exactly index_to_world's values per axis

    def at(self, flat: np.ndarray) -> np.ndarray:
        """(N, 3) float64 centres of the voxels with these flat indices."""
        _, ny, nz = self.shape
        f: np.ndarray = flat.astype(np.int32 if np.prod(self.shape) < 2**31 else np.int64)  # int32: twice as fast
        ix = f // (ny * nz)
        rest = f - ix * (ny * nz)
        iy = rest // nz
        iz = rest - iy * nz
        out = np.empty((len(flat), 3), dtype=np.float64)
        for a, i in enumerate((ix, iy, iz)):
            out[:, a] = self.axes[a][i]
        return out


@dataclass
class OccupiedVoxels:
    """The occupied voxels of one grid (row-major order)."""

    flat: np.ndarray        # (N,) int64 flat indices
    labels: np.ndarray      # (N,) uint8
    confidence: np.ndarray  # (N,) float32 (1.0 when the grid has none)
    centres: VoxelCentres
    _xyz: np.ndarray | None = None

    @staticmethod
    def of(labels: np.ndarray, confidence: np.ndarray | None, centres: VoxelCentres, free_label: int,
           score_threshold: float = 0.0) -> OccupiedVoxels:
        """Voxels neither free nor UNKNOWN_LABEL, and (with ``confidence``) at or above ``score_threshold``."""
        grid = np.ascontiguousarray(labels, dtype=np.uint8)
        mask = (grid != free_label) & (grid != UNKNOWN_LABEL)
        conf = None if confidence is None else np.ascontiguousarray(confidence, dtype=np.float32)
        if conf is not None:  # (NaN scores are left out, as the grid shows them)
            mask &= conf >= score_threshold
        flat = np.flatnonzero(mask)
        values = grid.reshape(-1)[flat]
        scores = np.ones(len(flat), np.float32) if conf is None else conf.reshape(-1)[flat]
        return OccupiedVoxels(flat, values, scores, centres)

    def __len__(self) -> int:
        return len(self.flat)

    def xyz(self) -> np.ndarray:
        """(N, 3) float64 centres (computed once)."""
        if self._xyz is None:
            self._xyz = self.centres.at(self.flat)
        return self._xyz

    def cloud_points(self) -> np.ndarray:
        """OCCUPANCY_POINT_DTYPE (N,): x, y, z (float32 centres), label, confidence."""
        points = np.zeros(len(self.flat), OCCUPANCY_POINT_DTYPE)
        xyz = self.xyz()
        points["x"], points["y"], points["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        points["label"] = self.labels
        points["confidence"] = self.confidence
        return points

    def by_class(self, num_classes: int) -> Iterator[tuple[int, np.ndarray]]:
        """(label, (n, 3) float64 centres in row-major order) for every label < num_classes present, ascending."""
        order = np.argsort(self.labels, kind="stable")
        counts = np.bincount(self.labels, minlength=256)
        xyz = self.xyz()[order]
        start = 0
        for label in np.flatnonzero(counts):
            end = start + int(counts[label])
            if label < num_classes:
                yield int(label), xyz[start:end]
            start = end
