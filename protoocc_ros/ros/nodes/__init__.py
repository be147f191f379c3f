"""The three ROS 2 nodes and one typed parameter dataclass each (docs/architecture.md "ROS interfaces").

occupancy_node.py (the model: camera sets in, occupancy grid out; a managed node) with occupancy_params.py;
replay_node.py (datasets and rosbag2 recordings -> topics, /clock) with replay_params.py; evaluation_node.py
(predictions vs ground truth -> running mIoU, report at exit) with evaluation_params.py. Each node module has the
``main()`` of its console script and lib/protoocc_ros executable. The nodes use inputs/, publishing/, replay/ and
runtime/; nothing else in ros/ imports a node.
"""
