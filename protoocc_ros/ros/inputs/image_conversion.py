"""cv_bridge replacement (docs/architecture.md "ROS replacements"): sensor_msgs Image / CompressedImage <-> numpy
RGB uint8, with the size a message claims checked before anything is allocated for it.

Raw encodings (docs/operating.md "Cameras"): rgb8, bgr8, rgba8, bgra8, mono8; bayer_{rggb,bggr,gbrg,grbg}8 and
...16 (demosaiced by OpenCV, bilinear); yuv422 = uyvy and yuv422_yuy2 = yuyv (4:2:2, even width); mono16 and
16UC1 (scaled to 8 bits: ``white_16bit`` -> 255, e.g. 4095 for 12-bit machine-vision data; also for bayer_*16).
16-bit data honours ``is_bigendian``. Compressed: jpeg and png (OpenCV), whatever the format string says
about the encoding before compression.

Before decoding, the width x height the message claims (raw: header fields; jpeg: the SOF segment; png: IHDR)
is compared with ``expected_size`` (the camera's CameraInfo) and ``max_pixels``, so a 631-byte JPEG that
claims 20000x20000 is refused without the 1.2 GB OpenCV would allocate for it. Errors are
:class:`ImageConversionError` naming topic and encoding, with ``reason`` = the /diagnostics key
(``image_encoding``, ``image_size_mismatch``, ``image_too_large``). When the real ``cv_bridge`` is importable
it decodes the plain 8-bit encodings (after the same checks), as on a ROS install.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from protoocc_ros.ros.inputs.rectification import DEFAULT_MAX_PIXELS

__all__ = [
    "ImageConversionError", "RAW_ENCODINGS", "COMPRESSED_FORMATS", "DEFAULT_MAX_PIXELS",
    "image_to_rgb", "compressed_to_rgb", "msg_to_rgb", "claimed_size", "compressed_size",
    "rgb_to_image", "rgb_to_compressed",
]



@dataclass(frozen=True)
class RawEncoding:
    """How a raw encoding is laid out and turned into RGB."""

    channels: int         # values per pixel in the buffer (2 for 4:2:2 YUV: one luma + one chroma byte)
    bits: int             # 8 or 16 per value
    to_rgb: int | None    # cv2 conversion code to RGB (after 16 -> 8 bit scaling); None: already RGB
    basic: bool = False   # one of cv_bridge's plain 8-bit encodings


# ROS encoding name (sensor_msgs/image_encodings.hpp) -> layout. OpenCV names Bayer patterns by the second row:
# bayer_rggb = COLOR_BayerBG (as cv_bridge maps them); test_image_conversion checks each on a known mosaic.
RAW_ENCODINGS: dict[str, RawEncoding] = {
    "rgb8": RawEncoding(3, 8, None, True),
    "bgr8": RawEncoding(3, 8, cv2.COLOR_BGR2RGB, True),
    "mono8": RawEncoding(1, 8, cv2.COLOR_GRAY2RGB, True),
    "bgra8": RawEncoding(4, 8, cv2.COLOR_BGRA2RGB, True),
    "rgba8": RawEncoding(4, 8, cv2.COLOR_RGBA2RGB, True),
    "mono16": RawEncoding(1, 16, cv2.COLOR_GRAY2RGB),
    "16uc1": RawEncoding(1, 16, cv2.COLOR_GRAY2RGB),
    "bayer_rggb8": RawEncoding(1, 8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": RawEncoding(1, 8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": RawEncoding(1, 8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": RawEncoding(1, 8, cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": RawEncoding(1, 16, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": RawEncoding(1, 16, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": RawEncoding(1, 16, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": RawEncoding(1, 16, cv2.COLOR_BayerGB2RGB),
    "yuv422": RawEncoding(2, 8, cv2.COLOR_YUV2RGB_UYVY),       # ROS "yuv422" is UYVY byte order
    "uyvy": RawEncoding(2, 8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": RawEncoding(2, 8, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": RawEncoding(2, 8, cv2.COLOR_YUV2RGB_YUYV),
}
COMPRESSED_FORMATS = ("jpeg", "png")
HAVE_CV_BRIDGE = importlib.util.find_spec("cv_bridge") is not None
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array (message names topic + encoding);
    ``reason`` is the /diagnostics key."""

    def __init__(self, message: str, reason: str = "image_encoding") -> None:
        super().__init__(message)
        self.reason = reason


def _where(topic: str) -> str:
    return f"image on {topic!r}" if topic else "image"


def _check_claim(width: int, height: int, what: str, expected_size: tuple[int, int] | None,
                 max_pixels: int) -> None:
    """Refuse a claimed size that is empty, above ``max_pixels`` or not ``expected_size`` (width, height)."""
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"{what}: size mismatch: claims {width}x{height} pixels", "image_size_mismatch")
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise ImageConversionError(f"{what}: image is {width}x{height} but its CameraInfo says "
                                   f"{expected_size[0]}x{expected_size[1]}; not decoded", "image_size_mismatch")
    if width * height > max_pixels:
        raise ImageConversionError(f"{what}: claims {width}x{height} = {width * height} pixels, more than the "
                                   f"maximum {max_pixels} (parameter image_max_pixels); not decoded", "image_too_large")


def claimed_size(msg: Image | CompressedImage) -> tuple[int, int] | None:
    """(width, height) a message claims without decoding it; None when a compressed header cannot be read."""
    if isinstance(msg, CompressedImage):
        return compressed_size(msg.data)
    return int(msg.width), int(msg.height)


def compressed_size(data: Any) -> tuple[int, int] | None:
    """(width, height) from a JPEG frame header (SOFn) or PNG IHDR chunk; None for anything else."""
    view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    n = len(view)
    if n >= 24 and bytes(view[:8]) == _PNG_SIGNATURE and bytes(view[12:16]) == b"IHDR":
        return int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    if n < 4 or view[0] != 0xFF or view[1] != 0xD8:
        return None
    i = 2
    while i + 4 <= n:  # walk the marker segments up to the frame header (before any entropy-coded data)
        if view[i] != 0xFF:
            return None
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = int.from_bytes(view[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            if length < 8 or i + 9 > n:
                return None
            return int.from_bytes(view[i + 7:i + 9], "big"), int.from_bytes(view[i + 5:i + 7], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def _raw_with_cv_bridge(msg: Image) -> np.ndarray:
    from cv_bridge import CvBridge, CvBridgeError  # only on a ROS install

    try:
        return np.ascontiguousarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except CvBridgeError as exc:  # pragma: no cover - exercised only where cv_bridge exists
        raise ImageConversionError(f"cv_bridge could not convert {msg.encoding!r}: {exc}") from exc


def _to_8bit(values: np.ndarray, white_16bit: int) -> np.ndarray:
    """uint16 -> uint8 with ``white_16bit`` -> 255 (saturating)."""
    return cv2.convertScaleAbs(values, alpha=255.0 / float(white_16bit))


def image_to_rgb(msg: Image, topic: str = "", expected_size: tuple[int, int] | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, white_16bit: int = 65535) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (a copy, safe to keep). ``expected_size`` = (width, height)."""
    name = msg.encoding.lower()
    spec = RAW_ENCODINGS.get(name)
    if spec is None:
        raise ImageConversionError(
            f"{_where(topic)}: unsupported encoding {msg.encoding[:40]!r}; expected one of {sorted(RAW_ENCODINGS)}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    where = f"{_where(topic)} ({msg.encoding})"
    _check_claim(width, height, where, expected_size, max_pixels)
    row_bytes = width * spec.channels * spec.bits // 8
    if step < row_bytes or len(msg.data) != step * height or (spec.channels == 2 and width % 2):
        raise ImageConversionError(
            f"{where}: size mismatch: {width}x{height}, step {step}, {len(msg.data)} bytes; expected step >= "
            f"{row_bytes} and {step}*{height} bytes" + (", an even width" if spec.channels == 2 else ""))
    if HAVE_CV_BRIDGE and spec.basic:
        return _raw_with_cv_bridge(msg)
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]  # (H, row bytes)
    if spec.bits == 16:
        order = ">u2" if msg.is_bigendian else "<u2"
        values = np.ascontiguousarray(rows).view(order).astype(np.uint16)  # (H, W * C) native
        pixels = _to_8bit(values, white_16bit).reshape(height, width, spec.channels)
    else:
        pixels = rows.reshape(height, width, spec.channels)  # (H, W, C)
    if spec.to_rgb is None:
        return pixels.copy()
    src = np.ascontiguousarray(pixels[..., 0] if spec.channels == 1 else pixels)
    return cv2.cvtColor(src, spec.to_rgb)


def compressed_to_rgb(msg: CompressedImage, topic: str = "", expected_size: tuple[int, int] | None = None,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png, image_transport format strings too) -> (H, W, 3) uint8 RGB.

    The frame header is read first: data that is neither JPEG nor PNG, or whose size is not ``expected_size``
    (width, height) or exceeds ``max_pixels``, is refused before OpenCV allocates anything for it."""
    fmt = msg.format.lower()
    where = f"{_where(topic)} ({msg.format[:60]})"
    if not any(name in fmt for name in ("jpeg", "jpg", "png")):
        raise ImageConversionError(
            f"{_where(topic)}: unsupported compressed format {msg.format[:60]!r}; expected one of {COMPRESSED_FORMATS}")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    size = compressed_size(buffer) if buffer.size else None
    if size is None:
        raise ImageConversionError(f"{where}: {buffer.size} bytes could not be decoded (no JPEG frame header or "
                                   "PNG IHDR found)")
    _check_claim(size[0], size[1], where, expected_size, max_pixels)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ImageConversionError(f"{where}: {buffer.size} bytes could not be decoded")
    if (bgr.shape[1], bgr.shape[0]) != size:  # pragma: no cover - a decoder that disagrees with its header
        raise ImageConversionError(f"{where}: decoded {bgr.shape[1]}x{bgr.shape[0]}, header said {size}",
                                   "image_size_mismatch")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def msg_to_rgb(msg: Image | CompressedImage, topic: str = "", expected_size: tuple[int, int] | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS, white_16bit: int = 65535) -> np.ndarray:
    """Either image message type -> (H, W, 3) uint8 RGB (``expected_size`` = (width, height) or None)."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, topic, expected_size, max_pixels)
    return image_to_rgb(msg, topic, expected_size, max_pixels, white_16bit)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageConversionError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) Bayer mosaic of ``pattern`` (e.g. 'rggb': R at (0, 0), B at (1, 1))."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(colour)]
    return out


def _encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB -> the pixel buffer of ``encoding`` ((H, W, C) uint8, or uint16 for 16-bit encodings, full range)."""
    simple = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "mono8": cv2.COLOR_RGB2GRAY, "bgra8": cv2.COLOR_RGB2BGRA,
              "rgba8": cv2.COLOR_RGB2RGBA, "yuv422": cv2.COLOR_RGB2YUV_UYVY, "uyvy": cv2.COLOR_RGB2YUV_UYVY,
              "yuv422_yuy2": cv2.COLOR_RGB2YUV_YUYV, "yuyv": cv2.COLOR_RGB2YUV_YUYV}
    if encoding in simple:
        code = simple[encoding]
        return rgb if code is None else cv2.cvtColor(rgb, code)
    if encoding.startswith("bayer_"):
        mosaic = _mosaic(rgb, encoding[6:10])
        return mosaic.astype(np.uint16) * 257 if encoding.endswith("16") else mosaic
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257  # mono16 / 16UC1


def rgb_to_image(rgb: np.ndarray, encoding: str = "rgb8", header: Header | None = None,
                 big_endian: bool = False) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in ``encoding`` (any of RAW_ENCODINGS; 16-bit ones full range)."""
    _check_rgb(rgb)
    spec = RAW_ENCODINGS.get(encoding.lower())
    if spec is None:
        raise ImageConversionError(f"cannot encode {encoding!r}; expected one of {sorted(RAW_ENCODINGS)}")
    if spec.channels == 2 and rgb.shape[1] % 2:
        raise ImageConversionError(f"cannot encode {encoding!r}: width {rgb.shape[1]} is odd (4:2:2 needs pairs)")
    pixels = np.ascontiguousarray(_encode(rgb, encoding.lower()))
    if spec.bits == 16:
        pixels = pixels.astype(">u2" if big_endian else "<u2")
    msg = Image(header=header or Header(), height=rgb.shape[0], width=rgb.shape[1], encoding=encoding)
    msg.is_bigendian = int(big_endian and spec.bits == 16)
    msg.step = rgb.shape[1] * spec.channels * spec.bits // 8
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
