"""Replay: datasets and rosbag2 recordings -> per-frame message bundles for replay_node (docs/operating.md
"Replaying a bag").

types.py (the bundle, its messages, the source protocol and error, header stamps of CDR bytes: shared by both
sources); sources.py (Occ3D-nuScenes / SemanticKITTI datasets, detect_format, open_source); bag_source.py (a bag
grouped into camera sets by header stamp); bag_io.py (rosbag2_py's reader/writer, with ``rosbags``).
"""
