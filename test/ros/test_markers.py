"""Tests for protoocc_ros.ros.publishing.markers (one CUBE_LIST per class, stale classes deleted)."""
from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header
from rclpy.serialization import deserialize_message
from visualization_msgs.msg import Marker, MarkerArray

from protoocc_ros.classes import OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL
from protoocc_ros.ros.publishing.markers import OccupancyMarkers, serializer_matches_rclpy

RANGE = [0.0, 0.0, 0.0, 2.0, 2.0, 1.0]  # 0.5 m -> (4, 4, 2)


def grid(entries: dict[tuple[int, int, int], int]) -> np.ndarray:
    labels = np.full((4, 4, 2), OCC3D_FREE_LABEL, np.uint8)
    for idx, label in entries.items():
        labels[idx] = label
    return labels


def test_one_cube_list_per_present_class_with_occ3d_colours() -> None:
    markers = OccupancyMarkers(OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL)
    out = markers.build(grid({(0, 0, 0): 4, (3, 3, 1): 4, (1, 2, 0): 11, (2, 2, 0): 255}), RANGE, 0.5,
                        Header(frame_id="base_link"))
    assert [m.id for m in out.markers] == [4, 11]
    car = out.markers[0]
    assert car.type == Marker.CUBE_LIST and car.action == Marker.ADD and car.header.frame_id == "base_link"
    assert car.scale.x == car.scale.y == car.scale.z == 0.5
    assert sorted((p.x, p.y, p.z) for p in car.points) == [(0.25, 0.25, 0.25), (1.75, 1.75, 0.75)]
    assert (round(car.color.r * 255), round(car.color.g * 255), round(car.color.b * 255)) == tuple(OCC3D_COLORS[4])
    assert car.text == "car"


def test_classes_that_became_empty_are_deleted_once() -> None:
    markers = OccupancyMarkers(OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL)
    markers.build(grid({(0, 0, 0): 4, (1, 1, 1): 7}), RANGE, 0.5, Header())
    second = markers.build(grid({(0, 0, 0): 4}), RANGE, 0.5, Header())
    assert [(m.id, m.action) for m in second.markers] == [(4, Marker.ADD), (7, Marker.DELETE)]
    third = markers.build(grid({}), RANGE, 0.5, Header())
    assert [(m.id, m.action) for m in third.markers] == [(4, Marker.DELETE)]
    assert markers.build(grid({}), RANGE, 0.5, Header()).markers == []


def test_delete_all_first_mode() -> None:
    markers = OccupancyMarkers(OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL, delete_all_first=True)
    markers.build(grid({(0, 0, 0): 4}), RANGE, 0.5, Header())
    out = markers.build(grid({(0, 0, 0): 7}), RANGE, 0.5, Header())
    assert [(m.id, m.action) for m in out.markers] == [(0, Marker.DELETEALL), (7, Marker.ADD)]


def test_too_few_colours_are_rejected() -> None:
    with pytest.raises(ValueError, match="colors"):
        OccupancyMarkers(OCC3D_CLASS_NAMES, OCC3D_COLORS[:5], OCC3D_FREE_LABEL)


def test_serialized_builder_matches_the_message_builder_on_this_distro() -> None:
    assert serializer_matches_rclpy()


@pytest.mark.parametrize("delete_all", [False, True])
def test_serialized_arrays_read_back_as_the_messages_over_a_sequence(delete_all: bool) -> None:
    """Random 20x20x4 grids (odd and even voxel counts, classes appearing and vanishing): rclpy reads the
    fast builder's bytes back as exactly the message builder's array, frame after frame."""
    rng = np.random.default_rng(3)
    fast = OccupancyMarkers(OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL, delete_all_first=delete_all)
    slow = OccupancyMarkers(OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL, delete_all_first=delete_all)
    header = Header(frame_id="base_link")
    header.stamp.sec, header.stamp.nanosec = 1_533_151_603, 547_590_000
    for frame in range(6):
        classes = rng.choice(17, size=rng.integers(0, 5), replace=False)
        labels = np.full((20, 20, 4), OCC3D_FREE_LABEL, np.uint8)
        if len(classes):
            mask = rng.random(labels.shape) < 0.05 + 0.01 * frame
            labels[mask] = rng.choice(classes, size=int(mask.sum()))
        args = (labels, [-4.0, -4.0, -1.0, 4.0, 4.0, 0.6], 0.4, header)
        expected = slow.build(*args)
        got = deserialize_message(fast.build_serialized(*args), MarkerArray)
        assert got == expected, frame
