"""Tests for protoocc_ros.ros.image_conversion (cv_bridge replacement)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from protoocc_ros.ros.image_conversion import (
    RAW_ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
    msg_to_rgb,
    rgb_to_compressed,
    rgb_to_image,
)


@pytest.fixture()
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "bgra8", "rgba8"])
def test_colour_encodings_round_trip_exactly(rgb: np.ndarray, encoding: str) -> None:
    msg = rgb_to_image(rgb, encoding)
    assert msg.encoding == encoding and msg.step == 11 * RAW_ENCODINGS[encoding][0]
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_bgr8_bytes_are_in_bgr_order(rgb: np.ndarray) -> None:
    msg = rgb_to_image(rgb, "bgr8")
    first = np.frombuffer(msg.data, np.uint8)[:3]
    np.testing.assert_array_equal(first, rgb[0, 0, ::-1])


def test_mono8_becomes_grey_rgb(rgb: np.ndarray) -> None:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = image_to_rgb(rgb_to_image(rgb, "mono8"))
    assert out.shape == (7, 11, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_row_padding_in_step_is_ignored(rgb: np.ndarray) -> None:
    padded = np.zeros((7, 11 * 3 + 5), np.uint8)
    padded[:, : 11 * 3] = rgb.reshape(7, -1)
    msg = Image(height=7, width=11, encoding="rgb8", step=11 * 3 + 5)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    mono = np.zeros((7, 13), np.uint8)
    mono[:, :11] = 77
    msg = Image(height=7, width=11, encoding="mono8", step=13)
    msg.data = mono.tobytes()
    assert (image_to_rgb(msg) == 77).all()


def test_unsupported_encoding_names_topic_and_encoding(rgb: np.ndarray) -> None:
    msg = rgb_to_image(rgb)
    msg.encoding = "16UC1"
    with pytest.raises(ImageConversionError, match=r"/cameras/CAM_FRONT/image_raw.*16UC1"):
        image_to_rgb(msg, "/cameras/CAM_FRONT/image_raw")


@pytest.mark.parametrize("field,value", [("step", 10), ("height", 8), ("width", 12), ("width", 0)])
def test_size_or_step_mismatch_is_rejected(rgb: np.ndarray, field: str, value: int) -> None:
    msg = rgb_to_image(rgb)
    setattr(msg, field, value)
    with pytest.raises(ImageConversionError, match="rgb8.*size mismatch"):
        image_to_rgb(msg, "/cam")


def test_truncated_data_is_rejected(rgb: np.ndarray) -> None:
    msg = rgb_to_image(rgb)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageConversionError, match="size mismatch"):
        image_to_rgb(msg)


def test_png_round_trip_is_lossless(rgb: np.ndarray) -> None:
    msg = rgb_to_compressed(rgb, "png")
    assert "png" in msg.format
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)


def test_jpeg_round_trip_is_close_on_smooth_image() -> None:
    yy, xx = np.mgrid[0:32, 0:48]
    smooth = np.stack([xx * 5, yy * 7, (xx + yy) * 2], -1).astype(np.uint8)
    out = msg_to_rgb(rgb_to_compressed(smooth, "jpeg", quality=95))
    assert out.shape == smooth.shape
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 3.0


def test_plain_format_strings_are_accepted(rgb: np.ndarray) -> None:
    msg = rgb_to_compressed(rgb, "png")
    msg.format = "png"
    np.testing.assert_array_equal(compressed_to_rgb(msg), rgb)


def test_undecodable_bytes_raise(rgb: np.ndarray) -> None:
    msg = CompressedImage(format="jpeg")
    msg.data = b"\xff\xd8 this is not a jpeg"
    with pytest.raises(ImageConversionError, match=r"'/cam/compressed'.*could not be decoded"):
        compressed_to_rgb(msg, "/cam/compressed")
    msg.data = b""
    with pytest.raises(ImageConversionError, match="could not be decoded"):
        compressed_to_rgb(msg)


def test_unknown_compressed_format_raises(rgb: np.ndarray) -> None:
    msg = rgb_to_compressed(rgb, "png")
    msg.format = "tiff"
    with pytest.raises(ImageConversionError, match="tiff"):
        compressed_to_rgb(msg)


def test_encoders_reject_bad_arrays_and_formats(rgb: np.ndarray) -> None:
    with pytest.raises(ImageConversionError, match="uint8"):
        rgb_to_image(rgb.astype(np.float32))
    with pytest.raises(ImageConversionError, match="yuv422"):
        rgb_to_image(rgb, "yuv422")
    with pytest.raises(ImageConversionError, match="bmp"):
        rgb_to_compressed(rgb, "bmp")
