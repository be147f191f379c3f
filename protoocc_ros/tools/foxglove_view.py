"""protoocc-foxglove: Foxglove tooling around occupancy_node's live view (server: ros/publishing/foxglove_bridge.py).

``build_layout`` gives the Foxglove layout of a rig (config/foxglove_layout.json); ``FoxgloveClient`` speaks
the Foxglove WebSocket protocol from the viewer's side (advertise, subscribe, protobuf-decoded message data);
``render_snapshot`` draws what a client received, for a view without the Foxglove app:

    protoocc-foxglove snapshot --port 8765 --out view.png
    protoocc-foxglove layout --out config/foxglove_layout.json
"""
from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from protoocc_ros.layouts import NUSCENES_CAMERAS
from protoocc_ros.ros.publishing.foxglove_bridge import SUBPROTOCOLS, image_topic

__all__ = ["FoxgloveClient", "build_layout", "layout_json", "message_class", "render_snapshot", "main"]


def build_layout(cameras: Sequence[str], prefix: str = "/occupancy_node", base_frame: str = "base_link") -> Any:
    """Foxglove layout: 3D panel (scene, the navigation grid drawn behind it in its RGBA colours, transforms;
    following ``base_frame``) beside the camera images."""
    import foxglove.layouts as fl

    three_d = fl.ThreeDeePanel(title="occupancy", config=fl.ThreeDeeConfig(
        follow_tf=base_frame, follow_mode="follow-pose",
        topics={f"{prefix}/scene": fl.BaseRendererSceneUpdateTopicSettings(visible=True),
                f"{prefix}/occupancy_2d": fl.BaseRendererGridTopicSettings(visible=True, color_mode="rgba-fields",
                                                                           draw_behind=True, frame_locked=True)}))
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
        from websockets.typing import Subprotocol

        self.ws = connect(url, subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS], proxy=None, max_size=None,
                          open_timeout=timeout_s)
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
    ax: Any = fig.add_axes((0.0, 0.0, 0.58, 0.95), projection="3d")  # mpl_toolkits Axes3D (untyped)
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
        sub = fig.add_axes((0.6 + 0.2 * (i % cols), 0.95 - (i // cols + 1) * 0.95 / rows, 0.19, 0.95 / rows - 0.02))
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
    parser = argparse.ArgumentParser(prog="protoocc-foxglove",
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
        Path(args.out).write_text(layout_json(args.cameras or list(NUSCENES_CAMERAS)))
        return 0
    return _snapshot(args)


if __name__ == "__main__":
    sys.exit(main())
