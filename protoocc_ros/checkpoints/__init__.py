"""The checkpoint format (docs/architecture.md "Checkpoints"): safetensors weights + JSON metadata, never pickle.

format.py saves, loads and checks checkpoints (metadata, stored config, architecture keys, the bundled default);
state_codec.py encodes nested training state (optimizer, scheduler, RNG) as tensors + a JSON skeleton;
errors.py holds CheckpointError. Used by training, inference, export, evaluation, the ROS nodes and the tools;
imports only the model, config and package_files.
"""
from __future__ import annotations

from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.checkpoints.format import default_checkpoint_path, load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "default_checkpoint_path", "load_checkpoint", "save_checkpoint"]
