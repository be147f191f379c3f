"""Error type of the checkpoint format (docs/architecture.md "Checkpoints")."""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit the model/config; the message names the file and key."""
