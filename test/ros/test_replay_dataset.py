"""replay_node on the tiny synthetic sample of conftest (nuScenes+Occ3D and SemanticKITTI formats): a subscriber in
another process receives every frame with consistent /clock, /tf, /tf_static, CameraInfo, images and ground truth."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import ros_helpers as rh
from protoocc_ros.ros.publishing import msg_builders as mb

def _collect(tmp_path: Path, params: dict[str, Any], topics: dict[str, Any], frames: int,
             timeout_s: float = 30.0) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Run replay_node with `params`; collect `topics` ({topic: type}) until /replay/done came and every topic
    but /tf_static has `frames` messages (or the timeout); returns the messages and the done summary."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos

    with rh.ros_context() as context:
        node = Node("replay_listener", context=context)
        got = rh.Collector(node)
        for topic, msg_type in topics.items():
            # transient local: what replay sent before DDS matched this side still arrives (clock is volatile)
            got.listen(topic, msg_type, reliable_qos(100) if topic == "/clock" else latched_qos(100))
        got.listen(mb.DONE_TOPIC, String, latched_qos())
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        wait = [t for t in topics if t != "/tf_static"]
        with rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "replay.log",
                            params={"wait_for_subscribers": wait, **params}) as replay:
            complete = lambda: bool(got.of(mb.DONE_TOPIC)) and all(len(got.of(t)) >= frames for t in wait)
            rh.spin_until(executor, lambda: complete() or replay.proc.poll() not in (None, 0), timeout_s)
            assert got.of(mb.DONE_TOPIC), replay.output()
            rh.spin_until(executor, lambda: False, 0.2)    # anything beyond the expected count would show
            assert replay.wait(10.0) == 0, replay.output()
        executor.shutdown()
        node.destroy_node()
    return got.messages, json.loads(got.of(mb.DONE_TOPIC)[0].data)


def _matrix(transform: Any) -> np.ndarray:
    from protoocc_ros.geometry import quaternion_to_matrix

    r, t = transform.rotation, transform.translation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix([r.w, r.x, r.y, r.z])
    T[:3, 3] = [t.x, t.y, t.z]
    return T


def test_nuscenes_sample_arrives_complete_and_consistent(tmp_path: Path, synthetic_dataroot: Path) -> None:
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset
    from protoocc_ros.msg import SemanticOccupancyGrid
    from protoocc_ros.ros.inputs.image_conversion import image_to_rgb
    from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid

    dataset = Occ3DNuScenesDataset(synthetic_dataroot, "v1.0-mini", split="val")
    cams = list(dataset.cameras)
    topics: dict[str, Any] = {"/clock": Clock, "/tf": TFMessage, "/tf_static": TFMessage,
                              mb.GROUND_TRUTH_TOPIC: SemanticOccupancyGrid}
    for cam in cams:
        topics[mb.image_topic(cam)] = Image
        topics[mb.camera_info_topic(cam)] = CameraInfo
    # 4x real time: 0.5 s keyframe spacing -> 0.125 s per frame, well within what the listener keeps up with
    n = len(dataset)
    msgs, done = _collect(tmp_path, {"dataroot": str(synthetic_dataroot), "rate": 4.0}, topics, n)
    assert {t: len(m) for t, m in msgs.items()} == {t: 1 if t in ("/tf_static", mb.DONE_TOPIC) else n for t in msgs}
    assert done["frames"] == n and done["source"]["source"] == "occ3d_nuscenes"
    stamps = [mb.seconds_to_ns(f.timestamp) for f in dataset.frames]
    assert [mb.stamp_to_ns(c.clock) for c in msgs["/clock"]] == stamps
    assert [mb.stamp_to_ns(m.transforms[0].header.stamp) for m in msgs["/tf"]] == stamps
    assert [mb.stamp_to_ns(g.header.stamp) for g in msgs[mb.GROUND_TRUTH_TOPIC]] == stamps
    (static,) = msgs["/tf_static"]
    assert sorted(t.child_frame_id for t in static.transforms) == sorted(mb.optical_frame_id(c) for c in cams)
    for k in range(n):
        item = dataset[k]
        ego = msgs["/tf"][k].transforms[0]
        assert (ego.header.frame_id, ego.child_frame_id) == ("odom", "base_link")
        np.testing.assert_allclose(_matrix(ego.transform), item["ego2global"].numpy(), atol=1e-6)
        for i, cam in enumerate(cams):
            image, info = msgs[mb.image_topic(cam)][k], msgs[mb.camera_info_topic(cam)][k]
            assert mb.stamp_to_ns(image.header.stamp) == mb.stamp_to_ns(info.header.stamp) == stamps[k]
            assert image.header.frame_id == info.header.frame_id == mb.optical_frame_id(cam)
            np.testing.assert_array_equal(image_to_rgb(image), item["raw_images"][i])
            np.testing.assert_allclose(np.reshape(info.k, (3, 3)), item["intrinsics"][i].numpy(), rtol=1e-6)
            assert (info.width, info.height) == (item["raw_images"].shape[2], item["raw_images"].shape[1])
            tf_cam = next(t for t in static.transforms if t.child_frame_id == mb.optical_frame_id(cam))
            np.testing.assert_allclose(_matrix(tf_cam.transform), item["cam2ego"][i].numpy(), atol=1e-6)
        grid = msg_to_grid(msgs[mb.GROUND_TRUTH_TOPIC][k])
        sem, mask = item["semantics"].numpy(), item["mask_camera"].numpy()
        np.testing.assert_array_equal(grid.labels[mask], sem[mask])
        assert (grid.labels[~mask] == 255).all() and (~mask).any()
        np.testing.assert_allclose(grid.point_cloud_range, [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4], atol=1e-4)
        assert grid.free_label == 17 and grid.class_names[17] == "free"


def test_kitti_sequence_replays_with_image_2_and_ssc_ground_truth(tmp_path: Path, synthetic_dataroot: Path,
                                                                  synthetic_kitti_root: Path) -> None:
    from sensor_msgs.msg import CameraInfo, Image

    from protoocc_ros.data.semantic_kitti import SemanticKittiDataset
    from protoocc_ros.msg import SemanticOccupancyGrid
    from protoocc_ros.ros.publishing.occupancy_msg import msg_to_grid

    dataset = SemanticKittiDataset(synthetic_kitti_root, split="val")
    topics = {mb.image_topic("image_2"): Image, mb.camera_info_topic("image_2"): CameraInfo,
              mb.GROUND_TRUTH_TOPIC: SemanticOccupancyGrid}
    msgs, done = _collect(tmp_path, {"dataroot": str(synthetic_dataroot), "source_format": "semantic_kitti",
                                     "rate": 0.0}, topics, len(dataset))
    assert done["frames"] == len(dataset) == len(msgs[mb.GROUND_TRUTH_TOPIC]) == len(msgs[mb.image_topic("image_2")])
    stamps = [mb.stamp_to_ns(g.header.stamp) for g in msgs[mb.GROUND_TRUTH_TOPIC]]
    assert stamps == sorted(stamps) and stamps[0] > 0            # relative KITTI times moved off ROS time 0
    for k, msg in enumerate(msgs[mb.GROUND_TRUTH_TOPIC]):
        grid = msg_to_grid(msg)
        np.testing.assert_array_equal(grid.labels, dataset.load_targets(k))   # 255 = invalid already
        assert grid.labels.shape == (256, 256, 32) and grid.free_label == 0 and len(grid.class_names) == 20


def test_loop_with_max_frames_and_compressed_images(tmp_path: Path, synthetic_dataroot: Path) -> None:
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage

    from protoocc_ros.ros.inputs.image_conversion import compressed_to_rgb

    topics = {"/clock": Clock, mb.image_topic("CAM_FRONT", compressed=True): CompressedImage}
    msgs, done = _collect(tmp_path, {"dataroot": str(synthetic_dataroot), "rate": 0.0, "loop": True, "max_frames": 5,
                                     "image_format": "png", "cameras": ["CAM_FRONT"],
                                     "publish_ground_truth": False}, topics, 5)
    clocks = [mb.stamp_to_ns(c.clock) for c in msgs["/clock"]]
    assert done["frames"] == 5 and len(clocks) == 5
    assert clocks[3:] == clocks[:2]                            # second pass starts over
    images = msgs[mb.image_topic("CAM_FRONT", compressed=True)]
    assert len(images) == 5 and compressed_to_rgb(images[0]).shape == (90, 160, 3)


def test_missing_dataroot_fails_with_a_message_naming_it(tmp_path: Path) -> None:
    node = rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "r.log",
                          params={"dataroot": str(tmp_path / "nowhere")})
    code, output = rh.wait_exit(node, timeout_s=30.0)
    assert code == 2 and "nowhere" in output and "does not exist" in output


def test_replay_waits_for_the_expected_consumers_of_wait_for_topic(tmp_path: Path, synthetic_dataroot: Path) -> None:
    """wait_for_topic_subscriptions=2 with only the replay's own tap on the topic: it waits out startup_timeout_s
    and says which topic it still waits for, then starts; 0 is refused."""
    from protoocc_ros.msg import SemanticOccupancyGrid

    with rh.ros_context() as ctx:
        import rclpy

        node = rclpy.create_node("fake_consumer", context=ctx)
        node.create_publisher(SemanticOccupancyGrid, "/fake/output", 10)  # the topic exists, nobody else reads it
        replay = rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "r.log", params={
            "dataroot": str(synthetic_dataroot), "rate": 0.0, "max_frames": 1, "cameras": ["CAM_FRONT"],
            "publish_ground_truth": False, "wait_for_topic": "/fake/output", "wait_timeout_s": 0.5,
            "wait_for_topic_subscriptions": 2, "startup_timeout_s": 3.0})
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        rh.spin_until(executor, lambda: replay.proc.poll() is not None, 60.0)
        node.destroy_node()
    output = replay.output()
    assert replay.proc.returncode == 0, output
    assert "still waiting for ['/fake/output'] after 3.0 s" in output
    bad = rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "bad.log",
                         params={"dataroot": str(synthetic_dataroot), "wait_for_topic_subscriptions": 0})
    code, text = rh.wait_exit(bad, timeout_s=30.0)
    assert code == 2 and "wait_for_topic_subscriptions" in text
