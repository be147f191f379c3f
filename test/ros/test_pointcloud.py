"""Tests for protoocc_ros.ros.publishing.pointcloud (sensor_msgs_py.point_cloud2 replacement)."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from protoocc_ros.ros.publishing.pointcloud import (
    OCCUPANCY_POINT_DTYPE,
    PointCloudError,
    create_cloud,
    dtype_from_fields,
    fields_from_dtype,
    read_points,
)


def occupancy_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = np.zeros(n, OCCUPANCY_POINT_DTYPE)
    for axis in "xyz":
        pts[axis] = rng.normal(size=n)
    pts["label"] = rng.integers(0, 17, size=n)
    pts["confidence"] = rng.random(n)
    return pts


def test_occupancy_cloud_layout_matches_the_spec() -> None:
    cloud = create_cloud(Header(frame_id="base_link"), occupancy_points(5))
    layout = [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    assert layout == [("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
                      ("label", 12, PointField.UINT8, 1), ("confidence", 16, PointField.FLOAT32, 1)]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 5, 20, 100)
    assert len(cloud.data) == 100 and cloud.is_dense and cloud.header.frame_id == "base_link"


def test_round_trip_preserves_every_field() -> None:
    pts = occupancy_points(100)
    back = read_points(create_cloud(Header(), pts))
    assert back.dtype.names == pts.dtype.names
    for name in pts.dtype.names:
        np.testing.assert_array_equal(back[name], pts[name])


def test_empty_cloud_round_trips() -> None:
    cloud = create_cloud(Header(), np.zeros(0, OCCUPANCY_POINT_DTYPE))
    assert cloud.width == 0 and len(read_points(cloud)) == 0


def test_subset_of_fields_and_subarray_fields() -> None:
    dtype = np.dtype([("x", "<f8"), ("rgb", "u1", (3,)), ("ring", "<u2")])
    pts = np.zeros(4, dtype)
    pts["x"] = [1, 2, 3, 4]
    pts["rgb"] = np.arange(12).reshape(4, 3)
    pts["ring"] = [7, 8, 9, 10]
    cloud = create_cloud(Header(), pts)
    assert [f.count for f in cloud.fields] == [1, 3, 1]
    sub = read_points(cloud, field_names=["ring", "rgb"])
    assert sub.dtype.names == ("ring", "rgb")
    np.testing.assert_array_equal(sub["rgb"], pts["rgb"])
    np.testing.assert_array_equal(sub["ring"], pts["ring"])


def test_skip_nans_drops_points_with_nan_coordinates() -> None:
    pts = occupancy_points(6)
    pts["y"][[1, 4]] = np.nan
    cloud = create_cloud(Header(), pts)
    assert not cloud.is_dense
    kept = read_points(cloud, skip_nans=True)
    np.testing.assert_array_equal(kept["label"], pts["label"][[0, 2, 3, 5]])
    assert len(read_points(cloud)) == 6


def test_big_endian_organised_cloud_with_row_padding() -> None:
    dtype_be = np.dtype([("x", ">f4"), ("label", "u1")])
    pts = np.zeros((2, 3), dtype_be)
    pts["x"] = np.arange(6, dtype=np.float32).reshape(2, 3)
    pts["label"] = np.arange(6).reshape(2, 3) + 10
    rows = np.zeros((2, 3 * 5 + 7), np.uint8)  # 7 bytes of padding per row
    rows[:, :15] = pts.view(np.uint8).reshape(2, 15)
    cloud = PointCloud2(height=2, width=3, point_step=5, row_step=22, is_bigendian=True,
                        fields=[PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                                PointField(name="label", offset=4, datatype=PointField.UINT8, count=1)])
    cloud.data = rows.tobytes()
    out = read_points(cloud)
    np.testing.assert_array_equal(out["x"], np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(out["label"], np.arange(6) + 10)


def test_bad_clouds_and_dtypes_raise() -> None:
    cloud = create_cloud(Header(), occupancy_points(3))
    cloud.data = bytes(cloud.data)[:-1]
    with pytest.raises(PointCloudError, match="row_step"):
        read_points(cloud)
    with pytest.raises(PointCloudError, match="no field"):
        read_points(create_cloud(Header(), occupancy_points(3)), field_names=["intensity"])
    with pytest.raises(PointCloudError, match="'flag'"):
        fields_from_dtype(np.dtype([("flag", "?")]))
    with pytest.raises(PointCloudError, match="structured"):
        fields_from_dtype(np.dtype("f4"))
    with pytest.raises(PointCloudError, match="datatype 42"):
        dtype_from_fields([PointField(name="x", offset=0, datatype=42, count=1)], 4)
    with pytest.raises(PointCloudError, match="point_step 2"):
        dtype_from_fields([PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1)], 2)
