"""Tests for protoocc_ros.ros.publishing.occupancy_msg (numpy grid <-> SemanticOccupancyGrid)."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing.occupancy_msg import (
    UNKNOWN_LABEL,
    OccupancyMsgError,
    confidence_to_uint8,
    grid_to_msg,
    msg_to_grid,
    occupied_voxels,
)
from protoocc_ros.ros.publishing.pointcloud import create_cloud, read_points

RANGE = [-2.0, -1.0, -0.5, 2.0, 2.0, 0.5]  # 0.5 m voxels -> (8, 6, 2)
NAMES = ["a", "b", "c", "free"]
FREE = 3


def labels_and_confidence(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=(8, 6, 2), dtype=np.uint8)
    labels[0, 0, 0] = UNKNOWN_LABEL
    return labels, rng.random((8, 6, 2)).astype(np.float32)


def header(sec: int = 12, nanosec: int = 345) -> Header:
    h = Header(frame_id="base_link")
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def test_round_trip_through_serialised_message() -> None:
    labels, conf = labels_and_confidence()
    msg = grid_to_msg(labels, RANGE, 0.5, NAMES, FREE, header(), confidence=conf)
    grid = msg_to_grid(deserialize_message(serialize_message(msg), SemanticOccupancyGrid))
    np.testing.assert_array_equal(grid.labels, labels)
    assert np.abs(grid.confidence - conf).max() <= 0.5 / 255 + 1e-6
    assert grid.point_cloud_range == RANGE and grid.voxel_size == 0.5
    assert (grid.class_names, grid.free_label, grid.frame_id) == (NAMES, FREE, "base_link")
    assert grid.stamp_ns == 12_000_000_345


def test_labels_are_row_major_x_y_z_and_origin_is_the_voxel_corner() -> None:
    labels = np.full((8, 6, 2), FREE, np.uint8)
    labels[5, 4, 1] = 2
    msg = grid_to_msg(labels, RANGE, 0.5, NAMES, FREE, header())
    assert (msg.size_x, msg.size_y, msg.size_z) == (8, 6, 2)
    flat = np.frombuffer(msg.labels, np.uint8)
    assert np.flatnonzero(flat != FREE).tolist() == [(5 * 6 + 4) * 2 + 1]
    assert (msg.origin.position.x, msg.origin.position.y, msg.origin.position.z) == (-2.0, -1.0, -0.5)
    assert msg.origin.orientation.w == 1.0 and len(msg.confidence) == 0
    assert msg_to_grid(msg).confidence is None


def test_confidence_is_clipped_and_scaled_to_uint8() -> None:
    np.testing.assert_array_equal(confidence_to_uint8(np.array([-1.0, 0.0, 0.5, 1.0, 7.0, np.nan])),
                                  [0, 0, 128, 255, 255, 0])


def test_occupied_voxel_centres_skip_free_and_unknown() -> None:
    labels, conf = labels_and_confidence()
    pts = occupied_voxels(labels, RANGE, 0.5, FREE, confidence=conf)
    keep = (labels != FREE) & (labels != UNKNOWN_LABEL)
    assert len(pts) == keep.sum() and not np.isin(pts["label"], [FREE, UNKNOWN_LABEL]).any()
    ix = np.round((pts["x"] + 2.0) / 0.5 - 0.5).astype(int)
    iy = np.round((pts["y"] + 1.0) / 0.5 - 0.5).astype(int)
    iz = np.round((pts["z"] + 0.5) / 0.5 - 0.5).astype(int)
    np.testing.assert_array_equal(labels[ix, iy, iz], pts["label"])
    np.testing.assert_allclose(pts["confidence"], conf[ix, iy, iz])
    assert pts["x"].min() >= -2.0 + 0.25 - 1e-6 and pts["z"].max() <= 0.5 - 0.25 + 1e-6
    cloud_back = read_points(create_cloud(header(), pts))
    np.testing.assert_array_equal(cloud_back["label"], pts["label"])
    assert (occupied_voxels(labels, RANGE, 0.5, FREE)["confidence"] == 1.0).all()


@pytest.mark.parametrize(
    "labels,rng,voxel,match",
    [
        (np.zeros((8, 6), np.uint8), RANGE, 0.5, "3-D"),
        (np.zeros((8, 6, 3), np.uint8), RANGE, 0.5, r"expected \(8, 6, 2\)"),
        (np.zeros((8, 6, 2), np.uint8), RANGE[:5], 0.5, "6"),
        (np.zeros((8, 6, 2), np.uint8), RANGE, 0.0, "positive"),
        (np.full((8, 6, 2), 300), RANGE, 0.5, "uint8"),
    ],
)
def test_bad_grids_are_rejected(labels: np.ndarray, rng: list[float], voxel: float, match: str) -> None:
    with pytest.raises(OccupancyMsgError, match=match):
        grid_to_msg(labels, rng, voxel, NAMES, FREE, header())


def test_bad_messages_are_rejected() -> None:
    labels, conf = labels_and_confidence()
    with pytest.raises(OccupancyMsgError, match="confidence"):
        grid_to_msg(labels, RANGE, 0.5, NAMES, FREE, header(), confidence=conf[:, :, :1])
    msg = grid_to_msg(labels, RANGE, 0.5, NAMES, FREE, header())
    msg.size_z = 3
    with pytest.raises(OccupancyMsgError, match="labels: 96 values"):
        msg_to_grid(msg)
    msg = grid_to_msg(labels, RANGE, 0.5, NAMES, FREE, header())
    msg.origin.orientation.z, msg.origin.orientation.w = 0.7071, 0.7071
    with pytest.raises(OccupancyMsgError, match="axis-aligned"):
        msg_to_grid(msg)
    msg = grid_to_msg(labels, RANGE, 0.5, NAMES, FREE, header())
    msg.confidence = b"\x01\x02"
    with pytest.raises(OccupancyMsgError, match="confidence: 2 values"):
        msg_to_grid(msg)
