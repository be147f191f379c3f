"""The render area's single error type: an array or file that cannot be drawn, named with what was expected."""
from __future__ import annotations


class RenderError(ValueError):
    """Bad input to a render; the message names the array / file and what was expected."""
