"""The shared camera preprocessing: resize, ImageNet normalisation, lidar2img after resize, input checks."""
from __future__ import annotations

import numpy as np
import pytest

from protoocc_ros.data import DatasetError
from protoocc_ros.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, lidar2img_from, preprocess_camera_set
from protoocc_ros.geometry import make_transform

K = np.array([[100.0, 0, 80.0], [0, 100.0, 45.0], [0, 0, 1]])
# optical frame looking along ego +x, mounted 1.5 m high
CAM2EGO = make_transform(np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]]), [1.0, 0.0, 1.5])


def test_lidar2img_projects_ego_points_to_resized_pixels():
    img = np.zeros((90, 160, 3), np.uint8)
    out = preprocess_camera_set([img], [K], [CAM2EGO], (45, 80))
    assert out.images.shape == (1, 3, 45, 80) and out.raw.shape == (1, 45, 80, 3)
    # an ego point 10 m ahead at camera height projects on the principal point, scaled by 0.5
    p = out.lidar2img[0].double().numpy() @ np.array([11.0, 0.0, 1.5, 1.0])
    np.testing.assert_allclose(p[:2] / p[2], [40.0, 22.5], atol=1e-4)
    # 1 m to the left (ego +y) moves 10 px left at full resolution -> 5 px after resize
    p = lidar2img_from(K, CAM2EGO, (0.5, 0.5)) @ np.array([11.0, 1.0, 1.5, 1.0])
    np.testing.assert_allclose(p[:2] / p[2], [35.0, 22.5], atol=1e-9)


def test_normalisation_uses_imagenet_statistics():
    img = np.full((4, 6, 3), 200, np.uint8)
    out = preprocess_camera_set([img, img], [K, K], [CAM2EGO, CAM2EGO], (4, 6))
    expected = (200.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out.images[1, :, 2, 3].numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(out.raw[0], img)


@pytest.mark.parametrize("images,intr,ext,size,match", [
    ([np.zeros((4, 6), np.uint8)], [K], [CAM2EGO], (4, 6), "camera 0: image"),
    ([np.zeros((4, 6, 3), np.float32)], [K], [CAM2EGO], (4, 6), "uint8"),
    ([np.zeros((4, 6, 3), np.uint8)], [K[:2]], [CAM2EGO], (4, 6), "intrinsics"),
    ([np.zeros((4, 6, 3), np.uint8)], [K], [np.eye(3)], (4, 6), "cam2ego"),
    ([np.zeros((4, 6, 3), np.uint8)], [K, K], [CAM2EGO], (4, 6), "same non-zero number"),
    ([np.zeros((4, 6, 3), np.uint8)], [K], [CAM2EGO], (0, 6), "image_size"),
])
def test_bad_inputs_raise_dataset_error(images, intr, ext, size, match):
    with pytest.raises(DatasetError, match=match):
        preprocess_camera_set(images, intr, ext, size)
