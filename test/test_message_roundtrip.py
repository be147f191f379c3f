"""SemanticOccupancyGrid crosses a process boundary over real DDS intact (200×200×16 with confidence)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import rclpy  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from protoocc_ros.msg import SemanticOccupancyGrid  # noqa: E402


def _private_domain_env() -> dict[str, str]:
    env = os.environ.copy()
    env["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)
    return env


def test_grid_with_confidence_roundtrips_between_processes() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 18, size=(200, 200, 16), dtype=np.uint8)
    confidence = rng.integers(0, 256, size=(200, 200, 16), dtype=np.uint8)
    env = _private_domain_env()
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    topic = "/test_roundtrip/occupancy"
    echo = subprocess.Popen([sys.executable, "-m", "protoocc_ros.tools.grid_echo", topic, "--timeout", "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    rclpy.init()
    node = rclpy.create_node("roundtrip_publisher")
    pub = node.create_publisher(SemanticOccupancyGrid, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    msg = SemanticOccupancyGrid()
    msg.header.frame_id = "base_link"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = -40.0, -40.0, -1.0
    msg.origin.orientation.w = 1.0
    msg.voxel_size = 0.4
    msg.size_x, msg.size_y, msg.size_z = labels.shape
    msg.class_names = [f"class_{i}" for i in range(18)]
    msg.free_label = 17
    msg.labels = labels.tobytes()
    msg.confidence = confidence.tobytes()
    try:
        deadline = time.monotonic() + 45
        while echo.poll() is None and time.monotonic() < deadline:
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.2)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if echo.poll() is None:
            echo.kill()
    out, err = echo.communicate(timeout=10)
    assert echo.returncode == 0, err
    got = json.loads(out.strip().splitlines()[0])
    assert got["size"] == [200, 200, 16]
    assert got["labels_sha256"] == hashlib.sha256(labels.tobytes()).hexdigest()
    assert got["confidence_sha256"] == hashlib.sha256(confidence.tobytes()).hexdigest()
    assert got["class_names"] == msg.class_names
    assert got["stamp_ns"] == 12 * 1_000_000_000 + 345
    assert got["origin"] == [-40.0, -40.0, -1.0]
    assert got["voxel_size"] == pytest.approx(0.4)
    assert SemanticOccupancyGrid.UNKNOWN_LABEL == 255
