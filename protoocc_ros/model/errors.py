"""Error type of the model area (checkpoint loading, input shapes, inconsistent configs)."""
from __future__ import annotations


class ModelError(ValueError):
    """A model input, weight file or setting is invalid; the message names what and what was expected."""
