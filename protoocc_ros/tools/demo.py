"""protoocc-demo: the README's main job.

Foundation stage: publishes one 200×200×16 SemanticOccupancyGrid (with confidence) over real DDS and
reads it back in a second process (protoocc-grid-echo), checking that every voxel arrived. It becomes
the full replay → occupancy_node → evaluation_node pipeline once those nodes land.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _demo_grid(shape: tuple[int, int, int] = (200, 200, 16)) -> tuple[np.ndarray, np.ndarray]:
    """A simple street: road slab, sidewalks, a building row and a car; everything else free (17)."""
    labels = np.full(shape, 17, dtype=np.uint8)
    labels[:, 80:120, 0:2] = 11          # driveable surface
    labels[:, 70:80, 0:3] = 13           # sidewalk
    labels[:, 120:130, 0:3] = 13
    labels[:, 40:70, 0:12] = 15          # manmade
    labels[95:106, 90:96, 2:6] = 4       # car
    confidence = np.where(labels == 17, 0.6, 0.9).astype(np.float32)
    return labels, confidence


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protoocc-demo", description=__doc__)
    parser.add_argument("--output-dir", default="outputs/demo", help="where results are written")
    args = parser.parse_args(argv)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from protoocc_ros.msg import SemanticOccupancyGrid

    topic = "/protoocc_demo/occupancy"
    echo = subprocess.Popen([sys.executable, "-m", "protoocc_ros.tools.grid_echo", topic, "--timeout", "60"],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    labels, confidence = _demo_grid()
    rclpy.init()
    node = rclpy.create_node("protoocc_demo")
    pub = node.create_publisher(SemanticOccupancyGrid, topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    msg = SemanticOccupancyGrid()
    msg.header.frame_id = "base_link"
    msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = -40.0, -40.0, -1.0
    msg.origin.orientation.w = 1.0
    msg.voxel_size = 0.4
    msg.size_x, msg.size_y, msg.size_z = labels.shape
    msg.free_label = 17
    msg.labels = labels.tobytes()
    msg.confidence = np.round(confidence * 255).astype(np.uint8).tobytes()
    try:
        while echo.poll() is None:
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.2)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    line = (echo.stdout.read() if echo.stdout else "").strip().splitlines()
    if echo.returncode != 0 or not line:
        print("protoocc-demo: the listener process received nothing", file=sys.stderr)
        return 1
    summary = json.loads(line[0])
    ok = summary["labels_sha256"] == hashlib.sha256(labels.tobytes()).hexdigest()
    (out_dir / "grid_roundtrip.json").write_text(json.dumps(summary, indent=2))
    print(f"protoocc-demo: {summary['num_voxels']} voxels sent and received intact: {ok}; "
          f"summary written to {out_dir / 'grid_roundtrip.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
