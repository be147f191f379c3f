"""Tests for protoocc_ros.ros.inputs.tf_buffer (tf2_ros Buffer replacement)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from tf2_msgs.msg import TFMessage

from protoocc_ros.ros.inputs.tf_buffer import (
    ConnectivityError,
    ExtrapolationError,
    FrameLookupError,
    TfBuffer,
    Transform,
    TransformError,
    quat_to_matrix,
    slerp,
)

S = 1_000_000_000


def yaw_quat(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def random_quat(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def tf(parent: str, child: str, stamp_ns: int, xyz=(0.0, 0.0, 0.0), quat=(0.0, 0.0, 0.0, 1.0)) -> TransformStamped:
    msg = TransformStamped(child_frame_id=child)
    msg.header.frame_id = parent
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), S)
    t, r = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in xyz)
    r.x, r.y, r.z, r.w = (float(v) for v in quat)
    return msg


def matrix(xyz, quat) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(np.asarray(quat, float))
    out[:3, 3] = xyz
    return out


@pytest.fixture()
def rig() -> tuple[TfBuffer, dict[str, np.ndarray]]:
    """odom -> base_link (dynamic, two stamps) and base_link -> two cameras (static)."""
    rng = np.random.default_rng(1)
    buf = TfBuffer(cache_time_s=10.0)
    mats = {}
    for cam in ("cam_a", "cam_b"):
        xyz, q = rng.normal(size=3), random_quat(rng)
        assert buf.set_transform_static(tf("base_link", cam, 0, xyz, q))
        mats[cam] = matrix(xyz, q)
    xyz, q = rng.normal(size=3), random_quat(rng)
    buf.add_message(TFMessage(transforms=[tf("odom", "base_link", 5 * S, xyz, q),
                                          tf("odom", "base_link", 6 * S, xyz + 1.0, q)]))
    mats["odom_base"] = matrix(xyz, q)
    return buf, mats


def test_chain_through_dynamic_and_static_edges_matches_matrix_product(rig) -> None:
    buf, mats = rig
    got = buf.lookup_matrix("odom", "cam_a", 5 * S)
    np.testing.assert_allclose(got, mats["odom_base"] @ mats["cam_a"], atol=1e-12)
    np.testing.assert_allclose(buf.lookup_matrix("cam_a", "odom", 5 * S), np.linalg.inv(got), atol=1e-12)


def test_sibling_frames_chain_through_their_common_parent(rig) -> None:
    buf, mats = rig
    expected = np.linalg.inv(mats["cam_a"]) @ mats["cam_b"]
    np.testing.assert_allclose(buf.lookup_matrix("cam_a", "cam_b", 5 * S), expected, atol=1e-12)
    assert buf.lookup_transform("cam_b", "cam_b", 123).matrix().tolist() == np.eye(4).tolist()


def test_translation_is_linear_in_time(rig) -> None:
    buf, mats = rig
    got = buf.lookup_matrix("odom", "base_link", 5 * S + S // 4)
    np.testing.assert_allclose(got[:3, 3], mats["odom_base"][:3, 3] + 0.25, atol=1e-12)


def test_rotation_is_slerped_in_time() -> None:
    buf = TfBuffer()
    buf.set_transform(tf("odom", "base_link", 0, quat=yaw_quat(0.0)))
    buf.set_transform(tf("odom", "base_link", 4 * S, quat=yaw_quat(math.pi / 2)))
    for frac in (0.25, 0.5, 0.9):
        rot = buf.lookup_matrix("odom", "base_link", int(frac * 4 * S))[:3, :3]
        assert math.atan2(rot[1, 0], rot[0, 0]) == pytest.approx(frac * math.pi / 2, abs=1e-9)


def test_inserting_out_of_order_keeps_history_sorted() -> None:
    buf = TfBuffer()
    for t in (3, 1, 2):
        assert buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    assert buf.lookup_matrix("odom", "base_link", int(1.5 * S))[0, 3] == pytest.approx(1.5)


def test_extrapolation_beyond_tolerance_raises_with_direction(rig) -> None:
    buf, _ = rig
    with pytest.raises(ExtrapolationError, match="past") as past:
        buf.lookup_transform("odom", "cam_a", 4 * S)
    assert past.value.direction == "past"
    with pytest.raises(ExtrapolationError, match="future") as future:
        buf.lookup_transform("odom", "cam_a", 7 * S, tolerance_s=0.5)
    assert future.value.direction == "future"
    assert isinstance(past.value, TransformError)


def test_extrapolation_within_tolerance_holds_the_edge_value(rig) -> None:
    buf, mats = rig
    got = buf.lookup_matrix("odom", "base_link", 6 * S + S // 10, tolerance_s=0.2)
    np.testing.assert_allclose(got[:3, 3], mats["odom_base"][:3, 3] + 1.0, atol=1e-12)
    default_tol = TfBuffer(tolerance_s=0.2)
    default_tol.set_transform(tf("odom", "base_link", 5 * S))
    assert default_tol.can_transform("odom", "base_link", 5 * S - S // 10)
    assert not default_tol.can_transform("odom", "base_link", 5 * S - S // 2)


def test_latest_common_time_is_used_when_no_time_is_given(rig) -> None:
    buf, mats = rig
    np.testing.assert_allclose(buf.lookup_matrix("odom", "base_link")[:3, 3], mats["odom_base"][:3, 3] + 1.0)
    np.testing.assert_allclose(buf.lookup_matrix("cam_a", "cam_b", 0), np.linalg.inv(mats["cam_a"]) @ mats["cam_b"])


def test_missing_frame_and_disconnected_trees_raise(rig) -> None:
    buf, _ = rig
    with pytest.raises(FrameLookupError, match="'cam_c' does not exist"):
        buf.lookup_transform("odom", "cam_c", 5 * S)
    assert isinstance(FrameLookupError("x"), LookupError)
    buf.set_transform(tf("map", "other", 5 * S))
    with pytest.raises(ConnectivityError, match="not connected"):
        buf.lookup_transform("other", "cam_a", 5 * S)
    assert not buf.can_transform("other", "cam_a", 5 * S)


@pytest.mark.parametrize(
    "msg,reason",
    [
        (tf("odom", "base_link", S, xyz=(float("nan"), 0, 0)), "nan"),
        (tf("odom", "base_link", S, quat=(0, 0, float("inf"), 1)), "nan"),
        (tf("odom", "base_link", S, quat=(0, 0, 0, 0)), "zero_quaternion"),
        (tf("", "base_link", S), "empty_frame_id"),
        (tf("base_link", "base_link", S), "self_transform"),
    ],
)
def test_invalid_transforms_are_rejected_and_counted(msg: TransformStamped, reason: str) -> None:
    seen: list[tuple[str, str]] = []
    buf = TfBuffer(on_reject=lambda r, d: seen.append((r, d)))
    assert buf.set_transform(msg, authority="/tf") is False
    assert buf.rejected == {reason: 1}
    assert seen[0][0] == reason and "/tf" in seen[0][1]
    assert buf.frames() == set()


def test_nan_does_not_poison_existing_history() -> None:
    buf = TfBuffer()
    buf.set_transform(tf("odom", "base_link", S, xyz=(1, 2, 3)))
    buf.set_transform(tf("odom", "base_link", 2 * S, xyz=(float("nan"), 0, 0)))
    np.testing.assert_allclose(buf.lookup_matrix("odom", "base_link", S)[:3, 3], [1, 2, 3])
    assert buf.rejected["nan"] == 1


def test_quaternion_far_from_unit_is_rejected_and_one_within_tolerance_is_normalised() -> None:
    buf = TfBuffer()
    assert not buf.set_transform(tf("odom", "base_link", S, quat=2 * yaw_quat(0.3)))  # tf2 rejects it too
    assert buf.rejected == {"unnormalised_quaternion": 1} and buf.frames() == set()
    assert buf.set_transform(tf("odom", "base_link", S, quat=1.002 * yaw_quat(0.3)))  # |q|² - 1 = 0.004 < 0.01
    rot = buf.lookup_matrix("odom", "base_link", S)[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rot, quat_to_matrix(yaw_quat(0.3)), atol=1e-12)


def test_wrong_way_edge_is_rejected_as_a_loop_and_lookups_keep_working() -> None:
    buf = TfBuffer(cache_time_s=10.0)
    buf.set_transform_static(tf("base_link", "cam", 0, xyz=(0, 0, 1)))
    for t in (1, 2):
        assert buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    assert not buf.set_transform(tf("base_link", "odom", 2 * S + S // 2))  # a misconfigured driver
    assert not buf.set_transform(tf("cam", "odom", 2 * S + S // 2))        # a longer loop: odom -> base -> cam
    assert buf.rejected == {"loop": 2}
    assert buf.set_transform(tf("odom", "base_link", 3 * S, xyz=(3, 0, 0)))
    assert buf.lookup_matrix("odom", "cam", int(2.5 * S))[0, 3] == pytest.approx(2.5)


def test_loop_edge_replaces_the_edges_it_conflicts_with_once_they_aged_out() -> None:
    buf = TfBuffer(cache_time_s=5.0)
    assert buf.set_transform(tf("base_link", "odom", 1 * S))  # the wrong edge came first
    assert not buf.set_transform(tf("odom", "base_link", 2 * S))  # conflicts with fresh data: refused
    assert buf.rejected == {"loop": 1}
    assert buf.set_transform(tf("odom", "base_link", 7 * S, xyz=(7, 0, 0)))  # the wrong edge is older than the cache
    assert buf.lookup_matrix("odom", "base_link", 7 * S)[0, 3] == 7.0
    assert not buf.set_transform(tf("base_link", "odom", 7 * S + 1))  # and now it is the one refused
    assert buf.rejected == {"loop": 2}


def test_dynamic_history_is_limited_to_cache_length_but_static_never_expires() -> None:
    buf = TfBuffer(cache_time_s=5.0)
    buf.set_transform_static(tf("base_link", "cam", 0, xyz=(0, 0, 1)))
    for t in range(21):
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    assert buf.can_transform("odom", "base_link", 15 * S)
    with pytest.raises(ExtrapolationError, match="past"):
        buf.lookup_transform("odom", "base_link", 14 * S)
    assert buf.set_transform(tf("odom", "base_link", 3 * S)) is False
    assert buf.rejected == {"older_than_cache": 1}
    np.testing.assert_allclose(buf.lookup_matrix("odom", "cam", 20 * S)[:3, 3], [20, 0, 1])


def test_late_transform_inside_the_cache_is_inserted_alone() -> None:
    buf = TfBuffer(cache_time_s=10.0, jump_back_s=1.0)
    for t in range(10, 16):
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    assert buf.set_transform(tf("odom", "base_link", int(10.5 * S), xyz=(99, 0, 0)))  # 5 s late, inside the cache
    assert buf.set_transform(tf("odom", "base_link", 16 * S, xyz=(16, 0, 0)))  # the timeline goes on
    assert buf.resets == 0 and not buf.rejected
    assert buf.lookup_matrix("odom", "base_link", int(10.5 * S))[0, 3] == 99.0
    assert buf.lookup_matrix("odom", "base_link", 15 * S)[0, 3] == 15.0


def test_single_transform_far_behind_is_counted_once_when_the_timeline_goes_on() -> None:
    buf = TfBuffer(cache_time_s=10.0, jump_back_s=1.0)
    for t in (48, 49, 50):
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    assert not buf.set_transform(tf("odom", "base_link", 2 * S))  # held: a jump, or one stale message?
    assert not buf.rejected and buf.resets == 0
    assert buf.set_transform(tf("odom", "base_link", 51 * S, xyz=(51, 0, 0)))  # the old timeline goes on
    assert buf.rejected == {"older_than_cache": 1} and buf.resets == 0
    assert buf.lookup_matrix("odom", "base_link", 49 * S)[0, 3] == 49.0


def test_backwards_jump_is_confirmed_by_a_second_transform() -> None:
    buf = TfBuffer(cache_time_s=10.0, jump_back_s=1.0)
    buf.set_transform_static(tf("base_link", "cam", 0, xyz=(0, 0, 1)))
    buf.set_transform(tf("odom", "other", 50 * S))
    for t in (48, 49, 50):
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    assert buf.set_transform(tf("odom", "base_link", int(49.5 * S)))  # slightly late: kept, no reset
    buf.set_transform(tf("odom", "base_link", 2 * S, xyz=(2, 0, 0)))  # bag restarted ...
    assert buf.set_transform(tf("odom", "base_link", 3 * S, xyz=(3, 0, 0)))  # ... and goes on from there
    assert buf.resets == 1 and not buf.rejected
    assert buf.lookup_matrix("odom", "cam", 2 * S)[0, 3] == 2.0
    assert not buf.can_transform("odom", "base_link", 49 * S)
    assert "other" not in buf.frames()


def test_bag_loop_repeating_its_stamps_resets_on_the_second_transform() -> None:
    buf = TfBuffer(cache_time_s=10.0, jump_back_s=1.0)
    for t in range(0, 6):  # a 5 s bag, shorter than the cache, played twice with its own stamps
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    for t in range(0, 3):
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(10 + t, 0, 0)))
    assert buf.resets == 1 and not buf.rejected
    assert buf.lookup_matrix("odom", "base_link", 1 * S)[0, 3] == 11.0
    assert not buf.can_transform("odom", "base_link", 5 * S)


def test_time_jumped_clears_the_old_timeline_and_keeps_what_was_held() -> None:
    buf = TfBuffer(cache_time_s=10.0, jump_back_s=1.0)
    for t in (48, 49, 50):
        buf.set_transform(tf("odom", "base_link", t * S, xyz=(t, 0, 0)))
    buf.set_transform(tf("odom", "base_link", 2 * S, xyz=(2, 0, 0)))  # held
    assert buf.time_jumped(2 * S) and buf.resets == 1  # the cameras jumped back too
    assert buf.lookup_matrix("odom", "base_link", 2 * S)[0, 3] == 2.0
    assert not buf.time_jumped(2 * S) and buf.resets == 1  # already on the new timeline: nothing to clear
    assert not buf.rejected


def test_repeated_stamp_is_ignored_and_counted() -> None:
    buf = TfBuffer()
    assert buf.set_transform(tf("odom", "base_link", S, xyz=(1, 0, 0)))
    assert not buf.set_transform(tf("odom", "base_link", S, xyz=(9, 0, 0)))
    assert buf.rejected == {"repeated_stamp": 1}
    assert buf.lookup_matrix("odom", "base_link", S)[0, 3] == 1.0


def test_clear_forgets_dynamic_but_keeps_static(rig) -> None:
    buf, mats = rig
    buf.clear()
    assert not buf.can_transform("odom", "base_link", 5 * S)
    np.testing.assert_allclose(buf.lookup_matrix("base_link", "cam_a", 99 * S), mats["cam_a"])


def test_invalid_buffer_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="cache_time_s"):
        TfBuffer(cache_time_s=0.0)
    with pytest.raises(ValueError, match="tolerance_s"):
        TfBuffer(tolerance_s=-1.0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 5))
def test_any_chain_equals_the_product_of_its_matrices(seed: int, depth: int) -> None:
    rng = np.random.default_rng(seed)
    buf = TfBuffer()
    expected = np.eye(4)
    for i in range(depth):
        xyz, q = rng.normal(size=3), random_quat(rng)
        buf.set_transform(tf(f"f{i}", f"f{i + 1}", S, xyz, q))
        expected = expected @ matrix(xyz, q)
    got = buf.lookup_transform("f0", f"f{depth}", S)
    np.testing.assert_allclose(got.matrix(), expected, atol=1e-9)
    pts = rng.normal(size=(5, 3))
    np.testing.assert_allclose(got.apply(pts), pts @ expected[:3, :3].T + expected[:3, 3], atol=1e-9)
    np.testing.assert_allclose((got.inverse() @ got).matrix(), np.eye(4), atol=1e-9)


def test_slerp_endpoints_and_shorter_arc() -> None:
    q0, q1 = yaw_quat(0.1), yaw_quat(1.2)
    np.testing.assert_allclose(slerp(q0, q1, 0.0), q0, atol=1e-12)
    np.testing.assert_allclose(slerp(q0, q1, 1.0), q1, atol=1e-12)
    # -q1 is the same rotation: interpolation must not take the long way round
    np.testing.assert_allclose(quat_to_matrix(slerp(q0, -q1, 0.5)), quat_to_matrix(yaw_quat(0.65)), atol=1e-12)
    assert Transform.identity().matrix().tolist() == np.eye(4).tolist()


def test_listener_fills_buffer_from_latched_tf_static_and_tf_over_dds() -> None:
    from rclpy.executors import SingleThreadedExecutor

    from protoocc_ros.ros.runtime.qos import tf_qos, tf_static_qos
    from protoocc_ros.ros.inputs.tf_listener import attach_tf_listener
    from ros_helpers import ros_context, spin_until

    with ros_context() as ctx:
        from rclpy.node import Node

        talker = Node("tf_talker", context=ctx)
        static_pub = talker.create_publisher(TFMessage, "/tf_static", tf_static_qos())
        dynamic_pub = talker.create_publisher(TFMessage, "/tf", tf_qos())
        static_pub.publish(TFMessage(transforms=[tf("base_link", "cam", 0, xyz=(0, 0, 2))]))  # before any listener
        listener = Node("tf_listener", context=ctx)
        buf = TfBuffer()
        attach_tf_listener(listener, buf)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(talker)
        executor.add_node(listener)
        stamp = [S]

        def publish_and_check() -> bool:
            dynamic_pub.publish(TFMessage(transforms=[tf("odom", "base_link", stamp[0], xyz=(1, 0, 0))]))
            stamp[0] += S // 10
            return buf.can_transform("odom", "cam")

        assert spin_until(executor, publish_and_check, timeout_s=10.0)
        np.testing.assert_allclose(buf.lookup_matrix("odom", "cam")[:3, 3], [1, 0, 2])
        executor.shutdown()
        talker.destroy_node()
        listener.destroy_node()


# -- issue 24: future-dated transforms, a bounded tree -----------------------------------------------------------
T0 = 1_533_151_603_512_404_000  # a recording's timeline (~1.5e9 s)
MS = 1_000_000


def odom(stamp_ns: int, x: float = 0.0) -> TransformStamped:
    return tf("odom", "base_link", stamp_ns, xyz=(x, 0.0, 0.0))


def future_buffer() -> tuple[TfBuffer, list[str]]:
    rejected: list[str] = []
    buf = TfBuffer(10.0, 0.0, on_reject=lambda reason, _: rejected.append(reason), jump_back_s=1.0,
                   future_limit_s=1.0)
    for k in range(10):
        assert buf.set_transform(odom(T0 + k * 20 * MS, 0.02 * k))
    return buf, rejected


def test_one_transform_an_hour_ahead_is_refused_once_and_costs_no_history() -> None:
    buf, rejected = future_buffer()
    assert not buf.set_transform(odom(T0 + 3600 * S, 99.0), horizon_ns=T0 + 180 * MS)  # held, not stored
    assert rejected == [] and buf.newest_stamp("base_link") == T0 + 180 * MS
    np.testing.assert_allclose(buf.lookup_matrix("odom", "base_link", T0 + 90 * MS)[0, 3], 0.09)  # history intact
    assert buf.set_transform(odom(T0 + 200 * MS, 0.2))  # the edge goes on: the held one was wrong
    assert rejected == ["future"] and buf.rejected["future"] == 1 and buf.resets == 0
    for k in range(11, 20):  # and no backwards time jump is seen afterwards
        assert buf.set_transform(odom(T0 + k * 20 * MS, 0.02 * k))
    assert rejected == ["future"] and buf.resets == 0


def test_time_jumping_forward_is_taken_when_the_edge_or_the_cameras_continue_it() -> None:
    buf, rejected = future_buffer()
    later = T0 + 600 * S  # the next scene of a replay, ten minutes on
    assert not buf.set_transform(odom(later, 5.0))
    assert buf.set_transform(odom(later + 20 * MS, 5.02))  # a second one continuing it: time jumped
    np.testing.assert_allclose(buf.lookup_matrix("odom", "base_link", later + 10 * MS)[0, 3], 5.01)
    buf2, rejected2 = future_buffer()
    assert not buf2.set_transform(odom(later, 5.0))  # one odometry message per frame (a consumer-paced replay) ...
    assert buf2.release_future(later) == 1  # ... then the camera set stamped there arrives
    assert buf2.newest_stamp("base_link") == later and rejected == rejected2 == []
    assert not buf2.set_transform(odom(later + 3600 * S)) and buf2.release_future(later + S) == 0


def test_static_transforms_and_new_edges_are_never_judged_ahead() -> None:
    buf, rejected = future_buffer()
    assert buf.set_transform_static(tf("base_link", "cam", T0 + 3600 * S))
    assert buf.set_transform(tf("base_link", "wheel", T0 + 3600 * S))  # a new edge, no horizon: nothing to judge by
    assert rejected == []


def test_frames_are_bounded_the_needed_ones_kept_and_refusals_counted() -> None:
    rejected: list[str] = []
    buf = TfBuffer(1.0, on_reject=lambda reason, _: rejected.append(reason), max_frames=8)
    buf.need(["base_link", "odom", "cam_front_optical"])
    assert buf.set_transform(tf("base_footprint", "base_link", T0))  # base_footprint: an ancestor of a needed frame
    for i in range(20):  # a publisher inventing a frame name per message
        buf.set_transform(tf("base_link", f"ghost_{i}", T0 + i * MS))
    assert buf.frame_count() == 8 and rejected.count("too_many_frames") == 20 - 7
    assert buf.set_transform(tf("odom", "base_footprint", T0))  # needed (ancestor): replaces the stalest ghost
    assert buf.set_transform_static(tf("base_link", "cam_front_optical", T0))
    assert buf.frame_count() == 8 and buf.can_transform("odom", "cam_front_optical", T0)
    assert "ghost_0" not in buf.frames() and "ghost_1" not in buf.frames()
    assert not buf.set_transform(tf("base_link", "ghost_99", T0))
    buf.SWEEP_PERIOD_S = 0.0  # ghosts whose data aged out of the cache make room for new frames
    assert buf.set_transform(tf("base_link", "new_sensor", T0 + 5 * S))
    assert buf.frame_count() <= 8 and buf.can_transform("odom", "cam_front_optical", T0)


def test_stamp_horizon_is_the_newest_set_advanced_by_the_clock() -> None:
    from protoocc_ros.ros.inputs.stamp_horizon import StampHorizon

    clock = [1_765_000_000 * S]  # the node's wall clock, years after the recording
    horizon = StampHorizon(lambda: clock[0])
    assert horizon() is None
    horizon.saw(T0)
    clock[0] += 250 * MS
    assert horizon() == T0 + 250 * MS
    clock[0] -= 10 * S  # a clock stepping back does not move the horizon back
    assert horizon() == T0


def test_tf_listener_runs_on_its_own_node_and_thread() -> None:
    from rclpy.node import Node

    from protoocc_ros.ros.inputs.tf_listener import TfListener
    from protoocc_ros.ros.runtime.qos import tf_qos, tf_static_qos
    from ros_helpers import ros_context

    with ros_context() as ctx:
        owner = Node("tf_owner", context=ctx)  # never spun: the listener does not need the owner's executor
        buf = TfBuffer()
        listener = TfListener(owner, buf)
        assert listener.node.get_name() == "tf_owner_tf_listener"
        talker = Node("tf_talker2", context=ctx)
        talker.create_publisher(TFMessage, "/tf_static", tf_static_qos()).publish(
            TFMessage(transforms=[tf("base_link", "cam", 0, xyz=(0, 0, 2))]))
        pub = talker.create_publisher(TFMessage, "/tf", tf_qos())
        deadline = time.monotonic() + 10.0
        stamp = S
        while not buf.can_transform("odom", "cam") and time.monotonic() < deadline:
            pub.publish(TFMessage(transforms=[tf("odom", "base_link", stamp, xyz=(1, 0, 0))]))
            stamp += S // 10
            time.sleep(0.02)
        np.testing.assert_allclose(buf.lookup_matrix("odom", "cam")[:3, 3], [1, 0, 2])
        listener.close()
        assert not listener.thread.is_alive()
        talker.destroy_node()
        owner.destroy_node()
