"""The metrics area's single error type: mismatched shapes, labels out of range, incompatible merges."""
from __future__ import annotations


class MetricError(ValueError):
    """Bad input to a metric; the message names the array or value and what was expected."""
