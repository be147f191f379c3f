"""What occupancy_node publishes, and the message builders the nodes and replay share (docs/architecture.md
"ROS topics and frames").

occupancy_outputs.py (a set's outputs: grid, occupied-voxel cloud, markers, 2D navigation grid); occupancy_msg.py
(the one numpy <-> SemanticOccupancyGrid converter); msg_builders.py (headers, stamps, frame ids, topic names, TF
and CameraInfo messages); pointcloud.py (sensor_msgs_py.point_cloud2); markers.py (MarkerArray of the voxels);
navigation_grid.py ((X, Y) cells <-> nav_msgs/OccupancyGrid); foxglove_bridge.py (the Foxglove WebSocket server).
"""
