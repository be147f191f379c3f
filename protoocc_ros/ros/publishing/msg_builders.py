"""numpy arrays and poses -> ROS messages for replay (docs/architecture.md "ROS topics and frames")."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from protoocc_ros.geometry import matrix_to_quaternion

EGO_FRAME = "base_link"
ODOM_FRAME = "odom"
GROUND_TRUTH_TOPIC = "/ground_truth/occupancy"
PREDICTION_TOPIC = "/occupancy_node/occupancy"
DONE_TOPIC = "/replay/done"


class MsgBuildError(ValueError):
    """An array handed to a message builder has the wrong shape/type; the message names the argument."""


def optical_frame_id(camera: str) -> str:
    """Optical frame of a camera: CAM_FRONT -> cam_front_optical_frame."""
    return f"{camera.lower()}_optical_frame"


def image_topic(camera: str, compressed: bool = False) -> str:
    return f"/cameras/{camera}/image_raw" + ("/compressed" if compressed else "")


def camera_info_topic(camera: str) -> str:
    return f"/cameras/{camera}/camera_info"


def seconds_to_ns(t_s: float) -> int:
    """Float seconds -> integer nanoseconds (rounded to the microsecond, the resolution of the datasets)."""
    return round(float(t_s) * 1e6) * 1000


def time_msg(stamp_ns: int) -> Time:
    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=time_msg(stamp_ns), frame_id=frame_id)


def clock_msg(stamp_ns: int) -> Clock:
    return Clock(clock=time_msg(stamp_ns))


def camera_info_msg(K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str) -> CameraInfo:
    """CameraInfo of an undistorted pinhole image: K (3, 3), P = [K | 0], R = I, plumb_bob with d = 0."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise MsgBuildError(f"camera_info_msg: K has shape {K.shape}, expected (3, 3)")
    info = CameraInfo(header=header(stamp_ns, frame_id), width=int(width), height=int(height))
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.k = K.reshape(-1).tolist()
    info.r = np.eye(3).reshape(-1).tolist()
    info.p = np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist()
    return info


def transform_msg(T: np.ndarray, parent: str, child: str, stamp_ns: int) -> TransformStamped:
    """TransformStamped parent -> child of a 4x4 pose T (maps child-frame points into the parent frame)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise MsgBuildError(f"transform_msg {parent}->{child}: T has shape {T.shape}, expected (4, 4)")
    msg = TransformStamped(header=header(stamp_ns, parent), child_frame_id=child)
    tr = msg.transform.translation
    tr.x, tr.y, tr.z = (float(v) for v in T[:3, 3])
    rot = msg.transform.rotation
    rot.w, rot.x, rot.y, rot.z = (float(v) for v in matrix_to_quaternion(T[:3, :3]))
    return msg


def tf_message(transforms: Iterable[TransformStamped]) -> TFMessage:
    return TFMessage(transforms=list(transforms))


def camera_static_tf(cam2ego: dict[str, np.ndarray], stamp_ns: int) -> TFMessage:
    """/tf_static content: base_link -> <cam>_optical_frame for every camera (cam2ego 4x4 each)."""
    return tf_message(transform_msg(T, EGO_FRAME, optical_frame_id(cam), stamp_ns) for cam, T in cam2ego.items())


def ego_pose_tf(ego2global: np.ndarray, stamp_ns: int) -> TFMessage:
    """/tf content: odom -> base_link (the ego pose)."""
    return tf_message([transform_msg(ego2global, ODOM_FRAME, EGO_FRAME, stamp_ns)])
