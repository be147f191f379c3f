"""Tests for protoocc_ros.ros.publishing.occupied_points: the occupied voxels found once per set are exactly those of
occupancy_msg.occupied_voxels (order, centres, labels, confidence), and their grouping by class is the markers'."""
from __future__ import annotations

import numpy as np

from protoocc_ros.geometry import index_to_world
from protoocc_ros.ros.publishing.occupancy_msg import UNKNOWN_LABEL, occupied_voxels
from protoocc_ros.ros.publishing.occupied_points import OccupiedVoxels, VoxelCentres

PCR, VOXEL, FREE = [-4.0, -3.2, -1.0, 4.0, 3.2, 5.4], 0.4, 17


def grid(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 18, size=(20, 16, 16)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.5] = FREE
    labels[0, 0, :3] = UNKNOWN_LABEL
    return labels, rng.random(labels.shape).astype(np.float32)


def test_occupied_voxels_equal_the_reference_conversion() -> None:
    labels, conf = grid()
    found = OccupiedVoxels.of(labels, conf, VoxelCentres(PCR, VOXEL, labels.shape), FREE)
    reference = occupied_voxels(labels, PCR, VOXEL, FREE, conf)
    got = found.cloud_points()
    assert got.dtype == reference.dtype and len(got) == len(reference) > 1000
    for name in reference.dtype.names:
        np.testing.assert_array_equal(got[name], reference[name])


def test_score_threshold_and_nan_scores_are_left_out_as_the_shown_grid() -> None:
    labels, conf = grid(1)
    conf[3, 3, 3] = np.nan
    shown = np.where(conf >= 0.4, labels, np.uint8(FREE))
    found = OccupiedVoxels.of(labels, conf, VoxelCentres(PCR, VOXEL, labels.shape), FREE, score_threshold=0.4)
    reference = occupied_voxels(shown, PCR, VOXEL, FREE, conf)
    np.testing.assert_array_equal(found.cloud_points()["label"], reference["label"])
    np.testing.assert_array_equal(found.cloud_points()["x"], reference["x"])


def test_by_class_groups_the_centres_per_label_in_row_major_order() -> None:
    labels, conf = grid(2)
    found = OccupiedVoxels.of(labels, None, VoxelCentres(PCR, VOXEL, labels.shape), FREE)
    reference = occupied_voxels(labels, PCR, VOXEL, FREE)
    groups = list(found.by_class(num_classes=12))  # labels 12..16 are not drawn (not in the class list)
    assert [label for label, _ in groups] == sorted(set(reference["label"].tolist()) & set(range(12)))
    for label, xyz in groups:  # float64 centres, exactly index_to_world's (the cloud rounds them to float32)
        np.testing.assert_array_equal(xyz, index_to_world(np.argwhere(labels == label), PCR, VOXEL))
