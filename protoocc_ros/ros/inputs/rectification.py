"""CameraInfo as cameras publish it: validated, and the distortion it describes removed (image_proc's rectify).

``camera_model(msg, mode, max_pixels)`` turns a sensor_msgs/CameraInfo into a :class:`CameraModel`: the size
of the images that belong to it, the pinhole K of the image the model will see, the rotation of that image's
frame, and whether each image must be remapped first. ``mode`` is the node's ``rectification`` parameter:

``rectify``           images are image_raw: distortion (``plumb_bob``, ``rational_polynomial``, ``equidistant``)
                      and the rectification rotation R are removed here with OpenCV, the maps computed once
                      per calibration; the result is the pinhole image of P[:3, :3] (K when P is zero).
                      A CameraInfo with zero D, R = I and P = [K | 0] needs no remap.
``rectified_input``   images are image_rect (already rectified, e.g. by image_proc): D is ignored, the
                      intrinsics are P[:3, :3], the frame is rotated by R, as image_proc's consumers read it.
``refuse_distorted``  only undistorted cameras: a CameraInfo with non-zero D is refused
                      (``distorted_camera_info``); K is used as is.

Binning and region of interest (REP 104), as image_geometry's ``PinholeCameraModel.fromCameraInfo`` reads them:
``width`` / ``height``, K, D, R and P describe the full sensor at calibration; the image a driver delivers is the
``roi`` (in full-resolution pixels; all zero = the whole sensor) binned by ``binning_x`` / ``binning_y`` (0 = 1).
Its intrinsics are K with the principal point moved by the ROI offset and everything divided by the binning:
``fx' = fx / bx``, ``cx' = (cx - roi.x_offset) / bx`` (same for y, and for P), and its size is
``roi.width // bx`` x ``roi.height // by``. The distortion is the same function of the normalised coordinates,
so rectifying with the adjusted K and P maps the delivered raw image to the delivered rectified one.
(image_geometry's rule keeps pixel 0 of the binned image at raw pixel 0; the exact centre of a 2x2 bin is half a
raw pixel further, a difference the ROS convention leaves out and so do we.)

Anything that cannot describe an image (a zero or huge size, a K that is not a pinhole matrix, NaN, a D of the
wrong length, an unknown distortion model with non-zero D, an R that is not a rotation, a ROI outside the sensor
or one that binning leaves empty) raises :class:`CameraInfoError` with reason ``bad_camera_info`` and a one-line
message naming the field and value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["DEFAULT_MAX_PIXELS", "RECTIFICATION_MODES", "DISTORTION_MODELS", "CameraInfoError", "CameraModel",
           "Crop", "delivered_crop", "camera_model", "rectify_maps", "rectify_image"]

DEFAULT_MAX_PIXELS = 32 * 1024 * 1024  # 8K (7680x4320) fits; a larger claim is refused before decoding
RECTIFICATION_MODES = ("rectify", "rectified_input", "refuse_distorted")
# distortion_model -> accepted lengths of D (OpenCV's for the pinhole models; k1..k4 for the fisheye)
DISTORTION_MODELS = {"plumb_bob": (4, 5, 8, 12, 14), "rational_polynomial": (8, 12, 14), "equidistant": (4,)}
_ATOL = 1e-9


class CameraInfoError(ValueError):
    """A CameraInfo that cannot be used; ``reason`` is the /diagnostics key, the message names field and value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _short(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values).reshape(-1)[:14], precision=4, separator=", ", max_line_width=10**6)


@dataclass(eq=False)
class CameraModel:
    """One camera calibration, as the images of that calibration must be treated (see the module docstring)."""

    width: int                       # size of the images as delivered (after the driver's ROI and binning)
    height: int
    frame_id: str
    K: np.ndarray                    # (3, 3) intrinsics of the image handed to the model (after any remap)
    rotation: np.ndarray | None      # (3, 3) R: that image's frame <- the optical frame in TF; None = identity
    remap: bool                      # images need rectify_image() (distortion or R to remove)
    distortion_model: str = ""
    source_K: np.ndarray = field(default_factory=lambda: np.eye(3))  # K of the raw image (remap source)
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def key(self) -> tuple[Any, ...]:
        """Equal keys = the same calibration (a repeated CameraInfo is stored once)."""
        rot = None if self.rotation is None else self.rotation.tobytes()
        return (self.width, self.height, self.frame_id, self.K.tobytes(), rot, self.remap, self.distortion_model,
                self.source_K.tobytes(), self.D.tobytes())

    def cam2ego(self, optical2ego: np.ndarray) -> np.ndarray:
        """4x4 image frame -> ego from the TF optical frame -> ego (R removed: p_optical = R^T p_image)."""
        if self.rotation is None:
            return optical2ego
        rot = np.eye(4)
        rot[:3, :3] = self.rotation.T
        return optical2ego @ rot


def rectify_maps(model: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (CV_16SC2 + CV_16UC1) from the raw image of ``model`` to its rectified pinhole image."""
    size = (model.width, model.height)
    R = np.eye(3) if model.rotation is None else model.rotation
    if model.distortion_model == "equidistant":
        return cv2.fisheye.initUndistortRectifyMap(model.source_K, model.D[:4], R, model.K, size, cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(model.source_K, model.D, R, model.K, size, cv2.CV_16SC2)


def _matrix(values: Any, shape: tuple[int, int], name: str, where: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != shape[0] * shape[1] or not np.isfinite(arr).all():
        raise CameraInfoError("bad_camera_info", f"{where}: {name} = {_short(arr)} is not a finite "
                                                 f"{shape[0]}x{shape[1]} matrix")
    return arr.reshape(shape)


def _pinhole(K: np.ndarray, name: str, where: str) -> np.ndarray:
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0 or np.abs(K[[1, 2, 2], [0, 0, 1]]).max() > _ATOL:
        raise CameraInfoError("bad_camera_info", f"{where}: {name} = {K.reshape(-1).tolist()} is not a pinhole matrix "
                                                 f"(positive focal lengths, [0, 0, 1] last row)")
    return K


@dataclass(frozen=True)
class Crop:
    """The driver's region of interest (full-resolution pixels) and binning: which part of the sensor an image is."""

    x_offset: int
    y_offset: int
    width: int       # ROI size in full-resolution pixels
    height: int
    binning_x: int
    binning_y: int

    @property
    def identity(self) -> bool:
        return self.binning_x == self.binning_y == 1 and self.x_offset == self.y_offset == 0

    def size(self) -> tuple[int, int]:
        """(width, height) of the delivered image."""
        return self.width // self.binning_x, self.height // self.binning_y

    def apply(self, M: np.ndarray) -> np.ndarray:
        """K (3, 3) or P (3, 4) of the full sensor -> that of the delivered image (image_geometry's rule)."""
        out = np.array(M, dtype=np.float64)
        out[0, 2] -= self.x_offset * out[2, 2]
        out[1, 2] -= self.y_offset * out[2, 2]
        out[0] /= self.binning_x
        out[1] /= self.binning_y
        return out


def delivered_crop(msg: Any, where: str = "CameraInfo") -> Crop:
    """The ROI and binning of a CameraInfo (REP 104: zero binning = 1, an all-zero ROI = the full sensor), checked
    against the calibrated size; CameraInfoError (bad_camera_info) when the ROI leaves the sensor or is empty."""
    width, height = int(msg.width), int(msg.height)
    bx, by = max(1, int(msg.binning_x)), max(1, int(msg.binning_y))
    roi = msg.roi
    x, y, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if x == y == w == h == 0:
        w, h = width, height
    if w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise CameraInfoError("bad_camera_info", f"{where}: roi x_offset {x}, y_offset {y}, width {w}, height {h} "
                                                 f"is not inside the calibrated {width}x{height} image")
    crop = Crop(x, y, w, h, bx, by)
    if min(crop.size()) <= 0:
        raise CameraInfoError("bad_camera_info", f"{where}: binning_x {bx}, binning_y {by} leave nothing of the "
                                                 f"{w}x{h} roi")
    return crop


def camera_model(msg: Any, mode: str = "rectify", max_pixels: int = DEFAULT_MAX_PIXELS,
                 where: str = "CameraInfo") -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel for ``mode`` (RECTIFICATION_MODES); CameraInfoError when unusable.
    Binning and ROI are applied (the module docstring): the model describes the image as delivered."""
    if mode not in RECTIFICATION_MODES:
        raise ValueError(f"rectification mode {mode!r}: expected one of {RECTIFICATION_MODES}")
    full_width, full_height = int(msg.width), int(msg.height)
    if full_width <= 0 or full_height <= 0:
        raise CameraInfoError("bad_camera_info", f"{where}: width x height = {full_width}x{full_height}: a "
                                                 "CameraInfo must give the image size")
    if full_width * full_height > max_pixels:
        raise CameraInfoError("bad_camera_info", f"{where}: {full_width}x{full_height} = {full_width * full_height} "
                                                 f"pixels, more than the maximum {max_pixels} (parameter "
                                                 "image_max_pixels)")
    crop = delivered_crop(msg, where)
    width, height = crop.size()
    K = crop.apply(_pinhole(_matrix(msg.k, (3, 3), "K", where), "K", where))
    D = np.asarray(msg.d, dtype=np.float64)
    if not np.isfinite(D).all():
        raise CameraInfoError("bad_camera_info", f"{where}: D = {_short(D)} is not finite")
    R = _matrix(msg.r, (3, 3), "R", where)
    P = _matrix(msg.p, (3, 4), "P", where)
    rotation = None if not R.any() or np.allclose(R, np.eye(3), atol=_ATOL) else R  # all zeros: unset
    if rotation is not None and (not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0):
        raise CameraInfoError("bad_camera_info", f"{where}: R = {_short(R)} is not a rotation matrix")
    new_K = crop.apply(_pinhole(P[:, :3].copy(), "P[:, :3]", where)) if P[:, :3].any() else K
    model_name = str(msg.distortion_model)
    distorted = bool(np.abs(D).max() > 0) if D.size else False
    frame = str(msg.header.frame_id)
    if mode == "rectified_input":
        return CameraModel(width, height, frame, new_K, rotation, False, model_name, K, D)
    if mode == "refuse_distorted":
        if distorted:
            raise CameraInfoError("distorted_camera_info", f"{where}: distortion_model {model_name[:40]!r} with D = "
                                  f"{_short(D)}: parameter rectification is 'refuse_distorted' (connect image_rect "
                                  "with rectification 'rectified_input', or let the node rectify: 'rectify')")
        return CameraModel(width, height, frame, K, None, False, model_name, K, D)
    if not distorted and rotation is None and np.allclose(new_K, K, rtol=1e-9, atol=1e-9):
        return CameraModel(width, height, frame, K, None, False, model_name, K, D)
    if distorted and model_name not in DISTORTION_MODELS:
        raise CameraInfoError("bad_camera_info", f"{where}: distortion_model {model_name[:40]!r} with non-zero D is "
                                                 f"not supported (expected one of {sorted(DISTORTION_MODELS)})")
    if distorted and D.size not in DISTORTION_MODELS[model_name]:
        raise CameraInfoError("bad_camera_info", f"{where}: {model_name} needs {DISTORTION_MODELS[model_name]} "
                                                 f"coefficients, D has {D.size}")
    return CameraModel(width, height, frame, new_K, rotation, True, model_name if distorted else "plumb_bob", K,
                       D if distorted else np.zeros(5))


def rectify_image(model: CameraModel, image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The rectified image (bilinear, black outside the raw image) of ``image`` with ``rectify_maps(model)``."""
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
