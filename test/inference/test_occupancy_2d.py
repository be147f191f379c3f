"""The 2D navigation grid (protoocc_ros.inference.occupancy_2d) against references written here from the definition:
camera visibility from K and cam2ego (not lidar2img, not project_points), cell values by a loop over columns."""
from __future__ import annotations

import math

import numpy as np
import pytest

from protoocc_ros.classes import class_table
from protoocc_ros.data.preprocessing import lidar2img_from
from protoocc_ros.geometry import make_transform, yaw_matrix
from protoocc_ros.inference.occupancy_2d import (
    FREE,
    OCCUPIED,
    UNKNOWN,
    Grid2DError,
    Grid2DSpec,
    VisibilityCache,
    band_levels,
    column_visibility,
    obstacle_labels_for,
    project_to_2d,
)

PCR = [-8.0, -8.0, -1.0, 8.0, 8.0, 5.4]
VOXEL = 0.4
GRID = (40, 40, 16)
H, W = 48, 88
K = np.array([[40.0, 0.0, 44.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])
OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
CAM2EGO = [make_transform(OPTICAL, [1.5, 0.0, 1.6]), make_transform(yaw_matrix(math.pi) @ OPTICAL, [-0.5, 0.0, 1.6])]


def reference_visibility(levels: np.ndarray) -> np.ndarray:
    """(X, Y): a band voxel centre lies in front of a camera and inside its image (pixel areas (-0.5, W - 0.5))."""
    seen = np.zeros(GRID[:2], bool)
    for c2e in CAM2EGO:
        ego2cam = np.linalg.inv(c2e)
        for ix in range(GRID[0]):
            for iy in range(GRID[1]):
                for iz in levels:
                    p = np.array([PCR[0] + (ix + 0.5) * VOXEL, PCR[1] + (iy + 0.5) * VOXEL, PCR[2] + (iz + 0.5) * VOXEL])
                    x, y, z = ego2cam[:3, :3] @ p + ego2cam[:3, 3]
                    if z <= 1e-5:
                        continue
                    u, v = K[0, 0] * x / z + K[0, 2], K[1, 1] * y / z + K[1, 2]
                    if -0.5 < u < W - 0.5 and -0.5 < v < H - 0.5:
                        seen[ix, iy] = True
    return seen


def reference_cells(labels: np.ndarray, conf: np.ndarray, seen: np.ndarray, obstacles: set[int], levels: np.ndarray,
                    threshold: float) -> np.ndarray:
    out = np.zeros(labels.shape[:2], np.int8)
    for ix in range(labels.shape[0]):
        for iy in range(labels.shape[1]):
            if not seen[ix, iy]:
                out[ix, iy] = -1
                continue
            column = [(int(labels[ix, iy, z]), float(conf[ix, iy, z])) for z in levels]
            if any(lab in obstacles and c >= threshold for lab, c in column):
                out[ix, iy] = 100
            elif any(lab in obstacles for lab, _ in column):
                out[ix, iy] = -1
    return out


def test_band_levels_are_the_voxel_centres_inside_the_band() -> None:
    centres = PCR[2] + (np.arange(16) + 0.5) * VOXEL  # -0.8, -0.4, 0.0, 0.4, ...
    levels = band_levels(Grid2DSpec((4,), 0.2, 2.0), PCR, VOXEL, GRID)
    np.testing.assert_allclose(centres[levels], [0.4, 0.8, 1.2, 1.6, 2.0], atol=1e-9)
    levels = band_levels(Grid2DSpec((4,), 0.2, 2.0, ground_z_m=-0.4), PCR, VOXEL, GRID)
    np.testing.assert_allclose(centres[levels], [0.0, 0.4, 0.8, 1.2, 1.6], atol=1e-9)
    with pytest.raises(Grid2DError, match=r"height band \[10.2, 12\] m .* holds no voxel centre: the centres are -0.8"):
        band_levels(Grid2DSpec((4,), 0.2, 2.0, ground_z_m=10.0), PCR, VOXEL, GRID)


def test_obstacles_are_every_class_but_free_and_ground_unless_named() -> None:
    occ3d, kitti = class_table(18), class_table(20)
    assert obstacle_labels_for(occ3d) == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16)
    assert {kitti.names[i] for i in obstacle_labels_for(kitti)} >= {"car", "building", "vegetation", "pole"}
    assert not {kitti.names[i] for i in obstacle_labels_for(kitti)} & {"empty", "road", "parking", "sidewalk",
                                                                       "other-ground", "terrain"}
    assert obstacle_labels_for(occ3d, ["pedestrian", "car"]) == (4, 7)
    with pytest.raises(Grid2DError, match=r"obstacle classes \['cars'\]: not classes of this model"):
        obstacle_labels_for(occ3d, ["cars"])


def test_visibility_equals_the_projection_written_from_k_and_cam2ego() -> None:
    levels = band_levels(Grid2DSpec((4,), 0.2, 2.0), PCR, VOXEL, GRID)
    lidar2img = np.stack([lidar2img_from(K, c) for c in CAM2EGO])
    got = column_visibility(lidar2img, (H, W), PCR, VOXEL, GRID, levels)
    expected = reference_visibility(levels)
    assert 0.2 < expected.mean() < 0.9  # the two cameras leave the sides unseen
    np.testing.assert_array_equal(got, expected)


def test_cells_equal_the_column_loop_reference() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice([4, 7, 11, 14, 15, 17], size=GRID, p=[0.02, 0.01, 0.1, 0.1, 0.02, 0.75]).astype(np.uint8)
    conf = rng.uniform(0.1, 1.0, size=GRID).astype(np.float32)
    spec = Grid2DSpec(obstacle_labels_for(class_table(18)), 0.2, 2.0, min_confidence=0.4)
    levels = band_levels(spec, PCR, VOXEL, GRID)
    seen = rng.random(GRID[:2]) < 0.8
    got = project_to_2d(labels, conf, seen, spec, levels)
    expected = reference_cells(labels, conf, seen, set(spec.obstacle_labels), levels, 0.4)
    np.testing.assert_array_equal(got, expected)
    assert {FREE, OCCUPIED, UNKNOWN} <= set(np.unique(got).tolist())
    labels[:, :, levels] = 17  # everything in the band free, obstacles only below and above it
    labels[:, :, 0] = labels[:, :, 15] = 4
    assert set(np.unique(project_to_2d(labels, conf, seen, spec, levels)[seen]).tolist()) == {FREE}


def test_visibility_cache_recomputes_only_for_a_new_rig_or_band() -> None:
    cache = VisibilityCache((H, W), PCR, VOXEL, GRID)
    lidar2img = np.stack([lidar2img_from(K, c) for c in CAM2EGO])
    a, b = np.array([3, 4, 5]), np.array([3, 4])
    first = cache(lidar2img, a)
    assert cache(lidar2img.copy(), a) is first and cache.computed == 1
    cache(lidar2img, b)
    moved = lidar2img.copy()
    moved[0] = lidar2img_from(K, make_transform(OPTICAL, [1.5, 0.0, 2.0]))
    cache(moved, b)
    assert cache.computed == 3
