"""/diagnostics of occupancy_node (design §5): input rates, per-stage latency, drops and memory resets by reason.

Also a per-reason log throttle: the first occurrence of a reason is logged at once, then at most one
line per ``period_s`` that says how many were suppressed in between.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["NodeDiagnostics", "ThrottledLog", "RateMeter", "status_values"]


class RateMeter:
    """Events per second over a sliding window (monotonic clock)."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._times: deque[float] = deque()
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        self._times.append(self.clock())

    def rate(self) -> float:
        now = self.clock()
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


class ThrottledLog:
    """Decides which log lines to write: at most one per ``period_s`` per key.

    ``line = throttle(key, text)`` returns the text to log (with the number suppressed since the last
    line of that key) or None; the caller logs it, so each rclpy call site keeps one severity.
    """

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, key: str, text: str) -> str | None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] += 1
                return None
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
        return text + (f" ({skipped} more like this since the last message)" if skipped else "")


def _kv(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(k), value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]


def status_values(msg: DiagnosticArray, name: str) -> dict[str, str]:
    """Key/values of the status called ``name`` in a DiagnosticArray ({} when absent)."""
    for status in msg.status:
        if status.name == name:
            return {kv.key: kv.value for kv in status.values}
    return {}


class NodeDiagnostics:
    """Counters of one node, turned into a DiagnosticArray by ``to_msg``. Thread-safe.

    Statuses (name = "<node>: <part>"): inputs (msg/s per input), latency (ms per stage: last, mean,
    max since start), dropped (count per reason), memory resets (count per reason), output (sets published).
    """

    def __init__(self, node_name: str, hardware_id: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.node_name = node_name
        self.hardware_id = hardware_id
        self.clock = clock
        self.inputs: dict[str, RateMeter] = {}
        self.output = RateMeter(clock=clock)
        self.drops: Counter[str] = Counter()
        self.resets: Counter[str] = Counter()
        self._latency: dict[str, list[float]] = {}  # stage -> [last, sum, count, max] (s)
        self._drops_reported: Counter[str] = Counter()
        self._lock = threading.Lock()

    def tick_input(self, name: str) -> None:
        with self._lock:
            self.inputs.setdefault(name, RateMeter(clock=self.clock)).tick()

    def tick_output(self) -> None:
        with self._lock:
            self.output.tick()

    def latency(self, stage: str, seconds: float) -> None:
        with self._lock:
            entry = self._latency.setdefault(stage, [0.0, 0.0, 0, 0.0])
            entry[0] = seconds
            entry[1] += seconds
            entry[2] += 1
            entry[3] = max(entry[3], seconds)

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.drops[reason] += n

    def reset(self, reason: str) -> None:
        with self._lock:
            self.resets[reason] += 1

    def _status(self, part: str, level: int, message: str, values: dict[str, Any]) -> DiagnosticStatus:
        return DiagnosticStatus(level=level, name=f"{self.node_name}: {part}", message=message,
                                hardware_id=self.hardware_id, values=_kv(values))

    def to_msg(self, stamp: Any = None) -> DiagnosticArray:
        """DiagnosticArray of the current counters; 'dropped' is WARN when drops happened since the last call."""
        with self._lock:
            rates = {name: meter.rate() for name, meter in sorted(self.inputs.items())}
            latency = {}
            for stage, (last, total, count, peak) in self._latency.items():
                latency[f"{stage}.last_ms"] = 1e3 * last
                latency[f"{stage}.mean_ms"] = 1e3 * total / max(count, 1)
                latency[f"{stage}.max_ms"] = 1e3 * peak
            drops = dict(sorted(self.drops.items()))
            new_drops = {k: v - self._drops_reported[k] for k, v in drops.items() if v > self._drops_reported[k]}
            self._drops_reported = Counter(drops)
            resets = dict(sorted(self.resets.items()))
            published = {"sets_published": self.output.count, "rate_hz": self.output.rate()}
        ok, warn = DiagnosticStatus.OK, DiagnosticStatus.WARN
        stale = [name for name, rate in rates.items() if rate == 0.0]
        array = DiagnosticArray()
        if stamp is not None:
            array.header.stamp = stamp
        array.status = [
            self._status("inputs", warn if stale or not rates else ok,
                         f"no recent messages on {stale}" if stale else "receiving", rates),
            self._status("latency", ok, "per stage", latency),
            self._status("dropped", warn if new_drops else ok,
                         f"new drops: {new_drops}" if new_drops else "no new drops", drops),
            self._status("memory resets", ok, "temporal memory resets by reason", resets),
            self._status("output", ok, "occupancy sets published", published),
        ]
        return array
