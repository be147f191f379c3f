"""ROS 2 layer of protoocc_ros (docs/architecture.md "ROS interfaces"), one subpackage per concern:

  nodes/        the three nodes (occupancy_node, replay_node, evaluation_node) and their parameter dataclasses
  inputs/       what occupancy_node receives: sync, camera inputs, rectification, image conversion, TF buffer
  publishing/   what it publishes: grid message, cloud, markers, navigation grid, Foxglove bridge; message builders
  replay/       datasets and rosbag2 recordings -> message bundles; bag reading and writing
  runtime/      lifecycle, parameters, diagnostics, QoS, DDS profile, spinning, type support, inference worker

Imports point nodes -> replay -> inputs -> publishing -> runtime. inputs/, publishing/ and replay/ hold the small
replacements for cv_bridge, message_filters, tf2_ros, sensor_msgs_py, image_proc and rosbag2_py, which have no
wheel on the package index. Modules here import rclpy / message packages; nothing outside ``protoocc_ros.ros`` does.
"""
from protoocc_ros.ros.runtime.typesupport import preload as _preload_message_libraries

_preload_message_libraries()  # console scripts and `python -m` work without sourcing an environment
