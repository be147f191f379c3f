"""rosbag2 recordings made the way a real multi-camera recorder makes them, written with rosbags' own Writer
(not the project's bag_io): six cameras each stamped on its own (0-20 ms after the set, jittered, in a
shuffled order), log time = arrival time (header stamp + 30-90 ms, so logs interleave across cameras and
sets), CameraInfo beside each image, /tf at 20 Hz, /tf_static once, ground truth per set; raw or compressed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from protoocc_ros.geometry import make_transform, matrix_to_quaternion, optical_rotation

REPO = Path(__file__).resolve().parents[2]
CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
YAWS = [0.0, -55.0, 55.0, 180.0, 110.0, -110.0]
T0 = 1_533_151_603_512_404_000  # nuScenes magnitude (~1.53e9 s)
PERIOD = 500_000_000            # 2 Hz camera sets
H, W = 48, 88
K = np.array([[40.0, 0.0, 43.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]])
GRID = "protoocc_ros/msg/SemanticOccupancyGrid"


def cam2ego(i: int) -> np.ndarray:
    return make_transform(optical_rotation(math.radians(YAWS[i])), [1.0, 0.0, 1.6])


def ego_pose(t_ns: int) -> np.ndarray:
    return make_transform(None, [4.0 * (t_ns - T0) / 1e9, 0.0, 0.0])


def image_of(k: int, i: int) -> np.ndarray:
    return np.random.default_rng([k, i]).integers(0, 256, (H, W, 3), dtype=np.uint8)


@dataclass
class Recording:
    path: Path
    sets: int
    image_stamps: dict[int, dict[str, int]] = field(default_factory=dict)  # set -> camera -> header stamp
    missing: set[tuple[int, str]] = field(default_factory=set)            # (set, camera) not recorded


def typestore():
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg((REPO / "msg" / "SemanticOccupancyGrid.msg").read_text(), GRID))
    return store


def write_recording(path: Path, storage: str = "mcap", sets: int = 20, compressed: bool = False, seed: int = 0,
                    missing: set[tuple[int, str]] = frozenset(), static_tf_last: bool = False) -> Recording:
    """A recording of ``sets`` camera sets; ``missing`` (set, camera) images are not recorded."""
    store = typestore()
    T = store.types
    rng = np.random.default_rng(seed)
    rec = Recording(path, sets, missing=set(missing))

    def stamp(ns: int):
        return T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def header(ns: int, frame: str):
        return T["std_msgs/msg/Header"](stamp=stamp(ns), frame_id=frame)

    def transform(ns: int, parent: str, child: str, m: np.ndarray):
        w, x, y, z = matrix_to_quaternion(m[:3, :3])
        return T["geometry_msgs/msg/TransformStamped"](
            header=header(ns, parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=m[0, 3], y=m[1, 3], z=m[2, 3]),
                rotation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)))

    queue: list[tuple[int, str, str, object]] = []  # (log time, topic, type, message)
    static = T["tf2_msgs/msg/TFMessage"](transforms=[transform(T0, "base_link", f"{c.lower()}_optical_frame",
                                                               cam2ego(i)) for i, c in enumerate(CAMERAS)])
    queue.append((T0 + (sets + 5) * PERIOD if static_tf_last else T0 - 1_000_000, "/tf_static",
                   "tf2_msgs/msg/TFMessage", static))
    for j in range((sets + 1) * 10):  # 20 Hz odometry from the first set to after the last one
        t = T0 + j * PERIOD // 10
        queue.append((t + int(rng.integers(1_000_000, 5_000_000)), "/tf", "tf2_msgs/msg/TFMessage",
                      T["tf2_msgs/msg/TFMessage"](transforms=[transform(t, "odom", "base_link", ego_pose(t))])))
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    for k in range(sets):
        t_set = T0 + k * PERIOD
        rec.image_stamps[k] = {}
        for i in rng.permutation(len(CAMERAS)):
            cam = CAMERAS[i]
            frame = f"{cam.lower()}_optical_frame"
            t = t_set + int(rng.integers(0, 20_000_000))
            arrival = t + int(rng.integers(30_000_000, 90_000_000))
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header(t, frame), height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
                k=K.reshape(-1), r=np.eye(3).reshape(-1), p=np.hstack([K, np.zeros((3, 1))]).reshape(-1),
                binning_x=0, binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](
                    x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            queue.append((arrival - 200_000, f"/cameras/{cam}/camera_info", "sensor_msgs/msg/CameraInfo", info))
            if (k, cam) in rec.missing:
                continue
            rgb = image_of(k, int(i))
            if compressed:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                msg = T["sensor_msgs/msg/CompressedImage"](header=header(t, frame), format="jpeg",
                                                           data=np.frombuffer(buf.tobytes(), np.uint8))
                topic = f"/cameras/{cam}/image_raw/compressed"
            else:
                msg = T["sensor_msgs/msg/Image"](header=header(t, frame), height=H, width=W, encoding="rgb8",
                                                 is_bigendian=0, step=W * 3, data=rgb.reshape(-1))
                topic = f"/cameras/{cam}/image_raw"
            queue.append((arrival, topic, image_type, msg))
            rec.image_stamps[k][cam] = t
        labels = np.random.default_rng(k).integers(0, 18, 40 * 40 * 16, dtype=np.uint8)
        gt = T[GRID](header=header(t_set, "base_link"), origin=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=-8.0, y=-8.0, z=-1.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
            voxel_size=0.4, size_x=40, size_y=40, size_z=16, class_names=[], free_label=17, labels=labels,
            confidence=np.zeros(0, np.uint8))
        queue.append((t_set + 100_000_000, "/ground_truth/occupancy", GRID, gt))
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for log, topic, msgtype, msg in sorted(queue, key=lambda q: q[0]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], log, store.serialize_cdr(msg, msgtype))
    return rec
