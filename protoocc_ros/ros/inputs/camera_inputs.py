"""occupancy_node's input side of one camera set: CameraInfo per camera by stamp, image decoding and
rectification, TF lookups.

``CameraInputs.on_camera_info`` checks each CameraInfo (rectification.py) and keeps it, accepted or refused,
in that camera's :class:`CameraInfoHistory` under its stamp. ``gather(params, synced)`` pairs every image with
the CameraInfo of its own stamp, or the newest one not newer than it (within ``camera_info_tolerance_s``), so a
camera that changes resolution or calibration is read with the right one whatever the arrival order; it checks
the size the image claims against that CameraInfo before decoding (image_conversion.py), decodes, rectifies
(maps computed once per calibration), and looks up cam2ego. A set that cannot be used raises
:class:`SetDropped` with the /diagnostics reason and the camera messages at fault (every image of the set is
checked, so each bad one is counted in the message family too). ``lookup`` waits up to ``INPUT_WAIT_S`` for a
transform that may still be on its way (the worker thread runs here, the executor keeps feeding the TF buffer).
"""
from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sensor_msgs.msg import CameraInfo

from protoocc_ros.ros.inputs.image_conversion import ImageConversionError, claimed_size, msg_to_rgb
from protoocc_ros.ros.inputs.rectification import (
    CameraInfoError,
    CameraModel,
    camera_model,
    rectify_image,
    rectify_maps,
)
from protoocc_ros.ros.inputs.sync import SyncedSet
from protoocc_ros.ros.inputs.tf_buffer import ConnectivityError, FrameLookupError, TfBuffer, TransformError
from protoocc_ros.ros.publishing.msg_builders import optical_frame_id, stamp_to_ns

if TYPE_CHECKING:  # the node's parameters, read by every call (an annotation only: nodes/ imports this module)
    from protoocc_ros.ros.nodes.occupancy_params import OccupancyNodeParams

__all__ = ["INPUT_WAIT_S", "SetDropped", "InfoEntry", "CameraInfoHistory", "GatheredSet", "CameraInputs"]

INPUT_WAIT_S = 0.25  # how long the worker waits for a transform / CameraInfo that may still be on its way
POLL_S = 0.005
HISTORY_LENGTH = 16  # distinct CameraInfos kept per camera (a repeated one is stored once)
BEFORE_ANY_NS = -(1 << 62)  # stamp of the CameraInfo kept across a backwards time jump: valid for any image


def _info_key(msg: CameraInfo, mode: str, max_pixels: int) -> tuple[Any, ...]:
    """Everything camera_model reads of a CameraInfo (and the settings it reads it with), to compare cheaply."""
    roi = msg.roi
    return (msg.width, msg.height, msg.distortion_model, bytes(memoryview(msg.d)) if msg.d is not None else b"",
            bytes(memoryview(msg.k)), bytes(memoryview(msg.r)), bytes(memoryview(msg.p)), msg.binning_x,
            msg.binning_y, roi.x_offset, roi.y_offset, roi.width, roi.height, msg.header.frame_id, mode, max_pixels)


class SetDropped(Exception):
    """A camera set that cannot be used; ``reason`` is the /diagnostics key, ``messages`` how many camera messages
    of the set were at fault, by reason (counted in the message family as well)."""

    def __init__(self, reason: str, detail: str, messages: dict[str, int] | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.messages = dict(messages or {})


@dataclass(frozen=True)
class InfoEntry:
    """One CameraInfo as received: its calibration, or why it was refused."""

    stamp_ns: int
    model: CameraModel | None
    refused: tuple[str, str] | None = None  # (reason, detail)

    def same(self, other: InfoEntry) -> bool:
        if self.model is not None and other.model is not None:
            return self.model.key() == other.model.key()
        return self.refused is not None and other.refused is not None and self.refused[0] == other.refused[0]


class CameraInfoHistory:
    """The CameraInfos of one camera by stamp (thread-safe): ``at(t)`` is the newest not newer than t (+ tolerance).
    Consecutive equal ones are stored once, under the oldest stamp; at most HISTORY_LENGTH are kept."""

    def __init__(self, length: int = HISTORY_LENGTH) -> None:
        self.length = length
        self._stamps: list[int] = []
        self._entries: list[InfoEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: InfoEntry) -> None:
        with self._lock:
            i = bisect.bisect_right(self._stamps, entry.stamp_ns)
            if i > 0 and self._entries[i - 1].same(entry):
                return  # the calibration in force already
            if i < len(self._entries) and self._entries[i].same(entry):  # arrived late: the same one starts earlier
                del self._stamps[i], self._entries[i]
            self._stamps.insert(i, entry.stamp_ns)
            self._entries.insert(i, entry)
            del self._stamps[:-self.length], self._entries[:-self.length]

    def at(self, stamp_ns: int, tolerance_ns: int = 0) -> InfoEntry | None:
        with self._lock:
            i = bisect.bisect_right(self._stamps, stamp_ns + tolerance_ns)
            return self._entries[i - 1] if i else None

    def time_jumped(self) -> None:
        """After a backwards time jump: keep only the newest CameraInfo, valid for any stamp until the next."""
        with self._lock:
            if self._entries:
                newest = self._entries[-1]
                self._stamps, self._entries = [BEFORE_ANY_NS], [InfoEntry(BEFORE_ANY_NS, newest.model, newest.refused)]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class GatheredSet:
    images: list[np.ndarray]   # RGB uint8 (H_i, W_i, 3) per camera, rectified
    Ks: list[np.ndarray]       # (3, 3) per camera, of those images
    cam2ego: list[np.ndarray]  # (4, 4) image frame -> base_frame per camera
    frames: list[str]          # optical frame id per camera
    rectify_s: float = 0.0     # time spent remapping (s)


class CameraInputs:
    """CameraInfo store + decoding + rectification + extrinsics lookup for the cameras of one configured node.

    ``on_message_drop(reason, detail)`` is called once for every CameraInfo refused."""

    def __init__(self, cameras: Sequence[str], tf: TfBuffer, on_message_drop: Callable[[str, str], None]) -> None:
        self.cameras = list(cameras)
        self.tf = tf
        self.on_message_drop = on_message_drop
        self.infos: dict[str, CameraInfoHistory] = {cam: CameraInfoHistory() for cam in self.cameras}
        self._maps: dict[str, tuple[CameraModel, tuple[np.ndarray, np.ndarray]]] = {}  # newest maps per camera
        self._last_model: dict[str, tuple[tuple[Any, ...], CameraModel]] = {}  # last accepted CameraInfo per camera

    def on_camera_info(self, p: OccupancyNodeParams, camera: str, topic: str, msg: CameraInfo) -> None:
        """Check and keep one CameraInfo under its stamp; a refused one is counted and kept as refused, so the
        images of its stamp are not read with an older calibration."""
        stamp = stamp_to_ns(msg.header.stamp)
        key = _info_key(msg, p.rectification, p.image_max_pixels)
        last = self._last_model.get(camera)
        if last is not None and last[0] == key:  # the same calibration as the last one: no need to check it again
            self.infos[camera].add(InfoEntry(stamp, last[1]))
            return
        try:
            model = camera_model(msg, p.rectification, p.image_max_pixels, where=topic)
            entry = InfoEntry(stamp, model)
            self._last_model[camera] = (key, model)
        except CameraInfoError as exc:
            entry = InfoEntry(stamp, None, (exc.reason, str(exc)))
            self.on_message_drop(exc.reason, f"{exc}; stamp {stamp} ns")
        self.infos[camera].add(entry)

    def time_jumped(self) -> None:
        for history in self.infos.values():
            history.time_jumped()

    def lookup(self, target: str, source: str, stamp_ns: int, what: str) -> np.ndarray:
        """4x4 target <- source at stamp_ns. The transforms around the stamp are waited for up to INPUT_WAIT_S
        (as tf2's MessageFilter does: the next odometry message usually arrives just after the images); only
        then is the buffer's extrapolation tolerance (``tf_tolerance_s``) used, so a set whose transform is on
        its way is interpolated, not extrapolated."""
        deadline = time.monotonic() + INPUT_WAIT_S
        while True:
            try:
                return self.tf.lookup_matrix(target, source, stamp_ns, tolerance_s=0.0)
            except TransformError:  # retried: after a time jump even "past" data can still arrive
                if time.monotonic() >= deadline:
                    break
            time.sleep(POLL_S)
        try:
            return self.tf.lookup_matrix(target, source, stamp_ns)
        except TransformError as exc:
            reason = "tf_missing" if isinstance(exc, (FrameLookupError, ConnectivityError)) else "tf_stale"
            raise SetDropped(reason, f"{what}: {exc}") from None

    def _paired(self, p: OccupancyNodeParams, camera: str, stamp: int, msg: Any) -> CameraModel:
        """The calibration of the image of ``camera`` at ``stamp``. The CameraInfo of its own stamp is used at
        once; an older one at once when it fits the size the image claims, else after waiting INPUT_WAIT_S for
        the image's own (e.g. the first image of a new resolution that beat its CameraInfo)."""
        tol = round(p.camera_info_tolerance_s * 1e9)
        history = self.infos[camera]
        claimed = claimed_size(msg)
        deadline = time.monotonic() + INPUT_WAIT_S
        while True:
            entry = history.at(stamp, tol)
            own = entry is not None and entry.stamp_ns >= stamp - tol
            fits = entry is not None and entry.model is not None and (
                claimed is None or claimed == (entry.model.width, entry.model.height))
            if own or fits or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        if entry is None:
            newest = f"; {len(history)} kept, all newer" if len(history) else ""
            raise SetDropped("no_camera_info", f"{camera}: no CameraInfo stamped at or before the image "
                                               f"({stamp} ns) on {p.camera_info_topic(camera)}{newest}")
        if entry.model is None:
            assert entry.refused is not None
            raise SetDropped(entry.refused[0], f"{camera}: the CameraInfo for the image at {stamp} ns was refused: "
                                               f"{entry.refused[1]}")
        return entry.model

    def _rectified(self, camera: str, model: CameraModel, rgb: np.ndarray) -> np.ndarray:
        if not model.remap:
            return rgb
        cached = self._maps.get(camera)
        if cached is None or cached[0] is not model:  # once per calibration (the newest per camera is kept)
            cached = self._maps[camera] = (model, rectify_maps(model))
        return rectify_image(model, rgb, cached[1])

    def _decoded(self, p: OccupancyNodeParams, synced: SyncedSet) -> list[tuple[CameraModel, np.ndarray]]:
        """Calibration and RGB image per camera. Every camera is checked, so SetDropped names the first problem
        and counts every bad image of the set (a refused CameraInfo was counted when it arrived)."""
        decoded: list[tuple[CameraModel, np.ndarray]] = []
        bad: Counter[str] = Counter()
        first: SetDropped | None = None
        for cam in self.cameras:
            msg: Any = synced.messages[cam]
            try:
                model = self._paired(p, cam, synced.stamps_ns[cam], msg)
                decoded.append((model, msg_to_rgb(msg, p.image_topic(cam), (model.width, model.height),
                                                  p.image_max_pixels, p.image_16bit_white)))
            except ImageConversionError as exc:
                bad[exc.reason] += 1
                first = first or SetDropped(exc.reason, f"{cam}: {exc}")
            except SetDropped as exc:
                first = first or exc
        if first is not None:
            more = f"; {sum(bad.values())} bad images in the set" if sum(bad.values()) > 1 else ""
            raise SetDropped(first.reason, f"{first}{more}", dict(bad))
        return decoded

    def gather(self, p: OccupancyNodeParams, synced: SyncedSet) -> GatheredSet:
        """Decoded, rectified RGB images, K, cam2ego and optical frame per camera (raises SetDropped)."""
        out = GatheredSet([], [], [], [])
        for cam, (model, rgb) in zip(self.cameras, self._decoded(p, synced)):
            msg: Any = synced.messages[cam]
            stamp = synced.stamps_ns[cam]
            t0 = time.monotonic()
            rgb = self._rectified(cam, model, rgb)
            out.rectify_s += time.monotonic() - t0
            frame = msg.header.frame_id or model.frame_id or optical_frame_id(cam)
            self.tf.need((frame,))  # kept in the TF tree whatever its bound (tf_max_frames)
            optical2ego = self.lookup(p.base_frame, frame, stamp, f"extrinsics of {cam}")
            out.cam2ego.append(model.cam2ego(optical2ego))
            out.images.append(rgb)
            out.Ks.append(model.K)
            out.frames.append(frame)
        return out
