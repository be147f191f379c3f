"""Error type of the training area (checkpoints, training/evaluation set-up; docs/architecture.md "Checkpoints")."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit the model/config; the message names the file and key."""


class TrainingError(RuntimeError):
    """Training or evaluation cannot run as configured; the message names the setting and what was expected."""
