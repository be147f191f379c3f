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

Anything that cannot describe an image (a zero or huge size, a K that is not a pinhole matrix, NaN, a D of the
wrong length, an unknown distortion model with non-zero D, an R that is not a rotation) raises
:class:`CameraInfoError` with reason ``bad_camera_info`` and a one-line message naming the field and value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = ["DEFAULT_MAX_PIXELS", "RECTIFICATION_MODES", "DISTORTION_MODELS", "CameraInfoError", "CameraModel",
           "camera_model", "rectify_maps", "rectify_image"]

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

    width: int
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


def camera_model(msg: Any, mode: str = "rectify", max_pixels: int = DEFAULT_MAX_PIXELS,
                 where: str = "CameraInfo") -> CameraModel:
    """sensor_msgs/CameraInfo -> CameraModel for ``mode`` (RECTIFICATION_MODES); CameraInfoError when unusable."""
    if mode not in RECTIFICATION_MODES:
        raise ValueError(f"rectification mode {mode!r}: expected one of {RECTIFICATION_MODES}")
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise CameraInfoError("bad_camera_info", f"{where}: width x height = {width}x{height}: a CameraInfo must "
                                                 "give the image size")
    if width * height > max_pixels:
        raise CameraInfoError("bad_camera_info", f"{where}: {width}x{height} = {width * height} pixels, more than "
                                                 f"the maximum {max_pixels} (parameter image_max_pixels)")
    K = _pinhole(_matrix(msg.k, (3, 3), "K", where), "K", where)
    D = np.asarray(msg.d, dtype=np.float64)
    if not np.isfinite(D).all():
        raise CameraInfoError("bad_camera_info", f"{where}: D = {_short(D)} is not finite")
    R = _matrix(msg.r, (3, 3), "R", where)
    P = _matrix(msg.p, (3, 4), "P", where)
    rotation = None if not R.any() or np.allclose(R, np.eye(3), atol=_ATOL) else R  # all zeros: unset
    if rotation is not None and (not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0):
        raise CameraInfoError("bad_camera_info", f"{where}: R = {_short(R)} is not a rotation matrix")
    new_K = _pinhole(P[:, :3].copy(), "P[:, :3]", where) if P[:, :3].any() else K
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
