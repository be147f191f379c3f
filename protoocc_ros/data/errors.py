"""The data area's single error type (docs/architecture.md "Data"): raised for any bad dataset file, array or image."""
from __future__ import annotations


class DatasetError(Exception):
    """A dataset file is missing or holds something other than expected; the message names the file and why."""
