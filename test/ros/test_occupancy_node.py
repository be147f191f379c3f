"""occupancy_node end to end over real DDS (private ROS_DOMAIN_ID): the node runs in a subprocess, this
process publishes synthetic camera sets + CameraInfo + TF and checks the outputs and /diagnostics.

One node process serves every case (a second one, whose CameraInfo topics nobody publishes, covers
"CameraInfo never received"). Stamps only move forward between tests, except in the time-jump test.
The lifecycle, live-parameter, diagnostics and Foxglove tests reuse Rig, running_node and direct_prediction.
"""
from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
import yaml
from ros_helpers import REPO, NodeProcess, ros_context, spin_until

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray

from protoocc_ros.classes import OCC3D_FREE_LABEL
from protoocc_ros.config import load_config
from protoocc_ros.data.preprocessing import preprocess_camera_set
from protoocc_ros.geometry import make_transform, yaw_matrix
from protoocc_ros.model import build_model
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.runtime.diagnostics import status_level, status_values
from protoocc_ros.ros.inputs.image_conversion import rgb_to_image
from protoocc_ros.ros.publishing.occupancy_msg import confidence_to_uint8, msg_to_grid
from protoocc_ros.inference.predictor import load_model
from protoocc_ros.ros.publishing.pointcloud import read_points
from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos, tf_qos
from protoocc_ros.ros.inputs.tf_buffer import TfBuffer
from protoocc_ros.checkpoints.format import save_checkpoint

MODULE = "protoocc_ros.ros.nodes.occupancy_node"
MAIN, NOINFO = "occupancy_node", "occupancy_node_noinfo"
CAMERAS = ["CAM_FRONT", "CAM_BACK"]
H, W = 48, 88
K = np.array([[40.0, 0.0, 44.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])
OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # optical axes in the ego frame
CAM2EGO = {"CAM_FRONT": make_transform(OPTICAL, [1.5, 0.0, 1.6]),
           "CAM_BACK": make_transform(yaw_matrix(math.pi) @ OPTICAL, [-0.5, 0.0, 1.6])}
SMALL_CONFIG = {  # 2 cameras, 48x88 images, 40x40x16 grid: ~40 ms per set on a CPU
    "dataset": {"cameras": CAMERAS, "image_size": [H, W], "point_cloud_range": [-8.0, -8.0, -1.0, 8.0, 8.0, 5.4],
                "grid_size": [40, 40, 16]},
    "model": {"query_size": [20, 20, 4], "prototypes": {"num_prototypes": 18}},
}
T0_NS = 1_700_000_000 * 1_000_000_000
S = 1_000_000_000


def ego_pose(stamp_ns: int) -> np.ndarray:
    """odom -> base_link: driving along x at 4 m/s with a slow yaw."""
    t = (stamp_ns - T0_NS) / 1e9
    return make_transform(yaw_matrix(0.02 * t), [4.0 * t, 0.5 * math.sin(t), 0.0])


def camera_image(stamp_ns: int, cam: str) -> np.ndarray:
    rng = np.random.default_rng([stamp_ns % 2**32, CAMERAS.index(cam) if cam in CAMERAS else zlib.crc32(cam.encode())])
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


class Rig:
    """The test's side of the graph: publishers of inputs, subscribers of outputs of ``node``, a stamp clock.
    ``cam2ego`` (camera -> 4x4) is the rig (default: the two cameras of the small model)."""

    def __init__(self, ctx: Any, node: str = MAIN, cam2ego: dict[str, np.ndarray] | None = None) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.name = node
        self.cam2ego = dict(CAM2EGO if cam2ego is None else cam2ego)
        self.cameras = list(self.cam2ego)
        self.node = Node("occupancy_test_rig", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.images = {c: self.node.create_publisher(Image, mb.image_topic(c), reliable_qos(10)) for c in self.cameras}
        self.infos = {c: self.node.create_publisher(CameraInfo, mb.camera_info_topic(c), reliable_qos(10))
                      for c in self.cameras}
        self.tf_pub = self.node.create_publisher(TFMessage, "/tf", tf_qos())
        self.static_pub = self.node.create_publisher(TFMessage, "/tf_static", latched_qos(1))
        self.static_msg = mb.camera_static_tf(self.cam2ego, T0_NS)
        self.static_pub.publish(self.static_msg)
        self.grids: dict[int, SemanticOccupancyGrid] = {}
        self.clouds: dict[int, PointCloud2] = {}
        self.markers: dict[int, MarkerArray] = {}
        self.diag: dict[str, DiagnosticArray] = {}
        sub = self.node.create_subscription
        self.grid_sub = sub(SemanticOccupancyGrid, f"/{node}/occupancy", self._keep(self.grids), reliable_qos(50))
        sub(PointCloud2, f"/{node}/occupied_voxels", self._keep(self.clouds), reliable_qos(50))
        sub(MarkerArray, f"/{node}/markers", self._keep_markers, reliable_qos(50))
        sub(DiagnosticArray, "/diagnostics", self._keep_diag, reliable_qos(50))
        self.tf_sent: list[TFMessage] = []
        self.t_ns = T0_NS
        self._param_client: Any = None

    @staticmethod
    def _keep(store: dict[int, Any]) -> Any:
        return lambda msg: store.__setitem__(mb.stamp_to_ns(msg.header.stamp), msg)

    def _keep_markers(self, msg: MarkerArray) -> None:
        if msg.markers:
            self.markers[mb.stamp_to_ns(msg.markers[0].header.stamp)] = msg

    def _keep_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diag[status.name.split(":")[0]] = msg

    # -- inputs ---------------------------------------------------------------------------------
    def next_stamp(self, gap_s: float = 0.5) -> int:
        self.t_ns += int(gap_s * S)
        return self.t_ns

    def publish_tf(self, stamp_ns: int, pose: np.ndarray | None = None) -> None:
        msg = mb.ego_pose_tf(ego_pose(stamp_ns) if pose is None else pose, stamp_ns)
        self.tf_sent.append(msg)
        self.tf_pub.publish(msg)

    def publish_image(self, cam: str, stamp_ns: int, rgb: np.ndarray | None = None, frame_id: str | None = None,
                      encoding: str = "rgb8") -> None:
        frame = mb.optical_frame_id(cam) if frame_id is None else frame_id
        self.infos[cam].publish(mb.camera_info_msg(K, W, H, stamp_ns, mb.optical_frame_id(cam)))
        msg = rgb_to_image(camera_image(stamp_ns, cam) if rgb is None else rgb, "rgb8", mb.header(stamp_ns, frame))
        msg.encoding = encoding
        self.images[cam].publish(msg)

    def publish_set(self, stamp_ns: int, tf: bool = True, **image_kwargs: Any) -> None:
        if tf:
            self.publish_tf(stamp_ns)
        for cam in self.cameras:
            self.publish_image(cam, stamp_ns, **image_kwargs)

    # -- outputs --------------------------------------------------------------------------------
    def spin_until(self, predicate: Any, timeout_s: float = 10.0) -> bool:
        return spin_until(self.executor, predicate, timeout_s)

    def wait_grid(self, stamp_ns: int, timeout_s: float = 10.0) -> SemanticOccupancyGrid:
        assert self.spin_until(lambda: stamp_ns in self.grids, timeout_s), \
            f"no grid for stamp {stamp_ns}; got {sorted(self.grids)[-3:]}, drops {self.counts('dropped')}"
        return self.grids[stamp_ns]

    def counts(self, part: str, node: str | None = None) -> dict[str, int]:
        node = node or self.name
        msg = self.diag.get(node)
        return {} if msg is None else {k: int(float(v)) for k, v in status_values(msg, f"{node}: {part}").items()
                                       if v.replace(".", "", 1).isdigit()}

    def status(self, part: str) -> tuple[int | None, str, dict[str, str]]:
        """(level, message, key/values) of this node's status ``part`` in the newest /diagnostics."""
        msg = self.diag.get(self.name)
        name = f"{self.name}: {part}"
        found = [s for s in (msg.status if msg else []) if s.name == name]
        return (status_level(msg, name), found[0].message, status_values(msg, name)) if found else (None, "", {})

    def wait_status(self, part: str, level: int, timeout_s: float = 8.0) -> tuple[str, dict[str, str]]:
        """Spin until status ``part`` has ``level``; returns its (message, key/values)."""
        self.diag.pop(self.name, None)  # only a report made from now on counts
        self.spin_until(lambda: self.status(part)[0] == level, timeout_s)
        got, message, values = self.status(part)
        assert got == level, f"{self.name}: {part} level {got}, expected {level}: {message} {values}"
        return message, values

    def set_params(self, values: dict[str, Any]) -> list[Any]:
        """``ros2 param set`` on the node under test; one SetParametersResult per parameter, in order."""
        from rclpy.parameter import Parameter
        from rclpy.parameter_client import AsyncParameterClient

        if self._param_client is None:
            self._param_client = AsyncParameterClient(self.node, f"/{self.name}")
            assert self._param_client.wait_for_services(timeout_sec=10.0), f"/{self.name} has no parameter services"
        for _ in range(4):  # an answer can be lost while discovery matches the response path: ask again
            future = self._param_client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
            self.executor.spin_until_future_complete(future, timeout_sec=5.0)
            if future.done():
                return list(future.result().results)
        raise AssertionError(f"set_parameters {values} on /{self.name}: no answer in 20 s")

    def set_param(self, name: str, value: Any) -> Any:
        return self.set_params({name: value})[0]

    def no_grid(self, stamp_ns: int, wait_s: float = 1.0) -> bool:
        """True when no grid with this stamp arrives within ``wait_s``."""
        return not self.spin_until(lambda: stamp_ns in self.grids, wait_s)

    def wait_count(self, part: str, reason: str, at_least: int, node: str | None = None,
                   timeout_s: float = 8.0) -> int:
        node = node or self.name
        self.spin_until(lambda: self.counts(part, node).get(reason, 0) >= at_least, timeout_s)
        got = self.counts(part, node).get(reason, 0)
        assert got >= at_least, f"{node} {part}[{reason}] = {got}, expected >= {at_least}: {self.counts(part, node)}"
        return got


def small_model(tmp: Path) -> tuple[Path, Path, Any]:
    """(config path, checkpoint path, cfg) of the small 2-camera model with varied predictions."""
    config_path = tmp / "small.yaml"
    config_path.write_text(yaml.safe_dump({"base": str(REPO / "config" / "demo.yaml"), **SMALL_CONFIG}))
    cfg = load_config(config_path)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # a fresh model predicts one class everywhere; larger weights give varied grids
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.mul_(3.0)
    return config_path, save_checkpoint(tmp / "small.safetensors", model, cfg), cfg


def params_file(tmp: Path, config_path: Path, checkpoint: Path, **extra: Any) -> Path:
    """A --params-file for every node of the test (fast diagnostics, tight sync) plus ``extra``."""
    params = {"config_file": str(config_path), "checkpoint": str(checkpoint), "device": "cpu",
              "sync_slop_s": 0.02, "tf_tolerance_s": 0.05, "diagnostics_period_s": 0.2, "log_throttle_s": 0.5,
              **extra}
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


@dataclass
class Running:
    rig: Rig
    node: NodeProcess
    model: Any       # the node's model, loaded here for direct_prediction
    checkpoint: Path


@contextmanager
def running_node(tmp: Path, active: bool = True, **extra: Any) -> Iterator[Running]:
    """One occupancy_node process on the small model (``extra`` parameters on top of params_file) and a Rig;
    waits until the node subscribes to the cameras (``active``) or reports /diagnostics; checks a clean exit."""
    config_path, checkpoint, cfg = small_model(tmp)
    given = extra.pop("checkpoint", checkpoint)  # e.g. a missing file, for a failing configure
    node = NodeProcess(MODULE, tmp / "node.log", params_file=params_file(tmp, config_path, given, **extra),
                       node_name=MAIN)
    try:
        with ros_context() as ctx:
            rig = Rig(ctx)
            # active: every input matched and the grid publisher discovered (a grid sent before the rig's
            # subscription matches it is lost: volatile QoS), as the module fixture below waits
            up = (lambda: all(p.get_subscription_count() >= 1 for p in [*rig.images.values(), *rig.infos.values(),
                                                                         rig.tf_pub])
                  and rig.grid_sub.get_publisher_count() >= 1) if active else (lambda: MAIN in rig.diag)
            assert rig.spin_until(up, 60.0), f"node did not come up:\n{node.output()}"
            yield Running(rig, node, load_model(checkpoint, cfg), checkpoint)
            code = node.stop()
            rig.executor.shutdown()
            rig.node.destroy_node()
    finally:  # a failing test must not leave the node running on the domain for the next tests
        node.stop()
    assert code == 0 and "Traceback" not in node.output(), node.output()[-3000:]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, Any, list[NodeProcess]]]:
    tmp = tmp_path_factory.mktemp("occupancy_node")
    config_path, checkpoint, cfg = small_model(tmp)
    params = params_file(tmp, config_path, checkpoint)
    nodes = [NodeProcess(MODULE, tmp / "main.log", params_file=params, node_name=MAIN),
             NodeProcess(MODULE, tmp / "noinfo.log", params_file=params, node_name=NOINFO,
                         params={"camera_info_topic_pattern": "/nowhere/{camera}/camera_info"})]
    with ros_context() as ctx:
        rig = Rig(ctx)
        ready = rig.spin_until(lambda: all(p.get_subscription_count() >= 2 for p in rig.images.values())
                               and rig.grid_sub.get_publisher_count() >= 1 and MAIN in rig.diag
                               and NOINFO in rig.diag, timeout_s=60.0)
        assert ready, f"nodes did not come up:\n{nodes[0].output()[-3000:]}\n{nodes[1].output()[-2000:]}"
        yield rig, load_model(checkpoint, cfg), nodes
        codes = [node.stop() for node in nodes]
        rig.executor.shutdown()
        rig.node.destroy_node()
    assert codes == [0, 0], f"nodes did not shut down cleanly: {codes}\n{nodes[0].output()[-3000:]}"
    for bad in ("Traceback", "internal_error", "Failed to publish"):
        assert bad not in nodes[0].output(), nodes[0].output()[-3000:]


def direct_prediction(rig: Rig, model: Any, stamps: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """ProtoOcc.predict on the same inputs as the node, carrying the memory across ``stamps``."""
    buf = TfBuffer()
    buf.add_message(rig.static_msg, static=True)
    for msg in rig.tf_sent:
        buf.add_message(msg)
    memory, out = None, []
    for stamp in stamps:
        cam2ego = [buf.lookup_matrix("base_link", mb.optical_frame_id(c), stamp) for c in CAMERAS]
        batch = preprocess_camera_set([camera_image(stamp, c) for c in CAMERAS], [K, K], cam2ego, (H, W))
        ego = torch.from_numpy(buf.lookup_matrix("odom", "base_link", stamp))
        labels, conf, memory = model.predict(batch.images[None], batch.lidar2img[None], ego[None],
                                             torch.tensor([stamp / 1e9], dtype=torch.float64), memory)
        out.append((labels[0].numpy(), conf[0].numpy()))
    return out


def median_confidence(predictions: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """A score threshold that keeps some occupied voxels of these predictions and removes others (it depends on
    the checkpoint, so tests take it from the model instead of a constant)."""
    conf = np.concatenate([c[labels != OCC3D_FREE_LABEL] for labels, c in predictions])
    assert conf.size > 0 and conf.min() < conf.max(), "the model predicts no occupied voxel to threshold"
    return round(float(np.median(conf)), 3)


def test_grid_cloud_and_markers_equal_the_model_called_directly(setup) -> None:
    rig, model, _ = setup
    first = rig.next_stamp(5.0)  # longer than memory_max_gap_s: the node's memory resets ('gap'/'first_frame')
    second = rig.next_stamp(0.5)
    rig.publish_set(first)
    rig.wait_grid(first)
    rig.publish_set(second)
    rig.wait_grid(second)
    expected = direct_prediction(rig, model, [first, second])
    assert len(np.unique(expected[1][0])) >= 3, "the test model must predict varied labels"
    without_memory = direct_prediction(rig, model, [second])[0][0]
    assert (without_memory != expected[1][0]).mean() > 0.01, "the memory must matter for this check"
    for stamp, (labels, conf) in zip((first, second), expected):
        grid = msg_to_grid(rig.grids[stamp])
        assert grid.frame_id == "base_link" and grid.labels.shape == (40, 40, 16)
        np.testing.assert_array_equal(grid.labels, labels)
        np.testing.assert_array_equal(np.frombuffer(rig.grids[stamp].confidence, np.uint8),
                                      confidence_to_uint8(conf).reshape(-1))
    assert rig.spin_until(lambda: second in rig.clouds and second in rig.markers)
    points = read_points(rig.clouds[second])
    labels = expected[1][0]
    assert len(points) == int((labels != 17).sum()) and not (points["label"] == 17).any()
    cubes = [m for m in rig.markers[second].markers if m.action == Marker.ADD]
    assert sum(len(m.points) for m in cubes) == len(points)
    assert {m.id for m in cubes} == set(np.unique(points["label"]).tolist())
    started_fresh = lambda: sum(rig.counts("memory resets").get(k, 0) for k in ("memory.gap", "memory.first_frame"))
    assert rig.spin_until(lambda: started_fresh() >= 1 and rig.counts("output")["sets_published"] >= 2, 3.0)
    latency = status_values(rig.diag[MAIN], f"{MAIN}: latency")
    assert float(latency["total.mean_ms"]) > float(latency["inference.mean_ms"]) > 0


def reference_2d(labels: np.ndarray, conf: np.ndarray, obstacles: list[str], band_m: tuple[float, float],
                 min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(cells, seen) written here from the definition: a column is seen when a voxel centre of the band lies in
    front of a camera and inside its image (from K and CAM2EGO); 100 = an obstacle class in the band with
    confidence >= min_confidence, -1 = unseen or only unsure obstacles, 0 = otherwise."""
    from protoocc_ros.classes import class_names_for

    pcr, voxel = SMALL_CONFIG["dataset"]["point_cloud_range"], 0.4
    is_obstacle = np.array([n in obstacles for n in class_names_for(18)])
    zc = pcr[2] + (np.arange(labels.shape[2]) + 0.5) * voxel
    band = (zc >= band_m[0] - 1e-9) & (zc <= band_m[1] + 1e-9)
    ix, iy, iz = np.meshgrid(np.arange(labels.shape[0]), np.arange(labels.shape[1]), np.nonzero(band)[0],
                             indexing="ij")
    centres = np.stack([pcr[0] + (ix + 0.5) * voxel, pcr[1] + (iy + 0.5) * voxel, zc[iz]], -1)  # (X, Y, L, 3)
    seen = np.zeros(labels.shape[:2], bool)
    for cam in CAMERAS:
        ego2cam = np.linalg.inv(CAM2EGO[cam])
        c = centres @ ego2cam[:3, :3].T + ego2cam[:3, 3]
        z = np.where(c[..., 2] > 1e-5, c[..., 2], np.nan)
        u, v = K[0, 0] * c[..., 0] / z + K[0, 2], K[1, 1] * c[..., 1] / z + K[1, 2]
        seen |= ((u > -0.5) & (u < W - 0.5) & (v > -0.5) & (v < H - 0.5)).any(-1)
    in_band = is_obstacle[labels[:, :, band]]
    sure = conf[:, :, band] >= min_confidence
    cells = np.where((in_band & sure).any(-1), 100, np.where(in_band.any(-1), -1, 0))
    return np.where(seen, cells, -1).astype(np.int8), seen


def test_occupancy_2d_is_the_reference_projection_and_unknown_is_the_unseen_columns(setup) -> None:
    from nav_msgs.msg import OccupancyGrid

    from protoocc_ros.ros.publishing.navigation_grid import msg_to_cells
    from protoocc_ros.ros.runtime.qos import latched_qos

    rig, model, _ = setup
    grids_2d: dict[int, OccupancyGrid] = {}
    rig.node.create_subscription(OccupancyGrid, f"/{MAIN}/occupancy_2d", Rig._keep(grids_2d), latched_qos(1))
    obstacles, band = ["bus", "motorcycle", "truck"], (0.3, 0.5)  # one level (centre 0.4 m): a mix of 100 and 0
    assert all(r.successful for r in rig.set_params({
        "occupancy_2d.obstacle_classes": obstacles, "occupancy_2d.min_height_m": band[0],
        "occupancy_2d.max_height_m": band[1]}))
    for min_confidence in (0.0, 0.25):
        assert rig.set_param("occupancy_2d.min_confidence", min_confidence).successful
        stamp = rig.next_stamp(5.0)  # after a gap the node's memory starts fresh, as direct_prediction's does
        rig.publish_set(stamp)
        assert rig.spin_until(lambda: stamp in grids_2d, 10.0), f"no ~/occupancy_2d for {stamp}"
        [(labels, conf)] = direct_prediction(rig, model, [stamp])
        got = msg_to_cells(grids_2d[stamp])
        expected, seen = reference_2d(labels, conf, obstacles, band, min_confidence)
        assert got.frame_id == "base_link" and got.resolution == pytest.approx(0.4)
        np.testing.assert_allclose(got.origin, [-8.0, -8.0, 0.0])
        assert 0.1 < seen.mean() < 0.95  # two cameras: the sides are unseen
        np.testing.assert_array_equal(got.cells, expected)
        if min_confidence == 0.0:
            assert (expected == 100).sum() > 20 and (expected[seen] == 0).sum() > 20
            np.testing.assert_array_equal(got.cells == -1, ~seen)  # unknown = exactly the unseen columns
        else:
            assert ((got.cells == -1) & seen).sum() > 5  # unsure obstacles are unknown, not occupied
    refused = rig.set_param("occupancy_2d.obstacle_classes", ["cars"])
    assert not refused.successful and "'occupancy_2d.obstacle_classes'" in refused.reason and "'cars'" in refused.reason
    refused = rig.set_param("occupancy_2d.ground_z_m", 9.0)  # the band above the grid's top (5.4 m)
    assert not refused.successful and "holds no voxel centre" in refused.reason
    assert all(r.successful for r in rig.set_params({
        "occupancy_2d.obstacle_classes": [""], "occupancy_2d.min_height_m": 0.2, "occupancy_2d.max_height_m": 2.0,
        "occupancy_2d.min_confidence": 0.0}))


def check_drop_then_recovery(rig: Rig, reason: str, publish_bad: Any, node: str = MAIN, part: str = "dropped") -> None:
    """Publish bad input, wait for ``reason`` to be counted once more in ``part`` ('dropped': sets, 'dropped
    messages': input messages), then check a good set still comes out."""
    before = rig.counts(part, node).get(reason, 0)
    publish_bad()
    rig.wait_count(part, reason, before + 1, node)
    good = rig.next_stamp()
    rig.publish_set(good)
    rig.wait_grid(good)


@pytest.mark.parametrize(
    "reason,bad_set",
    [
        ("image_encoding", {"encoding": "nv21"}),
        ("image_size_mismatch", {"rgb": np.zeros((H // 2, W // 2, 3), np.uint8)}),  # CameraInfo says W x H
        ("tf_missing", {"frame_id": "ghost_optical_frame"}),                       # no such frame in TF
        ("tf_stale", {"tf": False}),                                               # no ego pose at the stamp
    ],
)
def test_bad_set_is_dropped_counted_and_good_sets_continue(setup, reason: str, bad_set: dict[str, Any]) -> None:
    rig, _, _ = setup
    stamp = rig.next_stamp()
    check_drop_then_recovery(rig, reason, lambda: rig.publish_set(stamp, **bad_set))


def test_camera_missing_from_a_set_is_counted_as_incomplete(setup) -> None:
    rig, _, _ = setup
    stamp = rig.next_stamp()

    def only_front() -> None:
        rig.publish_tf(stamp)
        rig.publish_image("CAM_FRONT", stamp)
        later = rig.next_stamp()  # the next complete set pushes the incomplete one out
        rig.publish_set(later)

    check_drop_then_recovery(rig, "incomplete_set", only_front)


def test_camera_info_never_received_is_counted(setup) -> None:
    rig, _, _ = setup
    before = rig.counts("dropped", NOINFO).get("no_camera_info", 0)
    rig.publish_set(rig.next_stamp())
    rig.wait_count("dropped", "no_camera_info", before + 1, node=NOINFO)
    assert rig.counts("output", NOINFO).get("sets_published") == 0


def test_nan_transform_is_rejected_and_counted(setup) -> None:
    rig, _, _ = setup
    stamp = rig.next_stamp()
    bad_pose = ego_pose(stamp)
    bad_pose[0, 3] = float("nan")

    def publish_nan() -> None:
        rig.publish_tf(stamp, pose=bad_pose)
        rig.publish_set(stamp, tf=False)

    check_drop_then_recovery(rig, "tf_rejected_nan", publish_nan, part="dropped messages")


def test_out_of_order_image_is_counted(setup) -> None:
    rig, _, _ = setup
    stamp = rig.next_stamp()
    rig.publish_set(stamp)
    rig.wait_grid(stamp)
    check_drop_then_recovery(rig, "out_of_order", lambda: rig.publish_image("CAM_FRONT", stamp - S // 5),
                             part="dropped messages")


def test_backwards_time_jump_resets_memory_and_keeps_publishing(setup) -> None:
    rig, _, _ = setup
    rig.publish_set(rig.next_stamp())
    rig.wait_grid(rig.t_ns)
    before = rig.counts("memory resets")
    back = rig.t_ns - 60 * S  # a bag restarting a minute earlier
    rig.publish_set(back)
    rig.wait_grid(back)
    for key in ("memory.time_backwards", "sync.time_jump_backwards", "tf.time_jump_backwards"):
        rig.wait_count("memory resets", key, before.get(key, 0) + 1)
        assert rig.counts("memory resets").get(key, 0) > before.get(key, 0), key
    forward = rig.next_stamp()  # and forward again, past the time before the jump
    rig.publish_set(forward)
    rig.wait_grid(forward)


def test_sets_arriving_faster_than_inference_drop_the_oldest(setup) -> None:
    rig, _, _ = setup
    before = rig.counts("dropped").get("inference_busy", 0)
    stamps = [rig.next_stamp(0.05) for _ in range(12)]
    for stamp in stamps:
        rig.publish_set(stamp)
    rig.wait_grid(stamps[-1])  # the newest set is never the one dropped
    rig.wait_count("dropped", "inference_busy", before + 1)
    assert len([s for s in stamps if s in rig.grids]) < len(stamps)
