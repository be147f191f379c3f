"""sensor_msgs_py.point_cloud2 replacement (docs/architecture.md "ROS replacements"): PointCloud2 <-> numpy
structured arrays.

Same function names and meaning as sensor_msgs_py.point_cloud2 (create_cloud, read_points,
dtype_from_fields), with the fields taken from a numpy structured dtype.
"""
from __future__ import annotations

import array
import sys
from collections.abc import Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

__all__ = [
    "PointCloudError", "OCCUPANCY_POINT_DTYPE", "fields_from_dtype", "dtype_from_fields", "create_cloud",
    "read_points",
]

# x, y, z float32 (m), label uint8, confidence float32 (0..1); 4-byte aligned, point_step 20.
OCCUPANCY_POINT_DTYPE = np.dtype(
    {"names": ["x", "y", "z", "label", "confidence"], "formats": ["<f4", "<f4", "<f4", "u1", "<f4"],
     "offsets": [0, 4, 8, 12, 16], "itemsize": 20}
)

_TO_POINTFIELD: dict[str, int] = {
    "i1": PointField.INT8, "u1": PointField.UINT8, "i2": PointField.INT16, "u2": PointField.UINT16,
    "i4": PointField.INT32, "u4": PointField.UINT32, "f4": PointField.FLOAT32, "f8": PointField.FLOAT64,
}
_FROM_POINTFIELD = {v: k for k, v in _TO_POINTFIELD.items()}


class PointCloudError(ValueError):
    """A PointCloud2 / dtype that cannot be converted (message names the field and what was expected)."""


def fields_from_dtype(dtype: np.dtype) -> list[PointField]:
    """PointFields of a structured dtype (sub-arrays become ``count`` > 1)."""
    if dtype.names is None:
        raise PointCloudError(f"expected a structured dtype with named fields, got {dtype}")
    fields = []
    for name in dtype.names:
        sub, offset = dtype.fields[name][:2]  # type: ignore[index]  # named dtype: fields is set
        base, count = (sub.subdtype[0], int(np.prod(sub.subdtype[1]))) if sub.subdtype else (sub, 1)
        code = f"{base.kind}{base.itemsize}"
        if code not in _TO_POINTFIELD:
            raise PointCloudError(f"field {name!r} has type {base}; PointField supports {sorted(_TO_POINTFIELD)}")
        fields.append(PointField(name=name, offset=offset, datatype=_TO_POINTFIELD[code], count=count))
    return fields


def dtype_from_fields(fields: Sequence[PointField], point_step: int, big_endian: bool = False) -> np.dtype:
    """Structured dtype (itemsize = point_step) of PointFields."""
    names, formats, offsets = [], [], []
    order = ">" if big_endian else "<"
    for f in fields:
        if f.datatype not in _FROM_POINTFIELD:
            raise PointCloudError(f"field {f.name!r}: unknown PointField datatype {f.datatype}")
        base = np.dtype(order + _FROM_POINTFIELD[f.datatype])
        names.append(f.name)
        formats.append(base if f.count == 1 else (base, (f.count,)))
        offsets.append(f.offset)
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    except ValueError as exc:
        raise PointCloudError(f"fields {names} do not fit point_step {point_step}: {exc}") from exc


def create_cloud(header: Header, points: np.ndarray) -> PointCloud2:
    """Unorganised cloud (height 1) from a structured array (N,)."""
    points = np.ascontiguousarray(np.asarray(points).reshape(-1))
    fields = fields_from_dtype(points.dtype)
    is_dense = all(np.isfinite(points[n]).all() for n in points.dtype.names or () if points.dtype[n].kind == "f")
    cloud = PointCloud2(header=header, height=1, width=len(points), fields=fields, is_bigendian=False,
                        point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * len(points),
                        is_dense=bool(is_dense))
    little = all(points.dtype[n].byteorder in "<|" or (points.dtype[n].byteorder == "=" and sys.byteorder == "little")
                 for n in points.dtype.names or ())
    data = array.array("B")
    data.frombytes((points if little else points.astype(points.dtype.newbyteorder("<"))).view(np.uint8).data)
    cloud.data = data  # an array.array('B') is taken as is (bytes would be copied, or checked per byte)
    return cloud


def read_points(cloud: PointCloud2, field_names: Sequence[str] | None = None, skip_nans: bool = False) -> np.ndarray:
    """Structured array (height * width,) of the cloud (a copy); optionally only ``field_names``.

    skip_nans drops points with a NaN in any selected floating-point field.
    """
    dtype = dtype_from_fields(cloud.fields, cloud.point_step, bool(cloud.is_bigendian))
    n = int(cloud.width) * int(cloud.height)
    if cloud.row_step < cloud.width * cloud.point_step or len(cloud.data) != cloud.row_step * cloud.height:
        raise PointCloudError(
            f"cloud of {cloud.width}x{cloud.height} points, point_step {cloud.point_step}, row_step {cloud.row_step} "
            f"has {len(cloud.data)} bytes; expected row_step * height bytes")
    rows = np.frombuffer(cloud.data, dtype=np.uint8).reshape(cloud.height, cloud.row_step)
    packed = np.ascontiguousarray(rows[:, : cloud.width * cloud.point_step])
    points = packed.view(dtype).reshape(n)
    have = list(dtype.names or ())
    names = list(field_names) if field_names is not None else have
    missing = [name for name in names if name not in have]
    if missing:
        raise PointCloudError(f"cloud has no field(s) {missing}; it has {have}")
    out = np.empty(n, dtype=[(name, dtype[name].newbyteorder("=")) for name in names])
    for name in names:
        out[name] = points[name]
    if skip_nans:
        keep = np.ones(n, dtype=bool)
        for name in names:
            if out.dtype[name].kind == "f":
                values = out[name].reshape(n, -1)
                keep &= ~np.isnan(values).any(axis=1)
        out = out[keep]
    return out
