"""ROS 2 layer of protoocc_ros (docs/architecture.md "ROS interfaces"): nodes plus small replacements for cv_bridge,
message_filters, tf2_ros and sensor_msgs_py, which have no wheel on the package index.

Modules here import rclpy / message packages; nothing outside ``protoocc_ros.ros`` does.
"""
from protoocc_ros.ros.typesupport import preload as _preload_message_libraries

_preload_message_libraries()  # console scripts and `python -m` work without sourcing an environment
