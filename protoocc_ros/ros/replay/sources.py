"""Replay sources (docs/architecture.md "ROS interfaces" replay_node): datasets -> per-frame message bundles, and
open_source, which picks the source of a dataroot (rosbag2 recordings: bag_source.py; the shared types: types.py)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protoocc_ros.layouts import NUSCENES_CAMERAS
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io
from protoocc_ros.ros.replay.types import (
    TF_MSGTYPE,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    FrameBundle,
    OutMessage,
    ReplaySource,
    ReplaySourceError,
)


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
    from protoocc_ros.ros.inputs.image_conversion import rgb_to_compressed, rgb_to_image

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


# Stamps of datasets with relative times (SemanticKITTI times.txt starts at 0 per sequence) are moved to
# RELATIVE_EPOCH_NS + scene position * SCENE_SPACING_NS so they are non-zero (ROS time 0 = unset) and unique.
RELATIVE_EPOCH_NS = 1_000_000_000 * 1_000_000_000
SCENE_SPACING_NS = 100_000 * 1_000_000_000
_RELATIVE_LIMIT_S = 1e8


def ground_truth_labels(semantics: np.ndarray, mask_camera: np.ndarray) -> np.ndarray:
    """uint8 (X, Y, Z) labels to publish: the semantics, UNKNOWN_LABEL (255) outside mask_camera."""
    from protoocc_ros.ros.publishing.occupancy_msg import UNKNOWN_LABEL

    return np.where(np.asarray(mask_camera, dtype=bool), semantics, UNKNOWN_LABEL).astype(np.uint8)


class DatasetSource:
    """Occ3D-nuScenes or SemanticKITTI (via protoocc_ros.data loaders) -> bundles at the stored image size.

    Per frame: /tf_static (base_link -> optical frames, whenever cam2ego changed: nuScenes cameras are
    motion-compensated to the keyframe ego pose, so it changes every frame), /tf (odom -> base_link),
    CameraInfo + image per camera, then /ground_truth/occupancy (255 outside mask_camera).
    """

    def __init__(self, source_format: str, dataroot: str, *, split: str = "val", scenes: Sequence[str] = (),
                 cameras: Sequence[str] = (), image_format: str = "rgb8", ground_truth: bool = True,
                 version: str = "auto") -> None:
        from protoocc_ros.data import DatasetError
        from protoocc_ros.data.build import benchmark_classes, benchmark_layout, resolve_dataroot
        from protoocc_ros.data.occ3d_nuscenes import nuscenes_version
        from protoocc_ros.data.synthetic import kitti_root

        self.format = source_format
        self.dataset: Any
        kind = "kitti" if source_format == "semantic_kitti" else "occ3d"
        self.layout = benchmark_layout(kind)
        self.classes = benchmark_classes(kind)
        self.image_format = image_format
        self.ground_truth = ground_truth
        root = resolve_dataroot(dataroot, "kitti" if source_format == "semantic_kitti" else "occ3d")
        if source_format == "semantic_kitti" and (kitti_root(root) / "sequences").is_dir():
            root = kitti_root(root)   # a synthetic sample dataroot holds its KITTI variant inside
        try:
            if source_format == "occ3d_nuscenes":
                from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset

                self.version = nuscenes_version(root) if version == "auto" else version
                self.dataset = Occ3DNuScenesDataset(root, self.version, split=None if scenes else split,
                                                    scenes=list(scenes) or None,
                                                    cameras=tuple(cameras) or NUSCENES_CAMERAS, load_gt=ground_truth)
                self.cameras = list(self.dataset.cameras)
            else:
                from protoocc_ros.data.semantic_kitti import SemanticKittiDataset

                camera = cameras[0] if cameras else "image_2"
                if len(cameras) > 1:
                    raise ReplaySourceError(f"SemanticKITTI has one camera per replay; got cameras {list(cameras)}")
                self.version = ""
                self.dataset = SemanticKittiDataset(root, split=None if scenes else split,
                                                    sequences=list(scenes) or None, load_gt=ground_truth,
                                                    camera=camera)
                self.cameras = [camera]
        except DatasetError as exc:
            raise ReplaySourceError(str(exc)) from exc
        self.root = root

    def describe(self) -> dict[str, Any]:
        return {"source": self.format, "dataroot": str(self.root), "version": self.version,
                "scenes": self.dataset.scenes(), "frames": len(self.dataset), "cameras": self.cameras}

    def _stamp_ns(self, timestamp_s: float, scene_position: int) -> int:
        if timestamp_s < _RELATIVE_LIMIT_S:
            return RELATIVE_EPOCH_NS + scene_position * SCENE_SPACING_NS + mb.seconds_to_ns(timestamp_s)
        return mb.seconds_to_ns(timestamp_s)

    def dataset_frame(self, index: int, scene_position: int) -> DatasetFrame:
        """Frame `index` of the loader as a DatasetFrame (raw images at the stored size)."""
        from protoocc_ros.data import DatasetError

        try:
            item = self.dataset[index]
        except DatasetError as exc:
            raise ReplaySourceError(str(exc)) from exc
        stamp = self._stamp_ns(float(item["timestamp"]), scene_position)
        gt = None
        if self.ground_truth:
            from protoocc_ros.ros.publishing.occupancy_msg import grid_to_msg

            labels = ground_truth_labels(np.asarray(item["semantics"]), np.asarray(item["mask_camera"]))
            lay, table = self.layout, self.classes
            gt = grid_to_msg(labels, lay.point_cloud_range, lay.voxel_size, list(table.names), table.free_label,
                             mb.header(stamp, mb.EGO_FRAME))
        raw = np.asarray(item["raw_images"])   # (N, H, W, 3) uint8
        return DatasetFrame(stamp_ns=stamp, scene=str(item["scene"]), cameras=self.cameras,
                            images=[np.ascontiguousarray(im) for im in raw],
                            intrinsics=np.asarray(item["intrinsics"], dtype=np.float64),
                            cam2ego=np.asarray(item["cam2ego"], dtype=np.float64),
                            ego2global=np.asarray(item["ego2global"], dtype=np.float64), ground_truth=gt)

    def frames(self) -> Iterator[FrameBundle]:
        compressed = self.image_format if self.image_format in ("jpeg", "png") else ""
        encoding = self.image_format if not compressed else "rgb8"
        last_cam2ego: np.ndarray | None = None
        n = 0
        for position, scene in enumerate(self.dataset.scenes()):
            for index in self.dataset.scene_indices(scene):
                frame = self.dataset_frame(index, position)
                changed = last_cam2ego is None or not np.allclose(frame.cam2ego, last_cam2ego, rtol=0, atol=1e-9)
                last_cam2ego = frame.cam2ego
                yield dataset_bundle(frame, n, encoding=encoding, compressed=compressed, static_tf=changed)
                n += 1


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
                bag_topics: Sequence[str] = (), version: str = "auto", sync_slop_s: float = 0.05) -> ReplaySource:
    """The replay source of `dataroot` (see detect_format for `source_format` 'auto')."""
    fmt = detect_format(dataroot) if source_format == "auto" else source_format
    if fmt == "rosbag2":
        from protoocc_ros.ros.replay.bag_source import BagSource

        return BagSource(dataroot, bag_topics, sync_slop_s)
    if fmt in ("occ3d_nuscenes", "semantic_kitti"):
        return DatasetSource(fmt, dataroot, split=split, scenes=scenes, cameras=cameras,
                             image_format=image_format, ground_truth=ground_truth, version=version)
    raise ReplaySourceError(f"source_format {source_format!r} unknown; expected auto, occ3d_nuscenes, "
                            f"semantic_kitti or rosbag2")
