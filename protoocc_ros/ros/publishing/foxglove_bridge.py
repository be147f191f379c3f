"""Foxglove live view of occupancy_node (docs/operating.md "Foxglove"; a browser view without a ROS desktop).

A foxglove-sdk WebSocket server (``foxglove.start_server``; the SDK 0.30 speaks the subprotocol
``foxglove.sdk.v1``, the successor of ``foxglove.websocket.v1``) with protobuf channels:

  ``<prefix>/scene``            foxglove.SceneUpdate: one entity per class (id = class name) holding a cube
                                per occupied voxel, in the class colour; every update first deletes all
  ``<prefix>/images/<camera>``  foxglove.CompressedImage (JPEG) of the camera images of the set
  ``<prefix>/occupancy_2d``     foxglove.Grid: the navigation cells of ~/occupancy_2d (field ``occupancy`` int8:
                                100 / 0 / -1) with red / green / blue / alpha fields (occupied red, free green, unknown
                                grey) for the 3D panel's RGBA colour mode
  ``/tf``                       foxglove.FrameTransforms: odom -> base_link and base_link -> optical frames

all stamped with the camera-set stamp. A channel is encoded only while a client subscribes to it.
The tooling around it (layout file, a protocol client, a snapshot PNG) is protoocc_ros.tools.foxglove_view.

The SDK's server accepts a client only when it offers ``foxglove.sdk.v1``; a viewer that offers only
``foxglove.websocket.v1`` gets HTTP 400 and the SDK logs nothing but "handshake failed". The bridge relays the
SDK's warnings to the node's log and turns that line into one that names the cause (``HANDSHAKE_REFUSED``).
"""
from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from protoocc_ros.geometry import matrix_to_quaternion
from protoocc_ros.ros.publishing.occupancy_msg import occupied_voxels

__all__ = ["FoxgloveBridgeError", "FoxgloveBridge", "scene_update", "compressed_image", "frame_transforms",
           "navigation_grid", "SCENE_TOPIC", "GRID_2D_TOPIC", "TF_TOPIC", "SUBPROTOCOLS", "image_topic",
           "CELL_COLORS"]

SCENE_TOPIC = "/occupancy_node/scene"
GRID_2D_TOPIC = "/occupancy_node/occupancy_2d"
CELL_COLORS = {100: (220, 40, 40, 230), 0: (60, 180, 75, 90), -1: (128, 128, 128, 40)}  # RGBA per cell value
TF_TOPIC = "/tf"
# The SDK 0.30 server accepts foxglove.sdk.v1 (successor of foxglove.websocket.v1); a client offers both.
SUBPROTOCOLS = ["foxglove.websocket.v1", "foxglove.sdk.v1"]
SERVER_SUBPROTOCOL = "foxglove.sdk.v1"
HANDSHAKE_REFUSED = (
    "Foxglove client {client} refused at the WebSocket handshake (HTTP 400): this server (foxglove-sdk {version}) "
    "accepts only the subprotocol '" + SERVER_SUBPROTOCOL + "', and a viewer that offers only "
    "'foxglove.websocket.v1' cannot connect (Lichtblick 1.22.0 and older, Foxglove Studio 1.x, "
    "@foxglove/ws-protocol's FoxgloveClient on a WebSocket opened with its default subprotocol). Use a viewer that "
    "offers both (docs/operating.md 'Foxglove live view'). A plain HTTP request to the port is refused the same way.")


def image_topic(camera: str, prefix: str = "/occupancy_node") -> str:
    return f"{prefix}/images/{camera}"


class FoxgloveBridgeError(RuntimeError):
    """The Foxglove server cannot start (SDK missing, address in use); the message names host and port."""


def _timestamp(stamp_ns: int) -> Any:
    from foxglove.messages import Timestamp

    return Timestamp(sec=stamp_ns // 1_000_000_000, nsec=stamp_ns % 1_000_000_000)


def scene_update(labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float, colors: np.ndarray,
                 class_names: Sequence[str], free_label: int, frame_id: str, stamp_ns: int) -> Any:
    """foxglove.SceneUpdate of the occupied voxels of ``labels`` (X, Y, Z) uint8: delete all, then one entity per
    class present with a cube (edge ``voxel_size``, class colour from ``colors`` (C, 3) uint8) at each voxel centre."""
    from foxglove.messages import (
        Color,
        CubePrimitive,
        KeyValuePair,
        Pose,
        Quaternion,
        SceneEntity,
        SceneEntityDeletion,
        SceneEntityDeletionType,
        SceneUpdate,
        Vector3,
    )

    points = occupied_voxels(labels, point_cloud_range, voxel_size, free_label)  # (N,) x, y, z, label
    stamp = _timestamp(stamp_ns)
    size = Vector3(x=voxel_size, y=voxel_size, z=voxel_size)
    upright = Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)
    entities = []
    for label in np.unique(points["label"]).tolist():
        mine = points[points["label"] == label]
        r, g, b = (float(c) / 255.0 for c in colors[label])
        color = Color(r=r, g=g, b=b, a=1.0)
        cubes = [CubePrimitive(pose=Pose(position=Vector3(x=float(x), y=float(y), z=float(z)), orientation=upright),
                               size=size, color=color)
                 for x, y, z in zip(mine["x"].tolist(), mine["y"].tolist(), mine["z"].tolist())]
        entities.append(SceneEntity(timestamp=stamp, frame_id=frame_id, id=class_names[label], frame_locked=True,
                                    metadata=[KeyValuePair(key="label", value=str(label))], cubes=cubes))
    return SceneUpdate(deletions=[SceneEntityDeletion(timestamp=stamp, type=SceneEntityDeletionType.All)],
                       entities=entities)


class _Subscriptions:
    """foxglove ServerListener counting client subscriptions per topic."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self._lock = threading.Lock()

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.count[channel.topic] += 1

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._lock:
            self.count[channel.topic] = max(0, self.count[channel.topic] - 1)

    def wanted(self, topic: str) -> bool:
        with self._lock:
            return self.count[topic] > 0


class _SdkLogRelay(logging.Handler):
    """foxglove-sdk's Python log records (WARNING and above) -> ``log`` (the node's logger); a refused handshake
    becomes HANDSHAKE_REFUSED naming the client."""

    def __init__(self, log: Callable[[str], object], version: str) -> None:
        super().__init__(logging.WARNING)
        self.log, self.version = log, version

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "handshake failed" in text:
            found = re.search(r"client (\S+?):? handshake failed", text)
            self.log(HANDSHAKE_REFUSED.format(client=found.group(1) if found else "?", version=self.version))
        else:
            self.log(f"foxglove-sdk: {text}")


class FoxgloveBridge:
    """The live-view server of one node; ``publish`` is called once per published camera set (any thread)."""

    def __init__(self, host: str, port: int, cameras: Sequence[str], class_names: Sequence[str], colors: np.ndarray,
                 free_label: int, name: str = "occupancy_node", prefix: str = "/occupancy_node",
                 log: Callable[[str], object] | None = None) -> None:
        try:
            import foxglove
            from foxglove.channels import (
                CompressedImageChannel,
                FrameTransformsChannel,
                GridChannel,
                SceneUpdateChannel,
            )
        except ImportError as exc:
            raise FoxgloveBridgeError(f"foxglove-sdk is not installed ({exc}); pip install foxglove-sdk") from None
        self.class_names, self.colors, self.free_label = list(class_names), np.asarray(colors), int(free_label)
        self.scene_topic = f"{prefix}/scene"
        self.grid_2d_topic = f"{prefix}/occupancy_2d"
        self.image_topics = {cam: image_topic(cam, prefix) for cam in cameras}
        self.subscriptions = _Subscriptions()
        self._relay: _SdkLogRelay | None = None
        if log is not None:
            from importlib.metadata import version

            self._relay = _SdkLogRelay(log, version("foxglove-sdk"))
            logging.getLogger("foxglove").addHandler(self._relay)
        self._context = foxglove.Context()  # private: channels of this node only
        try:
            self.server = foxglove.start_server(name=name, host=host, port=port, context=self._context,
                                                server_listener=self.subscriptions)  # type: ignore[arg-type]
        except Exception as exc:
            self._detach_log()
            raise FoxgloveBridgeError(f"Foxglove server on {host}:{port} cannot start: {exc}") from None
        self.scene = SceneUpdateChannel(self.scene_topic, context=self._context)
        self.images = {cam: CompressedImageChannel(topic, context=self._context)
                       for cam, topic in self.image_topics.items()}
        self.tf = FrameTransformsChannel(TF_TOPIC, context=self._context)
        self.grid_2d = GridChannel(self.grid_2d_topic, context=self._context)

    @property
    def port(self) -> int:
        return int(self.server.port)

    def publish(self, stamp_ns: int, labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
                base_frame: str, images: dict[str, np.ndarray] | None = None,
                camera_frames: dict[str, str] | None = None, transforms: Sequence[tuple[str, str, np.ndarray]] = (),
                image_max_width: int = 0, cells: np.ndarray | None = None, ground_z_m: float = 0.0) -> bool:
        """Send the set to subscribed clients; returns whether anything was encoded.

        labels: (X, Y, Z) uint8 as shown (free where below the score threshold); images: camera -> RGB uint8
        (H, W, 3); camera_frames: camera -> optical frame id; transforms: (parent, child, 4x4 child -> parent);
        cells: the (X, Y) int8 navigation cells of ~/occupancy_2d (None: not published), at height ground_z_m.
        """
        sent = False
        if self.subscriptions.wanted(self.scene_topic):
            self.scene.log(scene_update(labels, point_cloud_range, voxel_size, self.colors, self.class_names,
                                        self.free_label, base_frame, stamp_ns), log_time=stamp_ns)
            sent = True
        for cam, rgb in (images or {}).items():
            if cam in self.images and self.subscriptions.wanted(self.image_topics[cam]):
                frame = (camera_frames or {}).get(cam, "")
                self.images[cam].log(compressed_image(rgb, frame, stamp_ns, image_max_width), log_time=stamp_ns)
                sent = True
        if cells is not None and self.subscriptions.wanted(self.grid_2d_topic):
            self.grid_2d.log(navigation_grid(cells, point_cloud_range, voxel_size, ground_z_m, base_frame, stamp_ns),
                             log_time=stamp_ns)
            sent = True
        if transforms and self.subscriptions.wanted(TF_TOPIC):
            self.tf.log(frame_transforms(transforms, stamp_ns), log_time=stamp_ns)
            sent = True
        return sent

    def close(self) -> None:
        self.server.stop()
        self._detach_log()

    def _detach_log(self) -> None:
        if self._relay is not None:
            logging.getLogger("foxglove").removeHandler(self._relay)
            self._relay = None


def compressed_image(rgb: np.ndarray, frame_id: str, stamp_ns: int, max_width: int = 0, quality: int = 85) -> Any:
    """foxglove.CompressedImage (JPEG) of an RGB uint8 (H, W, 3) image, shrunk to ``max_width`` (0 = as is)."""
    from foxglove.messages import CompressedImage

    h, w = rgb.shape[:2]
    if max_width and w > max_width:
        rgb = cv2.resize(rgb, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FoxgloveBridgeError(f"JPEG encoding of a {w}x{h} image for {frame_id!r} failed")
    return CompressedImage(timestamp=_timestamp(stamp_ns), frame_id=frame_id, data=jpeg.tobytes(), format="jpeg")


def frame_transforms(transforms: Sequence[tuple[str, str, np.ndarray]], stamp_ns: int) -> Any:
    """foxglove.FrameTransforms of (parent, child, 4x4 child -> parent) triples."""
    from foxglove.messages import FrameTransform, FrameTransforms, Quaternion, Vector3

    out = []
    for parent, child, T in transforms:
        w, x, y, z = matrix_to_quaternion(np.asarray(T)[:3, :3]).tolist()
        tx, ty, tz = np.asarray(T, dtype=np.float64)[:3, 3].tolist()
        out.append(FrameTransform(timestamp=_timestamp(stamp_ns), parent_frame_id=parent, child_frame_id=child,
                                  translation=Vector3(x=tx, y=ty, z=tz), rotation=Quaternion(x=x, y=y, z=z, w=w)))
    return FrameTransforms(transforms=out)


def navigation_grid(cells: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float, ground_z_m: float,
                    frame_id: str, stamp_ns: int) -> Any:
    """foxglove.Grid of (X, Y) int8 navigation cells: rows along y, columns along x (as nav_msgs/OccupancyGrid),
    corner at (x_min, y_min, ground_z_m); per cell the value (int8 ``occupancy``) and its RGBA (CELL_COLORS)."""
    from foxglove.messages import (
        Grid,
        PackedElementField,
        PackedElementFieldNumericType,
        Pose,
        Quaternion,
        Vector2,
        Vector3,
    )

    rows = np.ascontiguousarray(cells.T)  # (Y, X)
    packed = np.zeros((*rows.shape, 5), np.uint8)
    packed[..., 0] = rows.view(np.uint8)
    for value, rgba in CELL_COLORS.items():
        packed[rows == value, 1:] = rgba
    u8, i8 = PackedElementFieldNumericType.Uint8, PackedElementFieldNumericType.Int8
    fields = [PackedElementField(name="occupancy", offset=0, type=i8)] + [
        PackedElementField(name=n, offset=1 + i, type=u8) for i, n in enumerate(("red", "green", "blue", "alpha"))]
    pose = Pose(position=Vector3(x=float(point_cloud_range[0]), y=float(point_cloud_range[1]), z=float(ground_z_m)),
                orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
    return Grid(timestamp=_timestamp(stamp_ns), frame_id=frame_id, pose=pose, column_count=int(cells.shape[0]),
                cell_size=Vector2(x=float(voxel_size), y=float(voxel_size)), row_stride=5 * int(cells.shape[0]),
                cell_stride=5, fields=fields, data=packed.tobytes())
