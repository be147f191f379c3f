"""Error type of the training area (training and evaluation set-up; checkpoints raise
protoocc_ros.checkpoints.errors.CheckpointError)."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """Training or evaluation cannot run as configured; the message names the setting and what was expected."""
