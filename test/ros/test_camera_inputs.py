"""Tests for protoocc_ros.ros.inputs.camera_inputs.CameraInfoHistory: each image is read with the CameraInfo of its
stamp (or the newest not newer), whatever order they arrive in."""
from __future__ import annotations

import numpy as np

from protoocc_ros.ros.inputs.camera_inputs import HISTORY_LENGTH, CameraInfoHistory, InfoEntry
from protoocc_ros.ros.inputs.rectification import camera_model
from protoocc_ros.ros.publishing import msg_builders as mb

S = 1_000_000_000
K = np.array([[40.0, 0.0, 44.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])


def entry(stamp_ns: int, width: int = 88, height: int = 48) -> InfoEntry:
    scaled = K.copy()
    scaled[:2] *= width / 88
    return InfoEntry(stamp_ns, camera_model(mb.camera_info_msg(scaled, width, height, stamp_ns, "cam")))


def test_image_is_paired_with_the_camera_info_of_its_stamp_in_any_arrival_order() -> None:
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        history = CameraInfoHistory()
        infos = [entry(10 * S, 88, 48), entry(11 * S, 176, 96), entry(12 * S, 88, 48)]  # resolution changes
        for i in order:
            history.add(infos[i])
        sizes = [(e.model.width, e.model.height) for e in (history.at(t) for t in (10 * S, 11 * S + S // 2, 12 * S))]
        assert sizes == [(88, 48), (176, 96), (88, 48)], order
        assert history.at(10 * S - 1) is None  # no CameraInfo at or before the image
        assert history.at(10 * S - 1, tolerance_ns=2).stamp_ns == 10 * S


def test_repeated_camera_info_is_stored_once_under_its_oldest_stamp() -> None:
    history = CameraInfoHistory()
    for t in (3, 1, 2, 4):
        history.add(entry(t * S))
    assert len(history) == 1 and history.at(5 * S).stamp_ns == 1 * S


def test_refused_camera_info_is_kept_so_its_images_are_not_read_with_an_older_one() -> None:
    history = CameraInfoHistory()
    history.add(entry(1 * S))
    history.add(InfoEntry(2 * S, None, ("bad_camera_info", "width x height = 0x0")))
    assert history.at(2 * S).refused[0] == "bad_camera_info"
    assert history.at(1 * S).model is not None


def test_history_is_bounded_and_survives_a_time_jump() -> None:
    history = CameraInfoHistory()
    for t in range(3 * HISTORY_LENGTH):
        history.add(entry(t * S, 88 if t % 2 else 176, 48 if t % 2 else 96))
    assert len(history) == HISTORY_LENGTH
    history.time_jumped()  # a bag restarted: the newest calibration stays, valid for any stamp
    assert len(history) == 1 and history.at(0).model.width == 88


def test_ego_pose_waits_for_the_transform_after_the_stamp_instead_of_extrapolating() -> None:
    """Odometry usually arrives just after the images: the pose at the image stamp is interpolated from the
    transform that follows (as tf2's MessageFilter waits for it), not extrapolated within tf_tolerance_s."""
    import threading

    from protoocc_ros.geometry import make_transform
    from protoocc_ros.ros.inputs.camera_inputs import CameraInputs
    from protoocc_ros.ros.inputs.tf_buffer import TfBuffer

    t0 = 1_530_000_000 * S
    tf = TfBuffer(tolerance_s=0.1)
    tf.set_transform(mb.transform_msg(make_transform(None, [0.0, 0.0, 0.0]), "odom", "base_link", t0))
    inputs = CameraInputs(["cam"], tf, lambda *_: None)
    later = threading.Timer(0.05, lambda: tf.set_transform(
        mb.transform_msg(make_transform(None, [1.0, 0.0, 0.0]), "odom", "base_link", t0 + S // 10)))
    later.start()
    pose = inputs.lookup("odom", "base_link", t0 + S // 20, "ego pose")  # halfway: the next one is on its way
    later.join()
    assert abs(pose[0, 3] - 0.5) < 1e-9
    # Nothing follows within the wait: extrapolation within the tolerance, the newest pose.
    assert abs(inputs.lookup("odom", "base_link", t0 + S // 10 + S // 20, "ego pose")[0, 3] - 1.0) < 1e-9
