"""replay_node follows a consumer (wait_for_topic) and records its outputs to a rosbag2 that rosbags reads back."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import ros_helpers as rh
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io
from test_replay_bag import PERIOD, T0, _write_bag

OUTPUT = mb.PREDICTION_TOPIC


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_consumer_paced_replay_records_every_output(tmp_path: Path, storage: str) -> None:
    """A slow consumer (0.2 s per frame, like a model) echoes each GT grid as its prediction; replay (rate 0)
    waits for each echo, so no frame is lost, and the recording holds one output per frame, in order."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    from protoocc_ros.msg import SemanticOccupancyGrid
    from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos

    n_frames = 5
    _write_bag(tmp_path / "in", "mcap", n_frames)
    record = tmp_path / "out"
    with rh.ros_context() as context:
        node = Node("slow_consumer", context=context)
        pub = node.create_publisher(SemanticOccupancyGrid, OUTPUT, reliable_qos(10))
        inputs: list[SemanticOccupancyGrid] = []
        done: list[String] = []

        def consume(msg: SemanticOccupancyGrid) -> None:
            time.sleep(0.2)
            inputs.append(msg)
            pub.publish(msg)

        node.create_subscription(SemanticOccupancyGrid, mb.GROUND_TRUTH_TOPIC, consume, reliable_qos(10))
        node.create_subscription(String, mb.DONE_TOPIC, done.append, latched_qos())
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        params = {"dataroot": str(tmp_path / "in"), "rate": 0.0, "wait_for_topic": OUTPUT, "wait_timeout_s": 5.0,
                  "wait_for_subscribers": [mb.GROUND_TRUTH_TOPIC], "record_path": str(record),
                  "record_storage": storage, "record_topics": [OUTPUT, "/tf"], "record_drain_s": 0.2}
        with rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "replay.log", params=params) as replay:
            ok = rh.spin_until(executor, lambda: bool(done) or replay.proc.poll() is not None, 30.0)
            assert ok and done, replay.output()
            assert replay.wait(10.0) == 0, replay.output()
        executor.shutdown()
        node.destroy_node()
    summary = json.loads(done[0].data)
    assert summary["frames"] == n_frames and summary["wait_timeouts"] == 0, summary
    assert summary["wall_s"] >= 0.2 * (n_frames - 1)      # it really waited for the slow consumer
    assert summary["record"]["counts"][OUTPUT] == n_frames
    assert len(inputs) == n_frames

    # read back with rosbags' own reader and deserializer (no rclpy involved)
    import yaml
    from rosbags.rosbag2 import Reader

    metadata = yaml.safe_load((record / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == storage
    store = bag_io.project_typestore()
    with Reader(record) as reader:
        grids = [(t, store.deserialize_cdr(raw, c.msgtype))
                 for c, t, raw in reader.messages() if c.topic == OUTPUT]
    stamps = [g.header.stamp.sec * 10**9 + g.header.stamp.nanosec for _, g in grids]
    assert stamps == [T0 + k * PERIOD for k in range(n_frames)]
    assert [t for t, _ in grids] == stamps                  # bag time = replay clock = frame stamp
    for (_, grid), sent in zip(grids, inputs):
        np.testing.assert_array_equal(np.asarray(grid.labels, dtype=np.uint8),
                                      np.frombuffer(bytes(sent.labels), dtype=np.uint8))


def test_frame_without_output_is_published_again_without_ground_truth(tmp_path: Path) -> None:
    """A consumer that loses the first delivery of every frame still gets each frame (resend_after_s); the
    ground truth goes out once per frame."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from protoocc_ros.msg import SemanticOccupancyGrid
    from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos

    n_frames = 3
    _write_bag(tmp_path / "in", "mcap", n_frames)
    with rh.ros_context() as context:
        node = Node("lossy_consumer", context=context)
        pub = node.create_publisher(SemanticOccupancyGrid, OUTPUT, reliable_qos(10))
        seen: dict[int, int] = {}
        gt_stamps: list[int] = []
        done: list[String] = []

        def on_image(msg: Image) -> None:
            stamp = mb.stamp_to_ns(msg.header.stamp)
            seen[stamp] = seen.get(stamp, 0) + 1
            if seen[stamp] == 2:                 # the first copy is "lost"
                pub.publish(SemanticOccupancyGrid(header=msg.header))

        node.create_subscription(Image, mb.image_topic("CAM_FRONT"), on_image, reliable_qos(10))
        node.create_subscription(SemanticOccupancyGrid, mb.GROUND_TRUTH_TOPIC,
                                 lambda m: gt_stamps.append(mb.stamp_to_ns(m.header.stamp)), reliable_qos(10))
        node.create_subscription(String, mb.DONE_TOPIC, done.append, latched_qos())
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        params = {"dataroot": str(tmp_path / "in"), "rate": 0.0, "wait_for_topic": OUTPUT, "wait_timeout_s": 10.0,
                  "resend_after_s": 0.5, "wait_for_subscribers": [mb.image_topic("CAM_FRONT"), mb.GROUND_TRUTH_TOPIC]}
        with rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "replay.log", params=params) as replay:
            ok = rh.spin_until(executor, lambda: bool(done) or replay.proc.poll() is not None, 30.0)
            assert ok and done, replay.output()
            rh.spin_until(executor, lambda: False, 0.2)
        executor.shutdown()
        node.destroy_node()
    summary = json.loads(done[0].data)
    assert summary["frames"] == n_frames and summary["wait_timeouts"] == 0
    assert summary["resends"] == n_frames and all(count == 2 for count in seen.values())
    assert gt_stamps == [T0 + k * PERIOD for k in range(n_frames)]
