"""Replay sources (design §5 replay_node): datasets and rosbag2 recordings -> per-frame message bundles."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from protoocc_ros.ros import bag_io, msg_builders as mb

CLOCK_TOPIC = "/clock"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_MSGTYPE = "tf2_msgs/msg/TFMessage"
# Types whose CDR starts with a std_msgs/Header: their header stamp delimits the frames of a bag.
FRAME_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo")
# Topics the replay node publishes itself and therefore never republishes from a bag.
OWN_TOPICS = (CLOCK_TOPIC, mb.DONE_TOPIC)


class ReplaySourceError(Exception):
    """A replay source cannot be opened or read; the message names the dataroot/bag and what was expected."""


@dataclass
class OutMessage:
    """One message to publish: an rclpy message, or CDR bytes of `msgtype` (from a bag)."""

    topic: str
    msgtype: str      # "pkg/msg/Name"
    payload: Any      # rclpy message or bytes


@dataclass
class FrameBundle:
    """Everything published for one image set, in publishing order (/clock first, then /tf, ...)."""

    index: int                 # position in the replay (0-based)
    stamp_ns: int              # image-set stamp (ns); /clock is set to it
    scene: str
    messages: list[OutMessage] = field(default_factory=list)

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]


class ReplaySource(Protocol):
    """Something the replay node iterates over; `describe()` is logged and put into the done summary."""

    def frames(self) -> Iterator[FrameBundle]: ...

    def describe(self) -> dict[str, Any]: ...


def header_stamp_ns(cdr: bytes) -> int:
    """Header stamp (ns) of a CDR message whose first field is std_msgs/Header (4-byte encapsulation, sec, nanosec)."""
    if len(cdr) < 12:
        raise ReplaySourceError(f"CDR payload of {len(cdr)} bytes is too short to hold a header stamp")
    little = cdr[1] == 0x01   # encapsulation id 0x0001 = CDR little endian, 0x0000 = big endian
    sec, nanosec = struct.unpack("<iI" if little else ">iI", cdr[4:12])
    return sec * 1_000_000_000 + nanosec


class BagSource:
    """rosbag2 recording (sqlite3 or mcap) -> bundles.

    A new bundle starts at the first Image/CompressedImage/CameraInfo message whose header stamp differs from
    the current bundle's stamp; every other message (tf, ground truth, ...) joins the bundle that is current
    when it appears in the bag. Messages keep their CDR bytes and are republished unchanged, except /clock and
    /replay/done, which the replay node publishes itself.
    """

    def __init__(self, path: str | Path, topics: Sequence[str] = ()) -> None:
        self.path = Path(path)
        try:
            self._types = bag_io.bag_topics(self.path)
        except bag_io.BagIOError as exc:
            raise ReplaySourceError(str(exc)) from exc
        missing = [t for t in topics if t not in self._types]
        if missing:
            raise ReplaySourceError(f"bag {self.path}: topics {missing} are not recorded (has {sorted(self._types)})")
        self._topics = [t for t in (topics or self._types) if t not in OWN_TOPICS]
        if not any(self._types[t] in FRAME_MSGTYPES for t in self._topics):
            raise ReplaySourceError(f"bag {self.path}: no Image/CompressedImage/CameraInfo topic to delimit frames "
                                    f"among {sorted(self._topics)}")

    def describe(self) -> dict[str, Any]:
        return {"source": "rosbag2", "path": str(self.path), "topics": sorted(self._topics)}

    def frames(self) -> Iterator[FrameBundle]:
        bundle: FrameBundle | None = None
        pending: list[OutMessage] = []      # messages before the first frame-delimiting one
        index = 0
        for record in bag_io.read_bag(self.path, self._topics):
            out = OutMessage(record.topic, record.msgtype, record.data)
            if record.msgtype in FRAME_MSGTYPES:
                stamp = header_stamp_ns(record.data)
                if bundle is None or stamp != bundle.stamp_ns:
                    if bundle is not None:
                        yield bundle
                        index += 1
                    bundle = FrameBundle(index, stamp, self.path.name, pending)
                    pending = []
            (bundle.messages if bundle is not None else pending).append(out)
        if bundle is not None:
            bundle.messages.extend(pending)
            yield bundle


@dataclass
class DatasetFrame:
    """What a dataset gives for one frame, at the stored image resolution."""

    stamp_ns: int
    scene: str
    cameras: list[str]
    images: list[np.ndarray]        # each (H, W, 3) uint8 RGB
    intrinsics: np.ndarray          # (N, 3, 3) K of the images as stored
    cam2ego: np.ndarray             # (N, 4, 4) optical frame -> base_link
    ego2global: np.ndarray          # (4, 4) base_link -> odom
    ground_truth: Any | None = None  # SemanticOccupancyGrid (255 outside mask_camera) or None


def dataset_bundle(frame: DatasetFrame, index: int, *, encoding: str = "rgb8", compressed: str = "",
                   static_tf: bool = True) -> FrameBundle:
    """Bundle of one dataset frame: /tf_static (if `static_tf`), /tf, per camera CameraInfo + image, then GT.

    `compressed` = "" publishes sensor_msgs/Image with `encoding`; "jpeg"/"png" publishes CompressedImage.
    """
    from protoocc_ros.ros.image_conversion import rgb_to_compressed, rgb_to_image

    t = frame.stamp_ns
    msgs: list[OutMessage] = []
    if static_tf:
        msgs.append(OutMessage(TF_STATIC_TOPIC, TF_MSGTYPE,
                               mb.camera_static_tf(dict(zip(frame.cameras, frame.cam2ego)), t)))
    msgs.append(OutMessage(TF_TOPIC, TF_MSGTYPE, mb.ego_pose_tf(frame.ego2global, t)))
    for cam, rgb, K in zip(frame.cameras, frame.images, frame.intrinsics):
        optical = mb.optical_frame_id(cam)
        msgs.append(OutMessage(mb.camera_info_topic(cam), "sensor_msgs/msg/CameraInfo",
                               mb.camera_info_msg(K, rgb.shape[1], rgb.shape[0], t, optical)))
        if compressed:
            img = rgb_to_compressed(rgb, compressed, header=mb.header(t, optical))
            msgs.append(OutMessage(mb.image_topic(cam, True), "sensor_msgs/msg/CompressedImage", img))
        else:
            img = rgb_to_image(rgb, encoding, header=mb.header(t, optical))
            msgs.append(OutMessage(mb.image_topic(cam), "sensor_msgs/msg/Image", img))
    if frame.ground_truth is not None:
        msgs.append(OutMessage(mb.GROUND_TRUTH_TOPIC, bag_io.GRID_MSGTYPE, frame.ground_truth))
    return FrameBundle(index, t, frame.scene, msgs)


def detect_format(dataroot: str) -> str:
    """Source format of a dataroot: 'synthetic' -> occ3d_nuscenes, a bag -> rosbag2, `sequences/` -> semantic_kitti."""
    if dataroot == "synthetic":
        return "occ3d_nuscenes"
    path = Path(dataroot)
    if path.suffix in (".mcap", ".db3") or (path / "metadata.yaml").is_file():
        return "rosbag2"
    if (path / "sequences").is_dir() or (path / "dataset" / "sequences").is_dir():
        return "semantic_kitti"
    if path.is_dir():
        return "occ3d_nuscenes"
    raise ReplaySourceError(f"dataroot {dataroot!r} does not exist (expected a dataset directory, a rosbag2 "
                            f"directory/.mcap/.db3, or 'synthetic')")


def open_source(dataroot: str, source_format: str = "auto", *, split: str = "val", scenes: Sequence[str] = (),
                cameras: Sequence[str] = (), image_format: str = "rgb8", ground_truth: bool = True,
                bag_topics: Sequence[str] = ()) -> ReplaySource:
    """The replay source of `dataroot` (see detect_format for `source_format` 'auto')."""
    fmt = detect_format(dataroot) if source_format == "auto" else source_format
    if fmt == "rosbag2":
        return BagSource(dataroot, bag_topics)
    if fmt in ("occ3d_nuscenes", "semantic_kitti"):
        return DatasetSource(fmt, dataroot, split=split, scenes=scenes, cameras=cameras,
                             image_format=image_format, ground_truth=ground_truth)
    raise ReplaySourceError(f"source_format {source_format!r} unknown; expected auto, occ3d_nuscenes, "
                            f"semantic_kitti or rosbag2")
