"""Tests of protoocc_ros.ros.publishing.msg_builders: poses, intrinsics and stamps survive the conversion to messages."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from protoocc_ros.geometry import quaternion_to_matrix
from protoocc_ros.ros.publishing import msg_builders as mb


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 1e-3))
def test_transform_msg_carries_rotation_in_xyzw_order(q_wxyz: list[float]) -> None:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(q_wxyz)
    r = mb.transform_msg(T, "a", "b", 0).transform.rotation
    np.testing.assert_allclose(quaternion_to_matrix([r.w, r.x, r.y, r.z]), T[:3, :3], atol=1e-9)


def test_transform_msg_carries_pose_and_frames() -> None:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix([0.5, 0.1, -0.3, 0.7])
    T[:3, 3] = [3.0, -1.5, 2.25]
    msg = mb.transform_msg(T, "base_link", "cam_front_optical_frame", 1_234_567_890_123)
    assert (msg.header.frame_id, msg.child_frame_id) == ("base_link", "cam_front_optical_frame")
    assert mb.stamp_to_ns(msg.header.stamp) == 1_234_567_890_123
    r = msg.transform.rotation
    np.testing.assert_allclose(quaternion_to_matrix([r.w, r.x, r.y, r.z]), T[:3, :3], atol=1e-12)
    t = msg.transform.translation
    assert (t.x, t.y, t.z) == (3.0, -1.5, 2.25)
    with pytest.raises(mb.MsgBuildError, match="expected \\(4, 4\\)"):
        mb.transform_msg(np.eye(3), "a", "b", 0)


def test_camera_info_has_k_and_projection() -> None:
    K = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
    info = mb.camera_info_msg(K, 1600, 900, 10, "cam_front_optical_frame")
    np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), K)
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], K)
    assert (info.width, info.height, info.header.frame_id) == (1600, 900, "cam_front_optical_frame")
    with pytest.raises(mb.MsgBuildError, match="K has shape"):
        mb.camera_info_msg(np.eye(4), 1, 1, 0, "x")


def test_stamps_names_and_tf_contents() -> None:
    assert mb.seconds_to_ns(1533151603.547590) == 1533151603_547590_000
    assert mb.stamp_to_ns(mb.time_msg(1533151603_547590_000)) == 1533151603_547590_000
    assert mb.optical_frame_id("CAM_BACK_LEFT") == "cam_back_left_optical_frame"
    assert mb.image_topic("CAM_FRONT", compressed=True) == "/cameras/CAM_FRONT/image_raw/compressed"
    static = mb.camera_static_tf({"CAM_FRONT": np.eye(4), "image_2": np.eye(4)}, 5)
    assert [t.child_frame_id for t in static.transforms] == ["cam_front_optical_frame", "image_2_optical_frame"]
    assert {t.header.frame_id for t in static.transforms} == {"base_link"}
    (ego,) = mb.ego_pose_tf(np.eye(4), 7).transforms
    assert (ego.header.frame_id, ego.child_frame_id) == ("odom", "base_link")
    assert mb.stamp_to_ns(mb.clock_msg(99).clock) == 99
