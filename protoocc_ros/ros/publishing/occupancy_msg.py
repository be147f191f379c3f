"""The one place that converts numpy grids <-> SemanticOccupancyGrid (docs/architecture.md "ROS topics and frames").

Grid conventions: labels (X, Y, Z) uint8 indexed [x, y, z], row-major in the message
(index = (ix * size_y + iy) * size_z + iz); origin = the outer corner of voxel (0, 0, 0) =
point_cloud_range[:3]; 255 = UNKNOWN_LABEL; confidence 0..1 is sent as uint8 0..255.
"""
from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from std_msgs.msg import Header

from protoocc_ros.geometry import grid_shape, index_to_world
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing.pointcloud import OCCUPANCY_POINT_DTYPE

__all__ = [
    "OccupancyMsgError", "UNKNOWN_LABEL", "OccupancyGrid", "grid_to_msg", "msg_to_grid",
    "confidence_to_uint8", "confidence_from_uint8", "occupied_voxels",
]

UNKNOWN_LABEL = int(SemanticOccupancyGrid.UNKNOWN_LABEL)


class OccupancyMsgError(ValueError):
    """A grid or message that does not satisfy the SemanticOccupancyGrid contract (names the field)."""


@dataclass
class OccupancyGrid:
    """A decoded SemanticOccupancyGrid."""

    labels: np.ndarray              # uint8 (X, Y, Z)
    confidence: np.ndarray | None   # float32 (X, Y, Z) in 0..1, None when not sent
    origin: np.ndarray              # float64 (3,), corner of voxel (0, 0, 0), metres
    voxel_size: float               # metres
    class_names: list[str]
    free_label: int
    stamp_ns: int
    frame_id: str

    @property
    def point_cloud_range(self) -> list[float]:
        hi = self.origin + np.asarray(self.labels.shape, dtype=np.float64) * self.voxel_size
        return [*self.origin.tolist(), *hi.tolist()]


def confidence_to_uint8(confidence: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 -> uint8 0..255 (rounded, clipped; NaN -> 0)."""
    c = np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0)  # a new array; NaN stays NaN
    np.multiply(c, np.float32(255.0), out=c)
    np.rint(c, out=c)
    c[np.isnan(c)] = 0.0
    return c.astype(np.uint8)


def confidence_from_uint8(confidence: np.ndarray) -> np.ndarray:
    return np.asarray(confidence, dtype=np.float32) / 255.0


def _check_grid(labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float) -> None:
    if labels.ndim != 3:
        raise OccupancyMsgError(f"labels: expected a 3-D (X, Y, Z) array, got shape {labels.shape}")
    if len(point_cloud_range) != 6 or not voxel_size > 0:
        raise OccupancyMsgError(f"point_cloud_range {list(point_cloud_range)} / voxel_size {voxel_size}: expected 6 "
                                "values [x_min, y_min, z_min, x_max, y_max, z_max] and a positive voxel size")
    expected = grid_shape(point_cloud_range, voxel_size)
    if tuple(labels.shape) != expected:
        raise OccupancyMsgError(f"labels: shape {labels.shape} does not match point_cloud_range "
                                f"{list(point_cloud_range)} at voxel_size {voxel_size} (expected {expected})")


def grid_to_msg(labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
                class_names: Sequence[str], free_label: int, header: Header,
                confidence: np.ndarray | None = None) -> SemanticOccupancyGrid:
    """(X, Y, Z) labels (+ optional (X, Y, Z) confidence 0..1) -> SemanticOccupancyGrid."""
    labels = np.asarray(labels)
    _check_grid(labels, point_cloud_range, voxel_size)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise OccupancyMsgError(f"labels: values {labels.min()}..{labels.max()} do not fit uint8")
    if confidence is not None and np.shape(confidence) != labels.shape:
        raise OccupancyMsgError(f"confidence: shape {np.shape(confidence)}, expected {labels.shape} like labels")
    msg = SemanticOccupancyGrid(header=header, voxel_size=float(voxel_size), free_label=int(free_label))
    msg.size_x, msg.size_y, msg.size_z = (int(n) for n in labels.shape)
    msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = (float(v) for v in point_cloud_range[:3])
    msg.origin.orientation.w = 1.0
    msg.class_names = [str(n) for n in class_names]
    msg.labels = _uint8_array(labels)
    if confidence is not None:
        msg.confidence = _uint8_array(confidence_to_uint8(confidence))
    return msg


def _uint8_array(values: np.ndarray) -> array.array:
    """An array.array('B') copy of a uint8 grid (rclpy takes it as is; bytes are converted again)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values, dtype=np.uint8).reshape(-1).data)
    return out


def msg_to_grid(msg: SemanticOccupancyGrid) -> OccupancyGrid:
    """SemanticOccupancyGrid -> OccupancyGrid (labels reshaped to (X, Y, Z))."""
    shape = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    n = shape[0] * shape[1] * shape[2]
    if len(msg.labels) != n:
        raise OccupancyMsgError(f"labels: {len(msg.labels)} values, expected size_x*size_y*size_z = {n} for {shape}")
    if len(msg.confidence) not in (0, n):
        raise OccupancyMsgError(f"confidence: {len(msg.confidence)} values, expected 0 or {n} for {shape}")
    if not msg.voxel_size > 0:
        raise OccupancyMsgError(f"voxel_size: {msg.voxel_size}, expected > 0")
    q = msg.origin.orientation
    if not np.allclose([q.x, q.y, q.z, abs(q.w)], [0, 0, 0, 1], atol=1e-6):
        raise OccupancyMsgError(f"origin.orientation: ({q.x}, {q.y}, {q.z}, {q.w}); only axis-aligned grids "
                                "(identity orientation) are supported")
    labels = np.frombuffer(msg.labels, dtype=np.uint8).reshape(shape).copy()
    confidence = None
    if len(msg.confidence):
        confidence = confidence_from_uint8(np.frombuffer(msg.confidence, dtype=np.uint8).reshape(shape))
    p = msg.origin.position
    return OccupancyGrid(
        labels=labels, confidence=confidence, origin=np.array([p.x, p.y, p.z], dtype=np.float64),
        voxel_size=float(msg.voxel_size), class_names=list(msg.class_names), free_label=int(msg.free_label),
        stamp_ns=int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec),
        frame_id=msg.header.frame_id,
    )


def occupied_voxels(labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float, free_label: int,
                    confidence: np.ndarray | None = None) -> np.ndarray:
    """Centres of the voxels that are neither free nor UNKNOWN_LABEL, as OCCUPANCY_POINT_DTYPE (N,).

    confidence (X, Y, Z) 0..1 is copied per point (1.0 when not given).
    """
    labels = np.asarray(labels)
    _check_grid(labels, point_cloud_range, voxel_size)
    mask = (labels != free_label) & (labels != UNKNOWN_LABEL)
    index = np.argwhere(mask)  # (N, 3), row-major order
    points = np.zeros(len(index), OCCUPANCY_POINT_DTYPE)
    centres = index_to_world(index, point_cloud_range, voxel_size)  # (N, 3)
    points["x"], points["y"], points["z"] = centres[:, 0], centres[:, 1], centres[:, 2]
    points["label"] = labels[mask]
    points["confidence"] = 1.0 if confidence is None else np.asarray(confidence, dtype=np.float32)[mask]
    return points
