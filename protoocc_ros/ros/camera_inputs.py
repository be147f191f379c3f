"""occupancy_node's input side of one camera set: CameraInfo per camera, image decoding, TF lookups.

``CameraInputs.on_camera_info`` keeps each camera's intrinsics; ``gather(params, synced)`` turns a
synchronised set into RGB images, K, cam2ego and optical frames, raising :class:`SetDropped` with the
/diagnostics reason when a set cannot be used. ``lookup`` waits up to ``INPUT_WAIT_S`` for a transform that
may still be on its way (the worker thread runs here, the executor keeps feeding the TF buffer).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo

from protoocc_ros.ros.image_conversion import ImageConversionError, msg_to_rgb
from protoocc_ros.ros.msg_builders import optical_frame_id
from protoocc_ros.ros.occupancy_params import OccupancyNodeParams
from protoocc_ros.ros.sync import SyncedSet
from protoocc_ros.ros.tf_buffer import ConnectivityError, FrameLookupError, TfBuffer, TransformError

__all__ = ["INPUT_WAIT_S", "SetDropped", "CameraIntrinsics", "GatheredSet", "CameraInputs"]

INPUT_WAIT_S = 0.25  # how long the worker waits for a transform / CameraInfo that may still be on its way
POLL_S = 0.005


class SetDropped(Exception):
    """A camera set that cannot be used; ``reason`` is the /diagnostics key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class CameraIntrinsics:
    K: np.ndarray  # (3, 3) float64
    width: int
    height: int
    frame_id: str


@dataclass
class GatheredSet:
    images: list[np.ndarray]   # RGB uint8 (H_i, W_i, 3) per camera
    Ks: list[np.ndarray]       # (3, 3) per camera
    cam2ego: list[np.ndarray]  # (4, 4) optical frame -> base_frame per camera
    frames: list[str]          # optical frame id per camera


class CameraInputs:
    """Intrinsics store + decoding + extrinsics lookup for the cameras of one configured node."""

    def __init__(self, cameras: Sequence[str], tf: TfBuffer, on_drop: Callable[[str, str], None]) -> None:
        self.cameras = list(cameras)
        self.tf = tf
        self.on_drop = on_drop
        self.intrinsics: dict[str, CameraIntrinsics] = {}

    def on_camera_info(self, camera: str, topic: str, msg: CameraInfo) -> None:
        """Keep a camera's intrinsics; a matrix that is not a pinhole K is dropped and counted."""
        K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
            self.on_drop("bad_camera_info", f"{topic}: K = {K.tolist()} is not a pinhole matrix "
                                            "(finite, positive focal lengths, K[2,2] = 1); ignored")
            return
        self.intrinsics[camera] = CameraIntrinsics(K, int(msg.width), int(msg.height), msg.header.frame_id)

    def lookup(self, target: str, source: str, stamp_ns: int, what: str) -> np.ndarray:
        """4x4 target <- source at stamp_ns, waiting up to INPUT_WAIT_S for data that may still be on its way."""
        deadline = time.monotonic() + INPUT_WAIT_S
        while True:
            try:
                return self.tf.lookup_matrix(target, source, stamp_ns)
            except TransformError as exc:  # retried: after a time jump even "past" data can still arrive
                if time.monotonic() >= deadline:
                    reason = "tf_missing" if isinstance(exc, (FrameLookupError, ConnectivityError)) else "tf_stale"
                    raise SetDropped(reason, f"{what}: {exc}") from None
            time.sleep(POLL_S)

    def _intrinsics(self, p: OccupancyNodeParams, camera: str) -> CameraIntrinsics:
        info = self.intrinsics.get(camera)
        deadline = time.monotonic() + INPUT_WAIT_S
        while info is None and time.monotonic() < deadline:  # e.g. the first image beat its CameraInfo
            time.sleep(POLL_S)
            info = self.intrinsics.get(camera)
        if info is None:
            raise SetDropped("no_camera_info", f"{camera}: no CameraInfo received on {p.camera_info_topic(camera)} yet")
        return info

    def gather(self, p: OccupancyNodeParams, synced: SyncedSet) -> GatheredSet:
        """Decoded RGB images, K, cam2ego and optical frame per camera (raises SetDropped)."""
        out = GatheredSet([], [], [], [])
        for cam in self.cameras:
            msg: Any = synced.messages[cam]
            info = self._intrinsics(p, cam)
            try:
                rgb = msg_to_rgb(msg, p.image_topic(cam))
            except ImageConversionError as exc:
                raise SetDropped("image_encoding", str(exc)) from None
            if info.width and info.height and (rgb.shape[1], rgb.shape[0]) != (info.width, info.height):
                raise SetDropped("image_size_mismatch", f"{cam}: image is {rgb.shape[1]}x{rgb.shape[0]} but its "
                                                        f"CameraInfo says {info.width}x{info.height}")
            frame = msg.header.frame_id or info.frame_id or optical_frame_id(cam)
            out.cam2ego.append(self.lookup(p.base_frame, frame, synced.stamps_ns[cam], f"extrinsics of {cam}"))
            out.images.append(rgb)
            out.Ks.append(info.K)
            out.frames.append(frame)
        return out
