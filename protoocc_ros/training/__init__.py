"""Training of ProtoOcc (paper Sec. 4.1; docs/architecture.md "Training"): the trainer over sequential clips, clip
sampling, LR schedule, batching, the training-sample loader, SEEDS pseudo masks, DDP. The checkpoint format is
protoocc_ros.checkpoints, evaluation protoocc_ros.evaluation, the protoocc-train CLI protoocc_ros.tools.train."""
from __future__ import annotations

from protoocc_ros.training.errors import TrainingError

__all__ = ["TrainingError"]
