"""Foxglove live view: SceneUpdate cubes of a grid, the layout file, and a running occupancy_node's WebSocket
server read by a client speaking the Foxglove protocol (advertise, subscribe, binary message data decoded
with the protobuf schemas the server advertises). The server binds 127.0.0.1 on a free port.

The subprotocol offers of real viewers: @foxglove/ws-protocol's FoxgloveClient itself (the npm package, installed
offline from test/ros/foxglove_js/vendor/ into a temporary folder; needs Node >= 20) offering both subprotocols as
Lichtblick and the Foxglove app do, and offering only foxglove.websocket.v1 as Lichtblick <= 1.22.0 and the client's
default do (refused, and the node's log says why); the same offers from Python websockets."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
from ros_helpers import REPO
from test_occupancy_node import CAMERAS, MAIN, Rig, direct_prediction, ego_pose, median_confidence, running_node

from protoocc_ros import classes
from protoocc_ros.geometry import index_to_world
from protoocc_ros.layouts import NUSCENES_CAMERAS
from protoocc_ros.ros.publishing.foxglove_bridge import SUBPROTOCOLS, FoxgloveBridge, FoxgloveBridgeError, scene_update
from protoocc_ros.tools.foxglove_view import FoxgloveClient, layout_json, message_class, render_snapshot
from protoocc_ros.tools.foxglove_view import main as bridge_main
from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid

SCENE, TF, GRID_2D = f"/{MAIN}/scene", "/tf", f"/{MAIN}/occupancy_2d"
IMAGES = {cam: f"/{MAIN}/images/{cam}" for cam in CAMERAS}
FREE = 17


def cube_table(update: Any) -> dict[tuple[float, float, float], tuple[str, tuple[float, ...], tuple[float, ...]]]:
    """(x, y, z) rounded to mm -> (entity id, size xyz, colour rgba) of every cube in a decoded SceneUpdate."""
    table = {}
    for entity in update.entities:
        for cube in entity.cubes:
            p = cube.pose.position
            table[(round(p.x, 3), round(p.y, 3), round(p.z, 3))] = (
                entity.id, (cube.size.x, cube.size.y, cube.size.z),
                (cube.color.r, cube.color.g, cube.color.b, cube.color.a))
    return table


def expected_cubes(labels: np.ndarray, pcr: list[float], voxel: float) -> dict[tuple[float, float, float], int]:
    index = np.argwhere(labels != FREE)
    centres = index_to_world(index, pcr, voxel)
    return {tuple(np.round(c, 3).tolist()): int(labels[tuple(i)]) for c, i in zip(centres, index)}


def test_scene_update_has_one_cube_per_occupied_voxel_in_its_class_colour() -> None:
    labels = np.full((6, 5, 4), FREE, np.uint8)
    labels[0, 0, 0], labels[5, 4, 3], labels[2, 3, 1] = 4, 4, 11
    pcr, voxel = [-1.2, -1.0, -0.4, 1.2, 1.0, 1.2], 0.4
    update = scene_update(labels, pcr, voxel, classes.OCC3D_COLORS, classes.class_names_for(18), FREE, "base_link",
                          1_500_000_000)
    schema = update.get_schema()
    decoded = message_class(schema.name, schema.data).FromString(update.encode())
    assert [d.type for d in decoded.deletions] == [1]  # ALL: classes absent now disappear
    table = cube_table(decoded)
    expected = expected_cubes(labels, pcr, voxel)
    assert set(table) == set(expected) and (round(-1.2 + 0.2, 3), -0.8, -0.2) in table
    names = classes.class_names_for(18)
    for centre, label in expected.items():
        entity, size, rgba = table[centre]
        assert entity == names[label] and size == pytest.approx((voxel,) * 3)
        assert rgba == pytest.approx(tuple(classes.OCC3D_COLORS[label] / 255.0) + (1.0,), abs=1e-6)
    assert {e.frame_id for e in decoded.entities} == {"base_link"}
    assert decoded.entities[0].timestamp.seconds == 1 and decoded.entities[0].timestamp.nanos == 500_000_000


def test_second_server_on_a_used_port_fails_naming_host_and_port() -> None:
    first = FoxgloveBridge("127.0.0.1", 0, CAMERAS, classes.class_names_for(18), classes.OCC3D_COLORS, FREE)
    try:
        with pytest.raises(FoxgloveBridgeError, match=rf"127.0.0.1:{first.port} cannot start"):
            FoxgloveBridge("127.0.0.1", first.port, CAMERAS, classes.class_names_for(18), classes.OCC3D_COLORS, FREE)
    finally:
        first.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, FoxgloveClient, Any]]:
    port = free_port()
    with running_node(tmp_path_factory.mktemp("foxglove"), **{
            "foxglove.enabled": True, "foxglove.host": "127.0.0.1", "foxglove.port": port,
            "foxglove.image_max_width": 64}) as running:
        client = FoxgloveClient(f"ws://127.0.0.1:{port}")
        yield running.rig, client, running.model, running.node, port
        client.close()
        assert f"Foxglove live view on ws://127.0.0.1:{port}" in running.node.output()


def test_server_advertises_scene_images_and_transforms(live) -> None:
    _, client, *_ = live
    topics = {SCENE, TF, GRID_2D, *IMAGES.values()}
    client.read_advertised(topics)
    assert client.ws.subprotocol in SUBPROTOCOLS
    schemas = {t: (c["encoding"], c["schemaName"], c["schemaEncoding"]) for t, c in client.channels.items()}
    assert schemas[SCENE] == ("protobuf", "foxglove.SceneUpdate", "protobuf")
    assert schemas[TF] == ("protobuf", "foxglove.FrameTransforms", "protobuf")
    assert schemas[GRID_2D] == ("protobuf", "foxglove.Grid", "protobuf")
    assert {schemas[t][1] for t in IMAGES.values()} == {"foxglove.CompressedImage"}


def test_subscribed_client_gets_cubes_of_the_published_grid_images_and_transforms(live, tmp_path: Path) -> None:
    rig, client, *_ = live
    client.read_advertised({SCENE, TF, *IMAGES.values()})
    client.subscribe([SCENE, TF, *IMAGES.values()])
    rig.spin_until(lambda: False, 0.5)  # let the server register the subscriptions
    stamp = rig.next_stamp(5.0)
    rig.publish_set(stamp)
    grid = msg_to_grid(rig.wait_grid(stamp))
    got = client.receive(lambda r: all(stamp in r.get(t, {}) for t in (SCENE, TF, *IMAGES.values())))
    table = cube_table(got[SCENE][stamp])
    expected = expected_cubes(grid.labels, grid.point_cloud_range, grid.voxel_size)
    assert len(expected) > 100 and set(table) == set(expected)
    names = classes.class_names_for(18)
    assert all(table[c][0] == names[label] for c, label in expected.items())
    transforms = {(t.parent_frame_id, t.child_frame_id): t for t in got[TF][stamp].transforms}
    assert set(transforms) == {("odom", "base_link"), ("base_link", "cam_front_optical_frame"),
                               ("base_link", "cam_back_optical_frame")}
    ego = transforms[("odom", "base_link")].translation
    np.testing.assert_allclose([ego.x, ego.y, ego.z], ego_pose(stamp)[:3, 3], atol=1e-6)
    for cam, topic in IMAGES.items():
        image = got[topic][stamp]
        assert image.format == "jpeg" and image.frame_id == f"{cam.lower()}_optical_frame"
        decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (round(48 * 64 / 88), 64, 3)  # shrunk to foxglove.image_max_width
    png = tmp_path / "snapshot.png"
    render_snapshot(got[SCENE][stamp], {cam: got[t][stamp] for cam, t in IMAGES.items()}, png, "test")
    assert cv2.imread(str(png)).shape == (800, 1600, 3)


def test_score_threshold_change_reaches_the_scene(live) -> None:
    rig, client, model, *_ = live
    probe = rig.next_stamp(5.0)
    rig.publish_set(probe)
    rig.wait_grid(probe)
    threshold = median_confidence(direct_prediction(rig, model, [probe]))
    assert rig.set_param("score_threshold", threshold).successful
    stamp = rig.next_stamp(5.0)  # after a gap: the memory starts fresh, as in direct_prediction
    rig.publish_set(stamp)
    grid = msg_to_grid(rig.wait_grid(stamp))
    got = client.receive(lambda r: stamp in r.get(SCENE, {}))
    [(labels, conf)] = direct_prediction(rig, model, [stamp])
    shown = np.where(conf >= threshold, labels, FREE)
    assert 0 < (shown != FREE).sum() < (labels != FREE).sum()
    assert set(cube_table(got[SCENE][stamp])) == set(expected_cubes(shown, grid.point_cloud_range, grid.voxel_size))


# -- the offers real viewers make ----------------------------------------------------------------------------
JS_DIR = Path(__file__).resolve().parent / "foxglove_js"
BOTH = "foxglove.websocket.v1,foxglove.sdk.v1"  # Lichtblick (PR 819), FoxgloveClient.SUPPORTED_SUBPROTOCOL first
LEGACY = "foxglove.websocket.v1"  # Lichtblick <= 1.22.0; FoxgloveClient on `new WebSocket(url, [SUPPORTED_SUBPROTOCOL])`


@pytest.fixture(scope="module")
def foxglove_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node_modules with @foxglove/ws-protocol 0.8.0 and its dependencies, from the vendored tarballs, offline."""
    import shutil
    import subprocess

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (>= 20) and npm are needed to run @foxglove/ws-protocol's client")
    prefix = tmp_path_factory.mktemp("foxglove_js")
    (prefix / "package.json").write_text('{"name": "protoocc-foxglove-test", "private": true}')
    proc = subprocess.run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--cache", str(prefix / "cache"),
                           *map(str, sorted((JS_DIR / "vendor").glob("*.tgz")))], cwd=prefix, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return prefix / "node_modules"


def js_client(node_modules: Path, port: int, offers: str, topics: list[str], stamp: int, timeout_ms: int = 20000) -> Any:
    import os
    import subprocess

    return subprocess.Popen(["node", "--experimental-websocket", "--no-warnings", str(JS_DIR / "client.cjs"),
                             f"ws://127.0.0.1:{port}", offers, ",".join(topics), str(stamp), str(timeout_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NODE_PATH": str(node_modules)})


def read_events(proc: Any, until: str | None = None) -> list[dict[str, Any]]:
    """JSON lines of the JS client until an event named ``until`` (None: until it exits)."""
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if until is not None and events[-1]["event"] == until:
            break
    return events


def test_foxglove_client_offering_both_subprotocols_gets_scene_images_transforms_and_grid(live, foxglove_js) -> None:
    from nav_msgs.msg import OccupancyGrid

    from protoocc_ros.ros.publishing.navigation_grid import msg_to_cells
    from protoocc_ros.ros.runtime.qos import latched_qos

    rig, _, _, _, port = live
    assert rig.set_param("score_threshold", 0.0).successful  # every voxel in the scene
    grids_2d: dict[int, Any] = {}
    rig.node.create_subscription(OccupancyGrid, GRID_2D, Rig._keep(grids_2d), latched_qos(1))
    stamp = rig.next_stamp(5.0)
    topics = [SCENE, TF, GRID_2D, *IMAGES.values()]
    proc = js_client(foxglove_js, port, BOTH, topics, stamp)
    try:
        head = read_events(proc, until="subscribed")
        assert head[-1]["event"] == "subscribed", head
        assert {"event": "open", "protocol": "foxglove.sdk.v1"} in head
        rig.spin_until(lambda: False, 0.5)  # let the server register the subscriptions
        rig.publish_set(stamp)
        grid = msg_to_grid(rig.wait_grid(stamp))
        assert rig.spin_until(lambda: stamp in grids_2d, 10.0)
        events = read_events(proc)
        assert proc.wait(30) == 0, (events, proc.stderr.read())
    finally:
        proc.kill()
    got = {e["topic"]: e for e in events if e["event"] == "message"}
    assert set(got) == set(topics) and all(int(e["logTime"]) == stamp for e in got.values())

    def decoded(topic: str) -> Any:
        import base64

        e = got[topic]
        return message_class(e["schemaName"], base64.b64decode(e["schema"])).FromString(base64.b64decode(e["data"]))

    assert set(cube_table(decoded(SCENE))) == set(expected_cubes(grid.labels, grid.point_cloud_range, grid.voxel_size))
    assert {(t.parent_frame_id, t.child_frame_id) for t in decoded(TF).transforms} >= {("odom", "base_link")}
    for topic in IMAGES.values():
        assert decoded(topic).format == "jpeg" and decoded(topic).data[:2] == b"\xff\xd8"
    g = decoded(GRID_2D)
    cells = msg_to_cells(grids_2d[stamp]).cells  # (X, Y) as published on ~/occupancy_2d
    packed = np.frombuffer(g.data, np.uint8).reshape(cells.shape[1], cells.shape[0], g.cell_stride)  # rows along y
    assert g.column_count == cells.shape[0] and g.cell_size.x == pytest.approx(grid.voxel_size)
    np.testing.assert_array_equal(packed[..., 0].view(np.int8).T, cells)
    assert [f.name for f in g.fields] == ["occupancy", "red", "green", "blue", "alpha"]


def test_foxglove_client_offering_only_websocket_v1_is_refused_and_the_node_says_why(live, foxglove_js) -> None:
    rig, _, _, node, port = live
    proc = js_client(foxglove_js, port, LEGACY, [SCENE], rig.t_ns, timeout_ms=10000)
    try:
        events = read_events(proc)
        assert proc.wait(15) == 2, events  # the connection failed; no "open"
    finally:
        proc.kill()
    assert not any(e["event"] == "open" for e in events)
    assert rig.spin_until(lambda: "refused at the WebSocket handshake (HTTP 400)" in node.output(), 5.0), \
        node.output()[-2000:]
    line = [ln for ln in node.output().splitlines() if "refused at the WebSocket handshake" in ln][-1]
    assert "foxglove.sdk.v1" in line and "Lichtblick 1.22.0" in line and "WARN" in line


@pytest.mark.parametrize("offer,accepted", [
    (["foxglove.websocket.v1", "foxglove.sdk.v1"], True),   # Lichtblick since PR 819, FoxgloveClient with both
    (["foxglove.sdk.v1", "foxglove.websocket.v1"], True),   # clients that prefer the new name
    (["foxglove.sdk.v1"], True),                            # foxglove-sdk clients
    (["foxglove.websocket.v1"], False),                     # Lichtblick <= 1.22.0, Foxglove Studio 1.x
    ([], False),                                            # a plain WebSocket
])
def test_subprotocol_offers_of_real_viewers(live, offer: list[str], accepted: bool) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    *_, port = live
    url = f"ws://127.0.0.1:{port}"
    if accepted:
        with connect(url, subprotocols=[Subprotocol(p) for p in offer], proxy=None, open_timeout=10) as ws:
            assert ws.subprotocol == "foxglove.sdk.v1"
            assert json.loads(ws.recv(timeout=10))["op"] == "serverInfo"
    else:
        with pytest.raises(InvalidStatus, match="HTTP 400"):
            connect(url, subprotocols=[Subprotocol(p) for p in offer] or None, proxy=None, open_timeout=10)
