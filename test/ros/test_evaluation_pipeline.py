"""The README pipeline as three processes: replay_node (conftest's tiny synthetic sample, consumer-paced,
recording) -> occupancy_node (demo config) -> evaluation_node; replay and evaluation exit by themselves when done."""
from __future__ import annotations

import json
import time
from pathlib import Path

import ros_helpers as rh
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io


def test_replay_occupancy_evaluation_run_to_completion(tmp_path: Path, synthetic_dataroot: Path) -> None:
    frames = 2
    occupancy = rh.NodeProcess("protoocc_ros.ros.nodes.occupancy_node", tmp_path / "occupancy.log",
                               params={"config_file": "demo", "device": "cpu", "use_sim_time": True})
    evaluation = rh.NodeProcess("protoocc_ros.ros.nodes.evaluation_node", tmp_path / "evaluation.log",
                                params={"output_dir": str(tmp_path / "eval")})
    replay = rh.NodeProcess("protoocc_ros.ros.nodes.replay_node", tmp_path / "replay.log", params={
        "dataroot": str(synthetic_dataroot), "rate": 0.0, "max_frames": frames, "wait_for_topic": mb.PREDICTION_TOPIC,
        "wait_timeout_s": 30.0, "resend_after_s": 3.0,
        "wait_for_subscribers": [mb.image_topic("CAM_FRONT"), mb.GROUND_TRUTH_TOPIC],
        "wait_for_topic_subscriptions": 2, "startup_settle_s": 1.0,  # as config/replay_demo.yaml: the evaluator too
        "record_path": str(tmp_path / "bag"), "record_storage": "mcap"})
    try:
        deadline = time.monotonic() + 90.0
        while replay.proc.poll() is None and occupancy.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert occupancy.proc.poll() is None, f"occupancy_node exited early:\n{occupancy.output()}"
        assert replay.wait(1.0) == 0, replay.output()
        assert evaluation.wait(30.0) == 0, evaluation.output()
    finally:
        for node in (replay, evaluation, occupancy):
            node.stop()
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["counts"]["paired"] == frames and report["stop_reason"] == "all ground truth of the replay paired"
    assert report["replay"]["wait_timeouts"] == 0
    assert 0.0 <= report["results"]["miou"] <= 1.0
    assert (tmp_path / "eval" / "bev_prediction_vs_ground_truth.png").is_file()
    recorded = [r for r in bag_io.read_bag(tmp_path / "bag") if r.topic == mb.PREDICTION_TOPIC]
    stamps = [mb.stamp_to_ns(bag_io.deserialize(r).header.stamp) for r in recorded]
    assert stamps == [f["stamp_ns"] for f in report["frames"]] and len(stamps) == frames
