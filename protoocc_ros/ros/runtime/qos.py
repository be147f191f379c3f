"""QoS profiles used by the nodes (docs/architecture.md "ROS interfaces": sensor QoS on inputs, reliable on the grid
output; tf2_ros QoS for TF)."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

__all__ = ["sensor_qos", "reliable_qos", "latched_qos", "tf_qos", "tf_static_qos"]


def sensor_qos(depth: int = 5) -> QoSProfile:
    """Best effort, volatile, keep last ``depth`` (rclpy's qos_profile_sensor_data); matches any publisher."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep last ``depth`` (outputs that must not be lost, e.g. the occupancy grid)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable + transient local: late subscribers get the last ``depth`` messages."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def tf_qos() -> QoSProfile:
    """tf2_ros DynamicListenerQoS: reliable, volatile, depth 100."""
    return reliable_qos(100)


def tf_static_qos() -> QoSProfile:
    """tf2_ros StaticListenerQoS: reliable, transient local, depth 100."""
    return latched_qos(100)
