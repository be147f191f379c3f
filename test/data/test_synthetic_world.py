"""The synthetic generator's geometry: deterministic scenes, and labels that are what the cameras see."""
from __future__ import annotations

import numpy as np
import pytest

from protoocc_ros.data.synthetic import world as W
from protoocc_ros.data.synthetic.appearance import Noise
from protoocc_ros.data.synthetic.frames import FrameRenderer
from protoocc_ros.data.synthetic.rig import LIDAR_TRANSLATION, NUSCENES_LIDAR_ELEVATION, nuscenes_cameras
from protoocc_ros.geometry import voxel_centers, world_to_index

RANGE = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]
FREE = 17


@pytest.fixture(scope="module")
def front_renderer() -> FrameRenderer:
    """CAM_FRONT only, so that mask_camera is the visibility of that one camera."""
    return FrameRenderer(nuscenes_cameras((90, 160))[:1], RANGE, W.VOXEL, 0.0, LIDAR_TRANSLATION,
                         NUSCENES_LIDAR_ELEVATION)


@pytest.fixture(scope="module")
def frame(front_renderer):
    scene = W.build_scene("scene-0001", 11, 4)
    out = front_renderer.render(scene, 2, scene.boxes.cls, None, FREE, Noise(0), np.random.default_rng(0))
    return scene, out


def test_scene_is_deterministic_by_seed():
    a, b, c = (W.build_scene("s", seed, 5) for seed in (3, 3, 4))
    np.testing.assert_array_equal(a.boxes.lo, b.boxes.lo)
    np.testing.assert_array_equal(a.boxes.color, b.boxes.color)
    np.testing.assert_array_equal(a.ground.classes, b.ground.classes)
    assert a.boxes.lo.shape != c.boxes.lo.shape or not np.array_equal(a.boxes.lo, c.boxes.lo)


def test_boxes_lie_on_the_lattice_and_static_boxes_do_not_overlap():
    scene = W.build_scene("s", 5, 10)
    b = scene.boxes
    for arr in (b.lo, b.hi):
        np.testing.assert_allclose(np.round(arr[:, :2] / W.VOXEL) * W.VOXEL, arr[:, :2], atol=1e-9)
        np.testing.assert_allclose(np.round((arr[:, 2] - W.GROUND_TOP) / W.VOXEL) * W.VOXEL + W.GROUND_TOP,
                                   arr[:, 2], atol=1e-9)
    assert np.all(b.hi > b.lo)
    static = np.nonzero(np.all(b.velocity == 0, axis=1))[0]
    lo, hi = b.lo[static], b.hi[static]
    overlap = np.all((lo[:, None] < hi[None] - 1e-9) & (lo[None] < hi[:, None] - 1e-9), axis=2)
    np.fill_diagonal(overlap, False)
    assert not overlap.any()
    assert {W.CAR, W.PEDESTRIAN, W.MANMADE, W.VEGETATION} <= set(b.cls.tolist())


def test_rendering_is_deterministic(front_renderer, frame):
    scene, out = frame
    again = front_renderer.render(scene, 2, scene.boxes.cls, None, FREE, Noise(0), np.random.default_rng(0))
    np.testing.assert_array_equal(out.images[0], again.images[0])
    np.testing.assert_array_equal(out.labels, again.labels)
    np.testing.assert_array_equal(out.mask_camera, again.mask_camera)


def test_visible_voxels_project_onto_pixels_of_their_class(front_renderer, frame):
    scene, out = frame
    view = front_renderer.cameras[0]
    seen = out.mask_camera & (out.labels != FREE)
    idx = np.argwhere(seen)
    top = voxel_centers(RANGE, W.VOXEL)[seen] + [0.0, 0.0, W.VOXEL / 2]   # centre of the voxel's top face
    u, v, _ = view.project(top)
    c, r = np.round(u).astype(int), np.round(v).astype(int)
    inside = (c >= 0) & (c < view.width) & (r >= 0) & (r < view.height)
    labels = out.labels[tuple(idx[inside].T)]
    # the class seen in the 3x3 pixels around the projection (sub-pixel rounding at object edges)
    classes = np.pad(out.classes[0], 1, constant_values=254)
    near = np.stack([classes[r[inside] + 1 + dr, c[inside] + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)])
    agree = (near == labels).any(axis=0)
    assert inside.mean() > 0.99                       # seen by CAM_FRONT => in its image
    assert agree.mean() > 0.97
    car = labels == W.CAR
    assert car.sum() > 20, "the test scene should show cars"
    assert agree[car].mean() > 0.97


def test_camera_mask_is_the_camera_view(front_renderer, frame):
    _, out = frame
    centres = voxel_centers(RANGE, W.VOXEL)
    cam_x = front_renderer.cameras[0].origin[0]
    assert not out.mask_camera[centres[..., 0] < cam_x - 0.5].any()   # nothing behind CAM_FRONT
    assert out.mask_camera[118:130, 95:105, 2].all()                  # the road 7-12 m ahead
    bld = out.labels == W.MANMADE
    padded = np.pad(bld, 1, constant_values=False)
    interior = bld.copy()
    for a in range(3):
        for step in (1, -1):
            interior &= np.roll(padded, step, axis=a)[1:-1, 1:-1, 1:-1]
    assert interior.any() and not out.mask_camera[interior].any()      # inside of buildings unseen
    assert out.mask_lidar.sum() > out.mask_camera.sum()                # 360-degree lidar sees more


def test_lidar_points_lie_on_labelled_surfaces(frame):
    _, out = frame
    o = np.asarray(LIDAR_TRANSLATION)
    d = out.lidar_points - o
    inward = out.lidar_points + 0.02 * d / np.linalg.norm(d, axis=1, keepdims=True)
    idx, inside = world_to_index(inward, RANGE, W.VOXEL)
    assert inside.sum() > 1000
    hit = out.labels[tuple(idx[inside].T)]
    assert (hit != FREE).mean() > 0.97


def test_kitti_labels_use_raw_semantic_kitti_ids():
    scene = W.build_scene("s", 5, 2)
    raw = scene.boxes.kitti_raw()
    assert set(raw[scene.boxes.cls == W.CAR].tolist()) == {10}
    trunks = scene.boxes.style == W.STYLE_TRUNK
    assert trunks.any() and set(raw[trunks].tolist()) == {71}
    assert set(raw[(scene.boxes.cls == W.VEGETATION) & ~trunks].tolist()) == {70}
