"""Evaluation of a checkpoint over a dataset split (docs/architecture.md "Evaluation"): evaluate.py runs every scene
through the node's OccupancyPredictor and scores it (Occ3D mIoU / SemanticKITTI SSC); protoocc-eval. An
application of inference/, above it and training/ (whose clip order it reuses); the ROS evaluation_node is
ros/nodes/evaluation_node.py."""
