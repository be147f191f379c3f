"""Foxglove live view of occupancy_node (design §5 outputs, viewable in a browser without a ROS desktop).

A foxglove-sdk WebSocket server (``foxglove.start_server``; the SDK 0.30 speaks the subprotocol
``foxglove.sdk.v1``, the successor of ``foxglove.websocket.v1``) with protobuf channels:

  ``<prefix>/scene``            foxglove.SceneUpdate: one entity per class (id = class name) holding a cube
                                per occupied voxel, in the class colour; every update first deletes all
  ``<prefix>/images/<camera>``  foxglove.CompressedImage (JPEG) of the camera images of the set
  ``/tf``                       foxglove.FrameTransforms: odom -> base_link and base_link -> optical frames

all stamped with the camera-set stamp. A channel is encoded only while a client subscribes to it.
``build_layout`` gives the matching Foxglove layout (config/foxglove_layout.json). ``FoxgloveClient``
speaks the protocol from the other side (advertise, subscribe, protobuf-decoded message data) and
``render_snapshot`` draws what a client received, for a view without the Foxglove app:

    python -m protoocc_ros.ros.foxglove_bridge snapshot --port 8765 --out view.png
    python -m protoocc_ros.ros.foxglove_bridge layout --out config/foxglove_layout.json
"""
from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from protoocc_ros.geometry import matrix_to_quaternion
from protoocc_ros.ros.occupancy_msg import occupied_voxels

__all__ = ["FoxgloveBridgeError", "FoxgloveBridge", "FoxgloveClient", "scene_update", "build_layout", "layout_json",
           "message_class", "render_snapshot", "SCENE_TOPIC", "TF_TOPIC", "SUBPROTOCOLS", "image_topic", "main"]

SCENE_TOPIC = "/occupancy_node/scene"
TF_TOPIC = "/tf"
# The SDK 0.30 server accepts foxglove.sdk.v1 (successor of foxglove.websocket.v1); a client offers both.
SUBPROTOCOLS = ["foxglove.websocket.v1", "foxglove.sdk.v1"]


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
    from foxglove.messages import (Color, CubePrimitive, KeyValuePair, Pose, Quaternion, SceneEntity,
                                   SceneEntityDeletion, SceneEntityDeletionType, SceneUpdate, Vector3)

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


class FoxgloveBridge:
    """The live-view server of one node; ``publish`` is called once per published camera set (any thread)."""

    def __init__(self, host: str, port: int, cameras: Sequence[str], class_names: Sequence[str], colors: np.ndarray,
                 free_label: int, name: str = "occupancy_node", prefix: str = "/occupancy_node") -> None:
        try:
            import foxglove
            from foxglove.channels import CompressedImageChannel, FrameTransformsChannel, SceneUpdateChannel
        except ImportError as exc:
            raise FoxgloveBridgeError(f"foxglove-sdk is not installed ({exc}); pip install foxglove-sdk") from None
        self.class_names, self.colors, self.free_label = list(class_names), np.asarray(colors), int(free_label)
        self.scene_topic = f"{prefix}/scene"
        self.image_topics = {cam: image_topic(cam, prefix) for cam in cameras}
        self.subscriptions = _Subscriptions()
        self._context = foxglove.Context()  # private: channels of this node only
        try:
            self.server = foxglove.start_server(name=name, host=host, port=port, context=self._context,
                                                server_listener=self.subscriptions)
        except Exception as exc:  # noqa: BLE001 - the SDK raises its own error types
            raise FoxgloveBridgeError(f"Foxglove server on {host}:{port} cannot start: {exc}") from None
        self.scene = SceneUpdateChannel(self.scene_topic, context=self._context)
        self.images = {cam: CompressedImageChannel(topic, context=self._context)
                       for cam, topic in self.image_topics.items()}
        self.tf = FrameTransformsChannel(TF_TOPIC, context=self._context)

    @property
    def port(self) -> int:
        return int(self.server.port)

    def publish(self, stamp_ns: int, labels: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float,
                base_frame: str, images: dict[str, np.ndarray] | None = None, camera_frames: dict[str, str] | None = None,
                transforms: Sequence[tuple[str, str, np.ndarray]] = (), image_max_width: int = 0) -> bool:
        """Send the set to subscribed clients; returns whether anything was encoded.

        labels: (X, Y, Z) uint8 as shown (free where below the score threshold); images: camera -> RGB uint8
        (H, W, 3); camera_frames: camera -> optical frame id; transforms: (parent, child, 4x4 child -> parent).
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
        if transforms and self.subscriptions.wanted(TF_TOPIC):
            self.tf.log(frame_transforms(transforms, stamp_ns), log_time=stamp_ns)
            sent = True
        return sent

    def close(self) -> None:
        self.server.stop()


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


def build_layout(cameras: Sequence[str], prefix: str = "/occupancy_node", base_frame: str = "base_link") -> Any:
    """Foxglove layout: 3D panel (scene + transforms, following ``base_frame``) beside the camera images."""
    import foxglove.layouts as fl

    three_d = fl.ThreeDeePanel(title="occupancy", config=fl.ThreeDeeConfig(
        follow_tf=base_frame, follow_mode="follow-pose",
        topics={f"{prefix}/scene": fl.BaseRendererSceneUpdateTopicSettings(visible=True)}))
    panels = [fl.ImagePanel(title=cam, config=fl.ImageConfig(image_mode=fl.ImageModeConfig(
        image_topic=image_topic(cam, prefix)))) for cam in cameras]
    rows = [fl.SplitItem(content=fl.SplitContainer(direction="row", items=[fl.SplitItem(content=p)
                                                                          for p in panels[i:i + 2]]))
            for i in range(0, len(panels), 2)]
    return fl.Layout(content=fl.SplitContainer(direction="row", items=[
        fl.SplitItem(proportion=3, content=three_d),
        fl.SplitItem(proportion=2, content=fl.SplitContainer(direction="column", items=rows)),
    ]))


def layout_json(cameras: Sequence[str], prefix: str = "/occupancy_node", base_frame: str = "base_link") -> str:
    """build_layout as indented JSON (the text of config/foxglove_layout.json)."""
    return json.dumps(json.loads(build_layout(cameras, prefix, base_frame).to_json()), indent=2) + "\n"


# -- the client side ------------------------------------------------------------------------------------
def message_class(schema_name: str, file_descriptor_set: bytes) -> Any:
    """Protobuf message class of ``schema_name`` from a serialised FileDescriptorSet (what advertise carries)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(file_descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(schema_name))


class FoxgloveClient:
    """Minimal client of the Foxglove WebSocket protocol: serverInfo, advertise, subscribe, message data
    (opcode 1: uint32 subscription id, uint64 log time, payload) decoded with the advertised protobuf schemas."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, subprotocols=SUBPROTOCOLS, proxy=None, max_size=None, open_timeout=timeout_s)
        self.channels: dict[str, dict[str, Any]] = {}  # topic -> advertised channel
        self._by_subscription: dict[int, dict[str, Any]] = {}
        self._classes: dict[str, Any] = {}

    def read_advertised(self, topics: set[str], timeout_s: float = 10.0) -> None:
        """Read control messages until every topic in ``topics`` is advertised."""
        while not topics <= set(self.channels):
            message = json.loads(self.ws.recv(timeout=timeout_s))
            if message["op"] == "advertise":
                self.channels.update({c["topic"]: c for c in message["channels"]})

    def subscribe(self, topics: Sequence[str]) -> None:
        start = len(self._by_subscription)
        subs = {start + i: self.channels[t] for i, t in enumerate(topics)}
        self._by_subscription.update(subs)
        self.ws.send(json.dumps({"op": "subscribe",
                                 "subscriptions": [{"id": i, "channelId": c["id"]} for i, c in subs.items()]}))

    def receive(self, until: Callable[[dict[str, dict[int, Any]]], bool],
                timeout_s: float = 10.0) -> dict[str, dict[int, Any]]:
        """Decoded messages per topic and log time (ns) until ``until(received)`` holds."""
        received: dict[str, dict[int, Any]] = {}
        while not until(received):
            frame = self.ws.recv(timeout=timeout_s)
            if isinstance(frame, str):
                continue  # status / advertise updates
            opcode, sub_id, log_time = struct.unpack_from("<BIQ", frame)
            if opcode != 1:
                continue  # time, service responses, ...
            channel = self._by_subscription[sub_id]
            cls = self._classes.setdefault(channel["topic"], message_class(
                channel["schemaName"], base64.b64decode(channel["schema"])))
            received.setdefault(channel["topic"], {})[log_time] = cls.FromString(frame[13:])
        return received

    def close(self) -> None:
        self.ws.close()


def render_snapshot(scene: Any, images: dict[str, Any], path: Path, title: str = "") -> None:
    """PNG of what a Foxglove client received: the SceneUpdate cubes in 3D (matplotlib) beside the camera images.

    scene: a decoded foxglove.SceneUpdate; images: camera -> decoded foxglove.CompressedImage.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 8), dpi=100)
    ax = fig.add_axes([0.0, 0.0, 0.58, 0.95], projection="3d")
    for entity in scene.entities:
        xyz = np.array([(c.pose.position.x, c.pose.position.y, c.pose.position.z) for c in entity.cubes])  # (N, 3)
        if not len(xyz):
            continue
        c = entity.cubes[0].color
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], marker="s", s=6, color=(c.r, c.g, c.b), depthshade=False,
                   label=f"{entity.id} ({len(xyz)})")
    ax.set(xlabel="x (m, forward)", ylabel="y (m, left)", zlabel="z (m)")
    ax.set_box_aspect((1.0, 1.0, 0.25))
    ax.view_init(elev=35, azim=-150)
    ax.legend(loc="upper left", fontsize=7, markerscale=2, ncol=2, title="SceneUpdate entities (cubes)")
    names = list(images)
    cols = 2
    rows = max(1, -(-len(names) // cols))
    for i, cam in enumerate(names):
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(images[cam].data, np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
        sub = fig.add_axes([0.6 + 0.2 * (i % cols), 0.95 - (i // cols + 1) * 0.95 / rows, 0.19, 0.95 / rows - 0.02])
        sub.imshow(rgb)
        sub.set_title(cam, fontsize=8)
        sub.axis("off")
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _snapshot(args: argparse.Namespace) -> int:
    client = FoxgloveClient(f"ws://{args.host}:{args.port}")
    scene = f"{args.prefix}/scene"
    client.read_advertised({scene})
    images = sorted((t for t in client.channels if t.startswith(f"{args.prefix}/images/")),
                    key=lambda t: client.channels[t]["id"])  # the node's camera order
    client.subscribe([scene, *images])
    seen: list[int] = []

    def enough(received: dict[str, dict[int, Any]]) -> bool:  # the n-th scene and the images of its set
        seen[:] = sorted(received.get(scene, {}))
        return len(seen) >= args.nth and all(seen[args.nth - 1] in received.get(t, {}) for t in images)

    received = client.receive(enough, timeout_s=args.timeout)
    client.close()
    stamp = seen[args.nth - 1]
    update = received[scene][stamp]
    n_cubes = sum(len(e.cubes) for e in update.entities)
    render_snapshot(update, {t.rsplit("/", 1)[-1]: received[t][stamp] for t in images}, Path(args.out),
                    f"{args.title} — {scene} at {stamp / 1e9:.3f} s: {n_cubes} cubes in {len(update.entities)} "
                    f"class entities; images from {args.prefix}/images/*")
    print(f"{args.out}: scene at {stamp} ns, {n_cubes} cubes, {len(images)} images")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protoocc_ros.ros.foxglove_bridge",
                                     description="Foxglove live view helpers: layout file, snapshot PNG of a stream")
    sub = parser.add_subparsers(dest="command", required=True)
    layout = sub.add_parser("layout", help="write the Foxglove layout for a camera rig")
    layout.add_argument("--cameras", nargs="+", default=None, help="camera names (default: the 6 nuScenes cameras)")
    layout.add_argument("--out", required=True)
    snap = sub.add_parser("snapshot", help="connect to a running node's server, render one scene + images")
    snap.add_argument("--host", default="127.0.0.1")
    snap.add_argument("--port", type=int, default=8765)
    snap.add_argument("--prefix", default="/occupancy_node", help="the node's name (channel prefix)")
    snap.add_argument("--nth", type=int, default=1, help="render the n-th scene received")
    snap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each message")
    snap.add_argument("--title", default="Foxglove stream of occupancy_node")
    snap.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "layout":
        from protoocc_ros.config import NUSCENES_CAMERAS

        Path(args.out).write_text(layout_json(args.cameras or NUSCENES_CAMERAS))
        return 0
    return _snapshot(args)


if __name__ == "__main__":
    sys.exit(main())
