"""protoocc-grid-echo: subscribe to a SemanticOccupancyGrid topic and print one JSON summary per message.

Like ``ros2 topic echo`` but readable for 640k-voxel grids: shape, voxel size, origin, per-label counts
and a SHA-256 of the label and confidence arrays (so two processes can prove they saw the same grid).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import numpy as np


def summarize_grid(msg: Any) -> dict[str, Any]:
    """JSON-able summary of a protoocc_ros/SemanticOccupancyGrid message."""
    labels = np.asarray(msg.labels, dtype=np.uint8)
    confidence = np.asarray(msg.confidence, dtype=np.uint8)
    values, counts = np.unique(labels, return_counts=True)
    return {
        "frame_id": msg.header.frame_id,
        "stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
        "size": [int(msg.size_x), int(msg.size_y), int(msg.size_z)],
        "voxel_size": float(msg.voxel_size),
        "origin": [msg.origin.position.x, msg.origin.position.y, msg.origin.position.z],
        "free_label": int(msg.free_label),
        "class_names": list(msg.class_names),
        "label_counts": {int(v): int(c) for v, c in zip(values, counts)},
        "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
        "confidence_sha256": hashlib.sha256(confidence.tobytes()).hexdigest() if confidence.size else "",
        "num_voxels": int(labels.size),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="protoocc-grid-echo", description=__doc__)
    parser.add_argument("topic", help="SemanticOccupancyGrid topic, e.g. /occupancy_node/occupancy")
    parser.add_argument("--count", type=int, default=1, help="exit after this many messages (0 = forever)")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds (exit 1)")
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from protoocc_ros.msg import SemanticOccupancyGrid

    rclpy.init()
    node = rclpy.create_node("protoocc_grid_echo")
    received: list[dict[str, Any]] = []

    def on_grid(msg: SemanticOccupancyGrid) -> None:
        summary = summarize_grid(msg)
        received.append(summary)
        print(json.dumps(summary), flush=True)

    node.create_subscription(SemanticOccupancyGrid, args.topic, on_grid,
                             QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    deadline = time.monotonic() + args.timeout
    try:
        while rclpy.ok() and (args.count == 0 or len(received) < args.count):
            if time.monotonic() > deadline:
                print(f"protoocc-grid-echo: no {args.count} message(s) on {args.topic} within {args.timeout} s",
                      file=sys.stderr)
                return 1
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
