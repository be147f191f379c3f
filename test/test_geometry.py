"""Quaternion / transform / voxel-grid helpers (protoocc_ros.geometry)."""
from __future__ import annotations

import numpy as np
from pyquaternion import Quaternion

from protoocc_ros.geometry import (grid_shape, index_to_world, invert_transform, make_transform,
                                   matrix_to_quaternion, quaternion_to_matrix, transform_points, voxel_centers,
                                   world_to_index, yaw_matrix)

OCC3D_RANGE = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]


def test_quaternion_matches_pyquaternion_and_round_trips():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        np.testing.assert_allclose(quaternion_to_matrix(q), Quaternion(q).rotation_matrix, atol=1e-12)
        back = matrix_to_quaternion(quaternion_to_matrix(q))
        np.testing.assert_allclose(back, q if q[0] >= 0 else -q, atol=1e-9)


def test_invert_transform_is_inverse():
    T = make_transform(yaw_matrix(0.7) @ quaternion_to_matrix([0.9, 0.1, -0.2, 0.3]), [1.0, -2.0, 3.0])
    np.testing.assert_allclose(invert_transform(T) @ T, np.eye(4), atol=1e-12)
    p = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(transform_points(invert_transform(T), transform_points(T, p)), p, atol=1e-12)


def test_occ3d_grid_centres_and_indices():
    assert grid_shape(OCC3D_RANGE, 0.4) == (200, 200, 16)
    c = voxel_centers(OCC3D_RANGE, 0.4)
    assert c.shape == (200, 200, 16, 3)
    np.testing.assert_allclose(c[0, 0, 0], [-39.8, -39.8, -0.8])
    np.testing.assert_allclose(c[199, 100, 2], [39.8, 0.2, 0.0], atol=1e-9)
    np.testing.assert_allclose(index_to_world(np.array([199, 100, 2]), OCC3D_RANGE, 0.4), c[199, 100, 2])
    idx, inside = world_to_index(np.array([[39.8, 0.2, 0.0], [40.1, 0.0, 0.0]]), OCC3D_RANGE, 0.4)
    assert idx[0].tolist() == [199, 100, 2] and inside.tolist() == [True, False]
