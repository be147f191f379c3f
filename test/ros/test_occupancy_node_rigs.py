"""occupancy_node on camera rigs other than the training rig, over real DDS: 1, 4 and 6 cameras with their own
topic and frame names, mono8 and rgb8 cameras mixed, the ego pose in ``map``, each camera stamped on its own.

The checkpoint was trained on 2 cameras (test_occupancy_node.small_model). Each rig's grids must equal
ProtoOcc called directly on the same inputs (the weights serve any camera count), and the node must say that
the rig differs from the training rig. The 4-camera rig is named and framed like a KITTI raw drive converted
to MCAP by a third-party converter (kitti2bag / kitti_to_rosbag2 style topics and frames).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
from ros_helpers import NodeProcess, ros_context, spin_until
from test_occupancy_node import MODULE, SMALL_CONFIG, params_file, small_model

from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from protoocc_ros.data.preprocessing import preprocess_camera_set
from protoocc_ros.geometry import make_transform, optical_rotation
from protoocc_ros.inference.predictor import load_model
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.inputs.image_conversion import msg_to_rgb, rgb_to_image
from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid
from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos, tf_qos

T0_NS = 1_317_046_436_000_000_000  # a KITTI raw drive (2011-09-26), ~1.3e9 s
S = 1_000_000_000


@dataclass
class Camera:
    name: str          # the node's camera name ({camera} of the topic patterns)
    frame: str         # optical frame id in the image header and /tf_static
    yaw_deg: float
    encoding: str      # what the driver publishes
    size: tuple[int, int]


@dataclass
class RigSpec:
    label: str
    cameras: list[Camera]
    image_pattern: str
    info_pattern: str
    world: str         # parent of base_link in /tf


RIGS = [
    RigSpec("front_only", [Camera("front", "front_optical", 0.0, "rgb8", (60, 110))],
            "/front_camera/{camera}/image_raw", "/front_camera/{camera}/camera_info", "odom"),
    RigSpec("kitti_raw_4", [Camera("camera_color_left", "camera_color_left", 0.0, "rgb8", (62, 200)),
                            Camera("camera_color_right", "camera_color_right", 0.0, "rgb8", (62, 200)),
                            Camera("camera_gray_left", "camera_gray_left", 0.0, "mono8", (62, 200)),
                            Camera("camera_gray_right", "camera_gray_right", 0.0, "mono8", (62, 200))],
            "/kitti/{camera}/image_raw", "/kitti/{camera}/camera_info", "map"),
    RigSpec("nuscenes_6", [Camera(c, f"{c.lower()}_optical_frame", yaw, "rgb8", (48, 88)) for c, yaw in
                           [("CAM_FRONT", 0.0), ("CAM_FRONT_RIGHT", -55.0), ("CAM_FRONT_LEFT", 55.0),
                            ("CAM_BACK", 180.0), ("CAM_BACK_LEFT", 110.0), ("CAM_BACK_RIGHT", -110.0)]],
            "/cameras/{camera}/image_raw", "/cameras/{camera}/camera_info", "odom"),
]


def intrinsics(size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.array([[0.6 * w, 0.0, (w - 1) / 2.0], [0.0, 0.6 * w, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def cam2ego(cam: Camera, index: int) -> np.ndarray:
    return make_transform(optical_rotation(math.radians(cam.yaw_deg)), [1.0, 0.27 * (index % 2) - 0.13, 1.65])


def pose(stamp_ns: int) -> np.ndarray:
    t = (stamp_ns - T0_NS) / 1e9
    return make_transform(None, [5.0 * t, 0.0, 0.0])


def driver_image(cam: Camera, stamp_ns: int) -> np.ndarray:
    rng = np.random.default_rng([stamp_ns % 2**32, sum(map(ord, cam.name))])
    return rng.integers(0, 256, size=(*cam.size, 3), dtype=np.uint8)


class RigPublisher:
    """Publishes a rig the way its drivers do: one CameraInfo + image per camera, each with its own stamp."""

    def __init__(self, ctx: Any, spec: RigSpec) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.spec = spec
        self.node = Node("rig_publisher", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        pub = self.node.create_publisher
        self.images = {c.name: pub(Image, spec.image_pattern.format(camera=c.name), reliable_qos(10))
                       for c in spec.cameras}
        self.infos = {c.name: pub(CameraInfo, spec.info_pattern.format(camera=c.name), reliable_qos(10))
                      for c in spec.cameras}
        self.tf = pub(TFMessage, "/tf", tf_qos())
        static = pub(TFMessage, "/tf_static", latched_qos(1))
        static.publish(mb.tf_message(mb.transform_msg(cam2ego(c, i), "base_link", c.frame, T0_NS)
                                     for i, c in enumerate(spec.cameras)))
        self.static = static
        self.grids: dict[int, SemanticOccupancyGrid] = {}
        self.node.create_subscription(SemanticOccupancyGrid, "/occupancy_node/occupancy",
                                      lambda m: self.grids.__setitem__(mb.stamp_to_ns(m.header.stamp), m),
                                      reliable_qos(10))
        self.sent: dict[int, dict[str, Image]] = {}

    def publish_set(self, stamp_ns: int, rng: np.random.Generator) -> None:
        """Ego pose at the set stamp; each camera 0-15 ms later, in a shuffled order (as drivers do)."""
        self.tf.publish(mb.tf_message([mb.transform_msg(pose(stamp_ns), self.spec.world, "base_link", stamp_ns)]))
        self.tf.publish(mb.tf_message([mb.transform_msg(pose(stamp_ns + 50_000_000), self.spec.world, "base_link",
                                                        stamp_ns + 50_000_000)]))
        self.sent[stamp_ns] = {}
        for i in rng.permutation(len(self.spec.cameras)):
            cam = self.spec.cameras[i]
            t = stamp_ns + int(rng.integers(0, 15_000_000))
            h, w = cam.size
            self.infos[cam.name].publish(mb.camera_info_msg(intrinsics(cam.size), w, h, t, cam.frame))
            msg = rgb_to_image(driver_image(cam, stamp_ns), cam.encoding, mb.header(t, cam.frame))
            self.images[cam.name].publish(msg)
            self.sent[stamp_ns][cam.name] = msg

    def spin_until(self, predicate: Any, timeout_s: float) -> bool:
        return spin_until(self.executor, predicate, timeout_s)


def expected_grid(spec: RigSpec, model: Any, cfg: Any, sent: dict[str, Image], memory: Any) -> tuple[Any, Any]:
    """ProtoOcc on the decoded images of one set (mono8 as the node decodes it), without ROS."""
    images = [msg_to_rgb(sent[c.name]) for c in spec.cameras]
    batch = preprocess_camera_set(images, [intrinsics(c.size) for c in spec.cameras],
                                  [cam2ego(c, i) for i, c in enumerate(spec.cameras)], cfg.image_size)
    first = min(mb.stamp_to_ns(sent[c.name].header.stamp) for c in spec.cameras[:1])
    labels, _, memory = model.predict(batch.images[None], batch.lidar2img[None],
                                      torch.from_numpy(pose(first))[None],
                                      torch.tensor([first / 1e9], dtype=torch.float64), memory)
    return labels[0].numpy(), memory


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    return small_model(tmp_path_factory.mktemp("rigs"))


@pytest.fixture(params=RIGS, ids=lambda r: r.label)
def rig(request: pytest.FixtureRequest, trained, tmp_path: Path) -> Iterator[tuple[RigSpec, RigPublisher, NodeProcess]]:
    spec: RigSpec = request.param
    _, checkpoint, _ = trained
    params = params_file(tmp_path, "", checkpoint, cameras=[c.name for c in spec.cameras],
                         image_topic_pattern=spec.image_pattern, camera_info_topic_pattern=spec.info_pattern,
                         odom_frame=spec.world, input_reliability="reliable", sync_slop_s=0.03,
                         tf_tolerance_s=0.1, **{"memory.max_gap_s": 5.0})
    node = NodeProcess(MODULE, tmp_path / "node.log", params_file=params, node_name="occupancy_node")
    with ros_context() as ctx:
        pub = RigPublisher(ctx, spec)
        up = pub.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in pub.images.values()), 60.0)
        assert up, f"node did not come up:\n{node.output()}"
        yield spec, pub, node
        code = node.stop()
        pub.executor.shutdown()
        pub.node.destroy_node()
    assert code == 0 and "Traceback" not in node.output(), node.output()[-3000:]


def test_any_rig_runs_the_checkpoint_and_matches_the_model(rig, trained) -> None:
    spec, pub, node = rig
    _, checkpoint, cfg = trained
    assert len(spec.cameras) != len(SMALL_CONFIG["dataset"]["cameras"]), "the rig must differ from training"
    rng = np.random.default_rng(0)
    stamps = [T0_NS + k * S // 2 for k in range(3)]
    for stamp in stamps:
        pub.publish_set(stamp, rng)
        assert pub.spin_until(lambda: any(abs(s - stamp) < 20_000_000 for s in pub.grids), 30.0), \
            f"no grid for the set at {stamp}:\n{node.output()[-3000:]}"
    model = load_model(checkpoint, cfg)
    memory = None
    for stamp in stamps:
        got = next(g for s, g in pub.grids.items() if abs(s - stamp) < 20_000_000)
        want, memory = expected_grid(spec, model, cfg, pub.sent[stamp], memory)
        np.testing.assert_array_equal(msg_to_grid(got).labels, want)
        assert got.header.frame_id == "base_link"
    log = node.output()
    assert "camera rig differs from the training rig" in log and f"{len(spec.cameras)} camera(s)" in log
