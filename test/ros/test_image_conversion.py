"""Tests for protoocc_ros.ros.inputs.image_conversion (cv_bridge replacement)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from protoocc_ros.ros.inputs.image_conversion import (
    RAW_ENCODINGS,
    ImageConversionError,
    claimed_size,
    compressed_size,
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
    assert msg.encoding == encoding and msg.step == 11 * RAW_ENCODINGS[encoding].channels
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
    msg.encoding = "nv12"
    with pytest.raises(ImageConversionError, match=r"/cameras/CAM_FRONT/image_raw.*nv12") as err:
        image_to_rgb(msg, "/cameras/CAM_FRONT/image_raw")
    assert err.value.reason == "image_encoding"


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
    with pytest.raises(ImageConversionError, match="yuv422.*odd"):
        rgb_to_image(rgb, "yuv422")  # 11 pixels wide
    with pytest.raises(ImageConversionError, match="nv12"):
        rgb_to_image(rgb, "nv12")
    with pytest.raises(ImageConversionError, match="bmp"):
        rgb_to_compressed(rgb, "bmp")


FLAT = np.zeros((6, 8, 3), np.uint8) + np.array([200, 100, 30], np.uint8)  # one colour: demosaic/4:2:2 exact


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_is_demosaiced_with_the_pattern_it_names(pattern: str, bits: int) -> None:
    mosaic = np.zeros((6, 8), np.uint8)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        mosaic[dy::2, dx::2] = FLAT[dy::2, dx::2, "rgb".index(colour)]  # written by hand, not by the encoder
    msg = Image(height=6, width=8, encoding=f"bayer_{pattern}{bits}", is_bigendian=0)
    if bits == 16:
        msg.step, msg.data = 16, (mosaic.astype("<u2") * 257).tobytes()
    else:
        msg.step, msg.data = 8, mosaic.tobytes()
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out[2:4, 2:6], FLAT[2:4, 2:6])  # inside: every neighbour present
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image(FLAT, f"bayer_{pattern}{bits}"))[2:4, 2:6],
                                  FLAT[2:4, 2:6])


@pytest.mark.parametrize("encoding,order", [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"),
                                            ("yuyv", "yuyv")])
def test_yuv422_byte_orders(encoding: str, order: str) -> None:
    y, u, v = 120, 90, 200
    pair = {"uyvy": [u, y, v, y], "yuyv": [y, u, y, v]}[order]
    msg = Image(height=2, width=4, encoding=encoding, step=8)
    msg.data = bytes(pair * 4)
    c, d, e = y - 16, u - 128, v - 128  # BT.601 video range, as cameras send 4:2:2
    expected = np.array([1.164 * c + 1.596 * e, 1.164 * c - 0.391 * d - 0.813 * e, 1.164 * c + 2.018 * d])
    assert np.abs(image_to_rgb(msg).astype(int) - expected).max() <= 1
    assert np.abs(image_to_rgb(rgb_to_image(FLAT, encoding)).astype(int) - FLAT).max() <= 2


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_grey_is_scaled_by_its_white_value(encoding: str, big_endian: bool) -> None:
    values = np.array([[0, 1000, 2047, 4095, 65535]], np.uint16)
    msg = Image(height=1, width=5, encoding=encoding, step=10, is_bigendian=int(big_endian))
    msg.data = values.astype(">u2" if big_endian else "<u2").tobytes()
    full = image_to_rgb(msg)
    assert full.shape == (1, 5, 3) and full[0, :, 0].tolist() == [0, 4, 8, 16, 255]
    twelve_bit = image_to_rgb(msg, white_16bit=4095)  # 12-bit machine-vision data
    assert twelve_bit[0, :, 1].tolist() == [0, 62, 127, 255, 255]


def crafted_jpeg(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 7], data[i + 7:i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


def test_compressed_size_is_read_from_the_jpeg_and_png_headers(rgb: np.ndarray) -> None:
    assert compressed_size(rgb_to_compressed(rgb, "jpeg").data) == (11, 7)
    assert compressed_size(rgb_to_compressed(rgb, "png").data) == (11, 7)
    assert compressed_size(crafted_jpeg(20000, 20000)) == (20000, 20000)
    progressive = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert compressed_size(progressive) == (11, 7)
    for junk in (b"", b"\xff\xd8", b"\xff\xd8\xff\xda\x00\x02", b"GIF89a....", b"\xff\xd8\x00\x00\x00\x00"):
        assert compressed_size(junk) is None, junk
    assert claimed_size(rgb_to_image(rgb)) == (11, 7)


def test_huge_claimed_size_is_refused_before_decoding() -> None:
    import tracemalloc

    msg = CompressedImage(format="jpeg")
    msg.data = crafted_jpeg(20000, 20000)
    assert len(msg.data) < 1000
    tracemalloc.start()
    with pytest.raises(ImageConversionError, match=r"20000x20000 but its CameraInfo says 88x48; not decoded") as err:
        compressed_to_rgb(msg, "/cam/compressed", expected_size=(88, 48))
    assert err.value.reason == "image_size_mismatch"
    with pytest.raises(ImageConversionError, match="more than the maximum") as err:
        compressed_to_rgb(msg, "/cam/compressed", max_pixels=1_000_000)
    assert err.value.reason == "image_too_large"
    raw = Image(height=20000, width=20000, encoding="rgb8", step=60000)  # claims 1.2 GB, carries 3 bytes
    raw.data = b"abc"
    with pytest.raises(ImageConversionError, match="CameraInfo says 88x48") as err:
        image_to_rgb(raw, expected_size=(88, 48))
    assert err.value.reason == "image_size_mismatch"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000, peak


def test_image_that_is_not_jpeg_or_png_is_refused(rgb: np.ndarray) -> None:
    msg = CompressedImage(format="jpeg")
    msg.data = cv2.imencode(".bmp", rgb)[1].tobytes()  # OpenCV would decode it
    with pytest.raises(ImageConversionError, match="no JPEG frame header"):
        compressed_to_rgb(msg)
