"""cv_bridge replacement (docs/architecture.md "ROS replacements"): sensor_msgs Image / CompressedImage <-> numpy
RGB uint8.

Supported raw encodings: rgb8, bgr8, mono8, bgra8, rgba8; compressed: jpeg, png (OpenCV).
Anything else, a size/step mismatch or undecodable bytes raise ImageConversionError naming the
topic and the encoding. When the real ``cv_bridge`` is importable it decodes raw images (after
the same checks), so behaviour on a ROS install matches the rest of the ROS ecosystem.
"""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

__all__ = [
    "ImageConversionError", "RAW_ENCODINGS", "COMPRESSED_FORMATS",
    "image_to_rgb", "compressed_to_rgb", "msg_to_rgb", "rgb_to_image", "rgb_to_compressed",
]

# encoding -> (channels, cv2 conversion code to RGB or None when already RGB)
RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
}
COMPRESSED_FORMATS = ("jpeg", "png")
HAVE_CV_BRIDGE = importlib.util.find_spec("cv_bridge") is not None


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array (message names topic + encoding)."""


def _where(topic: str) -> str:
    return f"image on {topic!r}" if topic else "image"


def _raw_with_cv_bridge(msg: Image) -> np.ndarray:
    from cv_bridge import CvBridge, CvBridgeError  # only on a ROS install

    try:
        return np.ascontiguousarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except CvBridgeError as exc:  # pragma: no cover - exercised only where cv_bridge exists
        raise ImageConversionError(f"cv_bridge could not convert {msg.encoding!r}: {exc}") from exc


def image_to_rgb(msg: Image, topic: str = "") -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (a copy, safe to keep)."""
    encoding = msg.encoding.lower()
    if encoding not in RAW_ENCODINGS:
        raise ImageConversionError(
            f"{_where(topic)}: unsupported encoding {msg.encoding!r}; expected one of {sorted(RAW_ENCODINGS)}"
        )
    channels, code = RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0 or step < width * channels or len(msg.data) != step * height:
        raise ImageConversionError(
            f"{_where(topic)} ({msg.encoding}): size mismatch: {width}x{height}, step {step}, "
            f"{len(msg.data)} bytes; expected step >= {width * channels} and {step}*{height} bytes"
        )
    if HAVE_CV_BRIDGE:
        return _raw_with_cv_bridge(msg)
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)  # (H, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)  # (H, W, C)
    if code is None:
        return pixels.copy()
    return cv2.cvtColor(np.ascontiguousarray(pixels if channels > 1 else pixels[..., 0]), code)


def compressed_to_rgb(msg: CompressedImage, topic: str = "") -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png, image_transport format strings too) -> (H, W, 3) uint8 RGB."""
    fmt = msg.format.lower()
    if not any(name in fmt for name in ("jpeg", "jpg", "png")):
        raise ImageConversionError(
            f"{_where(topic)}: unsupported compressed format {msg.format!r}; expected one of {COMPRESSED_FORMATS}"
        )
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise ImageConversionError(f"{_where(topic)} ({msg.format}): {buffer.size} bytes could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def msg_to_rgb(msg: Image | CompressedImage, topic: str = "") -> np.ndarray:
    """Either image message type -> (H, W, 3) uint8 RGB."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, topic)
    return image_to_rgb(msg, topic)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", header: Header | None = None) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (any of RAW_ENCODINGS)."""
    _check_rgb(rgb)
    if encoding not in RAW_ENCODINGS:
        raise ImageConversionError(f"cannot encode {encoding!r}; expected one of {sorted(RAW_ENCODINGS)}")
    to_encoding = {
        "rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "mono8": cv2.COLOR_RGB2GRAY,
        "bgra8": cv2.COLOR_RGB2BGRA, "rgba8": cv2.COLOR_RGB2RGBA,
    }[encoding]
    pixels = np.ascontiguousarray(rgb if to_encoding is None else cv2.cvtColor(rgb, to_encoding))
    msg = Image(header=header or Header(), height=rgb.shape[0], width=rgb.shape[1], encoding=encoding)
    msg.is_bigendian = 0
    msg.step = rgb.shape[1] * RAW_ENCODINGS[encoding][0]
    msg.data = pixels.tobytes()
    return msg


def rgb_to_compressed(
    rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90, header: Header | None = None
) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (image_transport format string)."""
    _check_rgb(rgb)
    if fmt not in COMPRESSED_FORMATS:
        raise ImageConversionError(f"cannot compress to {fmt!r}; expected one of {COMPRESSED_FORMATS}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - OpenCV failure on a valid array
        raise ImageConversionError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage(header=header or Header(), format=f"rgb8; {fmt} compressed bgr8")
    msg.data = encoded.tobytes()
    return msg
