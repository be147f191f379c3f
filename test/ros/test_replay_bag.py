"""replay_node on rosbag2 recordings (sqlite3 and mcap): a subscriber process receives the bag's messages unchanged."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ros_helpers as rh
from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io
from protoocc_ros.ros.inputs.image_conversion import rgb_to_image
from protoocc_ros.ros.replay.bag_source import BagSource
from protoocc_ros.ros.replay.types import header_stamp_ns

CAMERAS = ["CAM_FRONT", "CAM_BACK"]
T0 = 1_700_000_000_000_000_000
PERIOD = 100_000_000  # 10 Hz


def _frame_messages(k: int) -> list[tuple[str, object]]:
    """One frame as a driver would record it: tf, per camera info + image, then ground truth."""
    t = T0 + k * PERIOD
    rng = np.random.default_rng(k)
    pose = np.eye(4)
    pose[:3, 3] = [k * 1.5, 0.0, 0.0]
    msgs: list[tuple[str, object]] = [("/tf", mb.ego_pose_tf(pose, t))]
    for cam in CAMERAS:
        frame = mb.optical_frame_id(cam)
        msgs.append((mb.camera_info_topic(cam), mb.camera_info_msg(np.diag([20.0, 20.0, 1.0]), 12, 8, t, frame)))
        msgs.append((mb.image_topic(cam), rgb_to_image(rng.integers(0, 255, (8, 12, 3), dtype=np.uint8),
                                                       header=mb.header(t, frame))))
    grid = SemanticOccupancyGrid(header=mb.header(t, "base_link"), voxel_size=0.4, size_x=3, size_y=2, size_z=2,
                                 free_label=17, labels=rng.integers(0, 18, 12, dtype=np.uint8).tobytes())
    msgs.append((mb.GROUND_TRUTH_TOPIC, grid))
    return msgs


def _write_bag(path: Path, storage: str, n_frames: int) -> list[tuple[str, bytes]]:
    """Write the bag; returns (topic, CDR as stored) in bag order, without /clock (replay publishes its own)."""
    with bag_io.BagWriter(path, storage) as bag:
        bag.write("/tf_static", mb.camera_static_tf({c: np.eye(4) for c in CAMERAS}, T0), T0 - 1)
        bag.write("/clock", mb.clock_msg(T0), T0 - 1)
        for k in range(n_frames):
            for j, (topic, msg) in enumerate(_frame_messages(k)):
                bag.write(topic, msg, T0 + k * PERIOD + j * 1000)
    return [(r.topic, r.data) for r in bag_io.read_bag(path) if r.topic != "/clock"]


def test_bag_source_groups_messages_by_image_stamp(tmp_path: Path) -> None:
    _write_bag(tmp_path / "bag", "mcap", 3)
    bundles = list(BagSource(tmp_path / "bag").frames())
    assert [b.stamp_ns for b in bundles] == [T0 + k * PERIOD for k in range(3)]
    assert bundles[0].topics()[0] == "/tf_static"              # leading messages join the first frame
    assert "/clock" not in sum((b.topics() for b in bundles), [])
    for b in bundles:
        assert b.topics().count(mb.GROUND_TRUTH_TOPIC) == 1
        stamped = [m for m in b.messages if m.msgtype != "tf2_msgs/msg/TFMessage"]
        assert {header_stamp_ns(m.payload) for m in stamped} == {b.stamp_ns}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replayed_bag_messages_arrive_identical(tmp_path: Path, storage: str) -> None:
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from protoocc_ros.ros.runtime.qos import latched_qos

    n_frames = 4
    written = _write_bag(tmp_path / "bag", storage, n_frames)
    topics = sorted({t for t, _ in written})
    with rh.ros_context() as context:
        import rclpy

        node = rclpy.create_node("bag_listener", context=context)
        received: list[tuple[str, bytes]] = []
        clocks: list[bytes] = []
        done: list[String] = []
        types = bag_io.bag_topics(tmp_path / "bag")
        for topic in topics:
            qos = latched_qos() if topic == "/tf_static" else QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(bag_io.message_class(types[topic]), topic,
                                     lambda data, t=topic: received.append((t, data)), qos, raw=True)
        node.create_subscription(bag_io.message_class("rosgraph_msgs/msg/Clock"), "/clock", clocks.append,
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        node.create_subscription(String, mb.DONE_TOPIC, done.append, latched_qos())
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        with rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "replay.log",
                            params={"dataroot": str(tmp_path / "bag"), "rate": 20.0,
                                    "wait_for_subscribers": [t for t in topics if t != "/tf_static"]}) as replay:
            finished = rh.spin_until(executor, lambda: (bool(done) and len(received) >= len(written))
                                     or replay.proc.poll() not in (None, 0), 30.0)
            assert finished, f"received {len(received)}/{len(written)}, done={done}; log:\n{replay.output()}"
            assert replay.wait(10.0) == 0, replay.output()
        node.destroy_node()
    for topic in topics:  # per topic, order and CDR bytes are preserved (topics are separate DDS streams)
        got, sent = [d for t, d in received if t == topic], [d for t, d in written if t == topic]
        assert len(got) == len(sent), topic
        for g, w in zip(got, sent):  # DDS pads a payload to a multiple of 4 bytes
            assert g[:len(w)] == w and len(g) - len(w) < 4, topic
    assert len(received) == len(written)
    assert [header_stamp_ns(c) for c in clocks] == [T0 + k * PERIOD for k in range(n_frames)]
    summary = json.loads(done[0].data)
    assert summary["frames"] == n_frames and summary["source"]["source"] == "rosbag2"
    # 20x real time: 3 gaps of 0.1 s take >= 15 ms; the run must not be paced slower than ~1x
    assert 0.015 <= summary["wall_s"] < 3.0


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)], ids=["mcap_raw", "sqlite3_jpeg"])
def test_consumer_paced_replay_of_a_real_recording_gives_one_grid_per_set(tmp_path: Path, storage: str,
                                                                          compressed: bool) -> None:
    """A six-camera recording as a recorder writes it (each camera its own jittered stamp, log time = arrival)
    replayed at the pace of occupancy_node: one grid per camera set, no wait timeout, no resend, and the
    start-up wait ends once the node is matched."""
    from bag_recordings import CAMERAS as BAG_CAMERAS
    from bag_recordings import write_recording
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String
    from test_occupancy_node import MAIN, MODULE, params_file, small_model

    from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos

    sets = 12
    rec = write_recording(tmp_path / "bag", storage, sets=sets, compressed=compressed, seed=3)
    _, checkpoint, _ = small_model(tmp_path)
    node_params = params_file(tmp_path, "", checkpoint, cameras=BAG_CAMERAS, input_reliability="reliable",
                              image_transport="compressed" if compressed else "raw", sync_slop_s=0.05,
                              tf_tolerance_s=0.1)
    replay_params = {"dataroot": str(tmp_path / "bag"), "rate": 0.0, "wait_for_topic": f"/{MAIN}/occupancy",
                     "wait_timeout_s": 30.0, "resend_after_s": 10.0, "startup_timeout_s": 120.0,
                     "startup_settle_s": 0.5, "sync_slop_s": 0.05,
                     "wait_for_subscribers": [mb.DONE_TOPIC, f"/cameras/{BAG_CAMERAS[0]}/image_raw"
                                              + ("/compressed" if compressed else "")]}
    with rh.ros_context() as context:
        import rclpy

        listener = rclpy.create_node("grid_listener", context=context)
        grids: list[int] = []
        done: list[String] = []
        listener.create_subscription(SemanticOccupancyGrid, f"/{MAIN}/occupancy",
                                     lambda m: grids.append(mb.stamp_to_ns(m.header.stamp)), reliable_qos(50))
        listener.create_subscription(String, mb.DONE_TOPIC, done.append, latched_qos())
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        with rh.NodeProcess(MODULE, tmp_path / "node.log", params_file=node_params, node_name=MAIN) as node:
            assert rh.spin_until(executor, lambda: "active:" in node.output(), 90.0), node.output()
            with rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "replay.log",
                                params=replay_params) as replay:
                finished = rh.spin_until(executor, lambda: bool(done) or replay.proc.poll() not in (None, 0), 240.0)
                assert finished and done, replay.output()[-3000:] + node.output()[-3000:]
                assert replay.wait(20.0) == 0, replay.output()
            rh.spin_until(executor, lambda: len(grids) >= sets, 5.0)
        listener.destroy_node()
    summary = json.loads(done[0].data)
    assert (summary["frames"], summary["incomplete_sets"], summary["wait_timeouts"], summary["resends"]) == \
        (sets, 0, 0, 0), summary
    assert summary["startup_wait_s"] < 30.0, summary  # the node was up: seconds, not startup_timeout_s
    reference = [rec.image_stamps[k][BAG_CAMERAS[0]] for k in range(sets)]  # the node stamps a set by camera 0
    assert sorted(grids) == reference, (sorted(grids), reference)
    print(f"{storage} {'jpeg' if compressed else 'raw'}: {sets} sets in, {len(grids)} grids out, "
          f"startup wait {summary['startup_wait_s']} s, {summary['wall_s']} s replay")
