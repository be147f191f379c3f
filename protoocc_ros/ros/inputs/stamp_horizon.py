"""The newest stamp occupancy_node's inputs can carry now, against which a TF stamp is judged "ahead" (tf_buffer.py).

The stamp of the newest camera set, advanced by the node's clock since that set completed. The clock gives only
the elapsed time, never the reference itself: the node's clock may be the wall clock while a recording from
another year plays (no sim time), and a computer's clock may be off; the elapsed time is right in both cases (ROS
time: with sim time it follows /clock). Before the first set there is nothing to judge by (None). A confirmed
backwards time jump moves the reference to the new timeline.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["StampHorizon"]


class StampHorizon:
    """``horizon()`` = newest set stamp + (clock now - clock when that set completed), ns; None before any set.
    ``clock_ns`` is the node's clock (ROS time, int nanoseconds). Thread-safe."""

    def __init__(self, clock_ns: Callable[[], int]) -> None:
        self.clock_ns = clock_ns
        self._stamp_ns: int | None = None
        self._at_ns = 0
        self._lock = threading.Lock()

    def saw(self, stamp_ns: int) -> None:
        """A camera set stamped ``stamp_ns`` completed now (or time jumped back to there)."""
        now = self.clock_ns()
        with self._lock:
            self._stamp_ns, self._at_ns = int(stamp_ns), now

    def forget(self) -> None:
        with self._lock:
            self._stamp_ns = None

    def __call__(self) -> int | None:
        with self._lock:
            stamp, at = self._stamp_ns, self._at_ns
        if stamp is None:
            return None
        return stamp + max(0, self.clock_ns() - at)
