"""Tests for protoocc_ros.ros.inputs.rectification: CameraInfo checks, and rectified images that match the ideal pinhole
image for each distortion model (the distorted images are made here by the forward model of OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sensor_msgs.msg import RegionOfInterest

from protoocc_ros.ros.inputs.rectification import CameraInfoError, camera_model, rectify_image, rectify_maps
from protoocc_ros.ros.publishing import msg_builders as mb

W, H = 160, 120
K = np.array([[90.0, 0.0, 80.0], [0.0, 90.0, 60.0], [0.0, 0.0, 1.0]])
DISTORTIONS = {
    "plumb_bob": [-0.30, 0.10, 0.001, -0.001, 0.0],
    "rational_polynomial": [-0.25, 0.08, 0.0005, 0.0005, 0.0, 0.02, 0.0, 0.0],
    "equidistant": [0.10, -0.05, 0.01, -0.002],
}


def info(model: str = "plumb_bob", d: list[float] | None = None, width: int = W, height: int = H, **fields):
    msg = mb.camera_info_msg(K, width, height, 0, "cam_optical_frame")
    msg.distortion_model = model
    msg.d = list(DISTORTIONS.get(model, [0.0] * 5) if d is None else d)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def ideal_image() -> np.ndarray:
    """A pinhole image with structure everywhere (smooth enough for bilinear sampling)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    return np.stack([127 + 120 * np.sin(xx / 7.0), 127 + 120 * np.cos(yy / 5.0),
                     127 + 120 * np.sin((xx + yy) / 9.0)], -1).astype(np.uint8)


def distort(ideal: np.ndarray, model: str) -> np.ndarray:
    """The image a camera with D would deliver: each raw pixel shows the ideal pixel of its undistorted ray."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    pts = np.stack([xx.ravel(), yy.ravel()], -1)[:, None, :]
    D = np.array(DISTORTIONS[model])
    if model == "equidistant":
        ideal_pts = cv2.fisheye.undistortPoints(pts, K, D, P=K)
    else:
        ideal_pts = cv2.undistortPoints(pts, K, D, P=K)
    maps = ideal_pts.reshape(H, W, 2).astype(np.float32)
    return cv2.remap(ideal, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def test_undistorted_camera_info_is_used_as_is() -> None:
    model = camera_model(info(d=[0.0] * 5))
    assert not model.remap and model.rotation is None
    np.testing.assert_array_equal(model.K, K)
    assert (model.width, model.height, model.frame_id) == (W, H, "cam_optical_frame")
    assert not camera_model(info(d=[])).remap  # empty D: no distortion


@pytest.mark.parametrize("model_name", sorted(DISTORTIONS))
def test_rectified_image_matches_the_ideal_pinhole_image(model_name: str) -> None:
    ideal = ideal_image()
    raw = distort(ideal, model_name)
    model = camera_model(info(model_name))
    assert model.remap
    rectified = rectify_image(model, raw, rectify_maps(model))
    inner = (slice(20, H - 20), slice(25, W - 25))  # away from the border the forward model leaves black
    err = np.abs(rectified[inner].astype(int) - ideal[inner].astype(int)).mean()
    before = np.abs(raw[inner].astype(int) - ideal[inner].astype(int)).mean()
    assert err < 1.0 and 20 * err < before, (err, before)


def test_projection_matrix_is_the_intrinsics_of_the_rectified_image() -> None:
    new_k = K.copy()
    new_k[0, 0] = new_k[1, 1] = 70.0
    P = np.hstack([new_k, np.zeros((3, 1))]).reshape(-1).tolist()
    model = camera_model(info(p=P))
    np.testing.assert_array_equal(model.K, new_k)
    np.testing.assert_array_equal(model.source_K, K)
    pre = camera_model(info(p=P), "rectified_input")  # image_rect: P and no remap, whatever D says
    assert not pre.remap
    np.testing.assert_array_equal(pre.K, new_k)


def test_rectification_rotation_turns_the_image_frame() -> None:
    angle = 0.1
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    model = camera_model(info(d=[0.0] * 5, r=R.reshape(-1).tolist()))
    assert model.remap  # R alone needs a remap
    np.testing.assert_allclose(model.rotation, R)
    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 3.0]
    point_rect = np.array([0.0, 0.0, 1.0, 1.0])  # on the rectified optical axis
    np.testing.assert_allclose(model.cam2ego(T) @ point_rect, T @ np.r_[R.T @ point_rect[:3], 1.0])


def test_refuse_distorted_mode_refuses_non_zero_distortion() -> None:
    with pytest.raises(CameraInfoError, match="refuse_distorted") as err:
        camera_model(info("plumb_bob"), "refuse_distorted")
    assert err.value.reason == "distorted_camera_info"
    assert not camera_model(info(d=[0.0] * 5), "refuse_distorted").remap


@pytest.mark.parametrize(
    "msg,match",
    [
        (info(width=0, height=0), r"width x height = 0x0"),
        (info(width=20000, height=20000), r"more than the maximum"),
        (info(k=[0.0] * 9), r"K = .* not a pinhole matrix"),
        (info(k=[90.0, 0, 80, 0, 90, 60, 0.1, 0, 1]), r"not a pinhole matrix"),
        (info(d=[float("nan")] * 5), r"D = .* not finite"),
        (info("double_sphere", d=[0.1, 0.2, 0.3]), r"distortion_model 'double_sphere' with non-zero D is not supported"),
        (info("equidistant", d=[0.1] * 5), r"equidistant needs \(4,\) coefficients, D has 5"),
        (info(d=[0.0] * 5, r=[2.0, 0, 0, 0, 1, 0, 0, 0, 1]), r"R = .* not a rotation"),
        (info(roi=RegionOfInterest(x_offset=100, y_offset=0, width=100, height=50)), r"roi .* is not inside"),
        (info(binning_x=200), r"binning_x 200, binning_y 1 leave nothing"),
    ],
)
def test_unusable_camera_info_is_refused_naming_the_field(msg, match: str) -> None:
    with pytest.raises(CameraInfoError, match=match) as err:
        camera_model(msg, where="/cameras/CAM_FRONT/camera_info")
    assert err.value.reason == "bad_camera_info"
    assert str(err.value).startswith("/cameras/CAM_FRONT/camera_info: ") and "\n" not in str(err.value)


# A 2448x2048 industrial camera (Sony IMX264 class, as spinnaker_camera_driver / camera_aravis publish it): calibrated
# at full resolution, streaming a 1600x1200 ROI at offset (424, 416) with 2x2 binning, i.e. 800x600 images.
SENSOR_W, SENSOR_H = 2448, 2048
SENSOR_K = np.array([[2210.4, 0.0, 1231.7], [0.0, 2208.9, 1019.3], [0.0, 0.0, 1.0]])
SENSOR_D = [-0.112, 0.094, 0.0003, -0.0002, 0.0]
ROI = RegionOfInterest(x_offset=424, y_offset=416, width=1600, height=1200)


def industrial_info(d: list[float] | None = None) -> object:
    msg = mb.camera_info_msg(SENSOR_K, SENSOR_W, SENSOR_H, 0, "cam_optical_frame")
    msg.d = list([0.0] * 5 if d is None else d)
    msg.binning_x = msg.binning_y = 2
    msg.roi = ROI
    return msg


def project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def test_binning_and_roi_give_the_intrinsics_of_the_delivered_image() -> None:
    """Points seen by the full sensor, by hand: the delivered pixel is (full pixel - ROI offset) / binning; the
    model's K projects there, its size is the delivered image's, and it is image_geometry's K."""
    model = camera_model(industrial_info())
    assert (model.width, model.height) == (800, 600) and not model.remap
    points = np.array([[0.0, 0.0, 10.0], [1.5, -0.8, 7.0], [-2.0, 1.1, 12.0], [0.31, 0.27, 3.3]])
    fx, fy, cx, cy = 2210.4, 2208.9, 1231.7, 1019.3
    full = np.stack([fx * points[:, 0] / points[:, 2] + cx, fy * points[:, 1] / points[:, 2] + cy], -1)
    by_hand = np.stack([(full[:, 0] - 424) / 2, (full[:, 1] - 416) / 2], -1)
    np.testing.assert_allclose(project(model.K, points), by_hand, atol=1e-9)
    assert by_hand[0].tolist() == pytest.approx([(1231.7 - 424) / 2, (1019.3 - 416) / 2])  # optical axis: 403.85, 301.65
    geometry_k = np.array([[fx / 2, 0.0, (cx - 424) / 2], [0.0, fy / 2, (cy - 416) / 2], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(model.K, geometry_k)  # PinholeCameraModel.fromCameraInfo's K (and P[:, :3])
    assert ((by_hand >= 0) & (by_hand < [800, 600])).all(), "the test points lie inside the delivered image"
    full_size = camera_model(mb.camera_info_msg(SENSOR_K, SENSOR_W, SENSOR_H, 0, "cam_optical_frame"))
    assert np.abs(project(full_size.K, points) - by_hand).max() > 100, "K as if full size is far off"


def test_binning_and_roi_rectify_the_delivered_image() -> None:
    """A distorted binned + cropped camera: rectifying the delivered raw image with the adjusted K and P gives the
    delivered crop of the full sensor's rectified image (the distortion acts on normalised coordinates)."""
    model = camera_model(industrial_info(SENSOR_D))
    assert model.remap and (model.width, model.height) == (800, 600)
    np.testing.assert_allclose(model.source_K, model.K)  # P = [K | 0]: same pinhole before and after
    points = np.array([[1.5, -0.8, 7.0], [-2.0, 1.1, 12.0], [0.9, 0.5, 4.0]])
    D = np.array(SENSOR_D)
    raw_full = cv2.projectPoints(points, np.zeros(3), np.zeros(3), SENSOR_K, D)[0].reshape(-1, 2)
    raw_delivered = (raw_full - [424, 416]) / 2  # where the delivered raw image shows them
    ideal_full = project(SENSOR_K, points)
    rect_delivered = cv2.undistortPoints(raw_delivered[:, None], model.source_K, model.D, P=model.K).reshape(-1, 2)
    np.testing.assert_allclose(rect_delivered, (ideal_full - [424, 416]) / 2, atol=1e-3)
    maps = rectify_maps(model)
    assert maps[0].shape[:2] == (600, 800)
