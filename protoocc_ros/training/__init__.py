"""Training and evaluation of ProtoOcc (paper Sec. 4.1; docs/architecture.md "Training"): checkpoints,
sequential-clip training, evaluation."""
from __future__ import annotations

from protoocc_ros.training.checkpoint import load_checkpoint, save_checkpoint
from protoocc_ros.training.errors import CheckpointError, TrainingError

__all__ = ["CheckpointError", "TrainingError", "load_checkpoint", "save_checkpoint"]
