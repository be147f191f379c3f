"""/diagnostics of occupancy_node (docs/architecture.md "ROS interfaces"): input rates, per-stage latency, drops and
memory resets by reason.

Drops come in two families, each counted once per thing lost: ``dropped`` counts camera sets that were not
published (by the reason the set was lost), ``dropped messages`` counts input messages refused on their own
(a camera image, CameraInfo or TF message: bad stamp, encoding, size, calibration, transform). A bad image
costs one of each; a repeated 6-camera set costs six messages and one set; a camera missing from a set costs
one set and no message.

Health levels (the numbers are in each status's key/values; limits in :class:`HealthLimits`, from the
node's ``diagnostics.*`` parameters): OK; WARN when a camera's input rate is below the expected rate,
the recent mean latency is above the budget, or a camera was missing from recent sets; ERROR when the
ego pose in TF is older than the newest image by more than the limit, the last inference failed, or
the last lifecycle transition failed. While the node is not active the input checks are off.

Also a per-reason log throttle: the first occurrence of a reason is logged at once, then at most one
line per ``period_s`` that says how many were suppressed in between.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["NodeDiagnostics", "HealthLimits", "ThrottledLog", "RateMeter", "status_values", "status_level"]


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


def status_level(msg: DiagnosticArray, name: str) -> int | None:
    """Level of the status called ``name`` as an int (0 OK, 1 WARN, 2 ERROR, 3 STALE); None when absent."""
    for status in msg.status:
        if status.name == name:
            return status.level[0] if isinstance(status.level, bytes) else int(status.level)
    return None


def status_values(msg: DiagnosticArray, name: str) -> dict[str, str]:
    """Key/values of the status called ``name`` in a DiagnosticArray ({} when absent)."""
    for status in msg.status:
        if status.name == name:
            return {kv.key: kv.value for kv in status.values}
    return {}


@dataclass
class HealthLimits:
    """When a status leaves OK; 0 turns a check off."""

    window_s: float = 5.0            # "recent": rates, mean latency, cameras missing from sets
    expected_rate_hz: float = 0.0    # WARN: a camera image input slower than this
    latency_budget_ms: float = 0.0   # WARN: recent mean total latency above this
    tf_stale_error_s: float = 0.0    # ERROR: newest ego pose older than the newest image by more than this


QUIET_DROPS = frozenset({"rate_limited"})  # dropped on purpose (max_rate_hz): counted, never a WARN
_OK, _WARN, _ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR  # bytes, as in the msg


class NodeDiagnostics:
    """Counters of one node, turned into a DiagnosticArray by ``to_msg``. Thread-safe.

    Statuses (name = "<node>: <part>"): lifecycle (state, last transition error), inputs (msg/s per input,
    cameras missing from recent sets), latency (ms per stage: last, mean, max since start; recent mean vs
    budget), tf (ego pose age), model (inference failures, warm-up time), dropped (sets, count per reason),
    dropped messages (input messages, count per reason), memory resets (count per reason), output (sets published).
    """

    def __init__(self, node_name: str, hardware_id: str = "", clock: Callable[[], float] = time.monotonic,
                 limits: HealthLimits | None = None, cameras: list[str] | None = None) -> None:
        self.node_name = node_name
        self.hardware_id = hardware_id
        self.clock = clock
        self.limits = limits or HealthLimits()
        self.cameras = list(cameras or [])  # image inputs checked against expected_rate_hz ([] = none)
        self.state = "active"               # lifecycle state label; input checks only when 'active'
        self.transition_error = ""          # reason of the last failed transition ('' = none)
        self.inputs: dict[str, RateMeter] = {}
        self.output = RateMeter(clock=clock)
        self.drops: Counter[str] = Counter()          # camera sets not published, by reason
        self.message_drops: Counter[str] = Counter()  # input messages refused, by reason
        self.resets: Counter[str] = Counter()
        self._latency: dict[str, list[float]] = {}  # stage -> [last, sum, count, max] (s)
        self._recent_total: deque[tuple[float, float]] = deque()  # (time, total latency s)
        self._missing: deque[tuple[float, str]] = deque()          # (time, camera missing from a set)
        self._newest_image_ns: int | None = None
        self._newest_pose_ns: int | None = None
        self._tf_frames: tuple[int, int] | None = None  # (child frames in the TF tree, limit)
        self.model_failures = 0
        self.model_error = ""   # message of the last inference failure; '' after a success
        self.warmup_ms: float | None = None
        self._drops_reported: Counter[str] = Counter()
        self._message_drops_reported: Counter[str] = Counter()
        self._lock = threading.Lock()

    def set_limits(self, limits: HealthLimits) -> None:
        with self._lock:
            self.limits = limits
            for meter in (*self.inputs.values(), self.output):
                meter.window_s = limits.window_s

    def tick_input(self, name: str, stamp_ns: int | None = None) -> None:
        """One message on input ``name``; ``stamp_ns`` = its header stamp for images (TF age reference)."""
        with self._lock:
            self.inputs.setdefault(name, RateMeter(self.limits.window_s, clock=self.clock)).tick()
            if stamp_ns is not None:
                self._newest_image_ns = stamp_ns if self._newest_image_ns is None else max(self._newest_image_ns,
                                                                                          stamp_ns)

    def ego_pose(self, stamp_ns: int) -> None:
        """An ego pose (odom -> base_link) with this stamp arrived in TF."""
        with self._lock:
            self._newest_pose_ns = stamp_ns if self._newest_pose_ns is None else max(self._newest_pose_ns, stamp_ns)

    def tf_tree(self, frames: int, limit: int) -> None:
        """The TF tree holds ``frames`` child frames (limit ``limit``)."""
        with self._lock:
            self._tf_frames = (frames, limit)

    def restart_stamps(self) -> None:
        """Forget the newest image / pose stamps (after a backwards time jump, a new activation)."""
        with self._lock:
            self._newest_image_ns = self._newest_pose_ns = None

    def camera_missing(self, camera: str, n: int = 1) -> None:
        with self._lock:
            self._missing.extend([(self.clock(), camera)] * n)

    def model_failure(self, detail: str) -> None:
        with self._lock:
            self.model_failures += 1
            self.model_error = detail

    def model_ok(self) -> None:
        with self._lock:
            self.model_error = ""

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
            if stage == "total":
                self._recent_total.append((self.clock(), seconds))

    def drop(self, reason: str, n: int = 1) -> None:
        """``n`` camera sets lost for ``reason``."""
        with self._lock:
            self.drops[reason] += n

    def drop_message(self, reason: str, n: int = 1) -> None:
        """``n`` input messages (image, CameraInfo, TF) refused for ``reason``."""
        with self._lock:
            self.message_drops[reason] += n

    def reset(self, reason: str) -> None:
        with self._lock:
            self.resets[reason] += 1

    def _status(self, part: str, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticStatus:
        return DiagnosticStatus(level=level, name=f"{self.node_name}: {part}", message=message,
                                hardware_id=self.hardware_id, values=_kv(values))

    def _forget_old(self, now: float) -> None:
        for queue in (self._recent_total, self._missing):
            while queue and queue[0][0] < now - self.limits.window_s:
                queue.popleft()

    def _inputs_status(self, rates: dict[str, float], missing: Counter[str]) -> DiagnosticStatus:
        lim = self.limits
        values: dict[str, Any] = dict(rates)
        if self.state != "active":
            return self._status("inputs", _OK, f"not checked while {self.state}", values)
        problems = []
        stale = [name for name, rate in rates.items() if rate == 0.0]
        if stale or not rates:
            problems.append(f"no recent messages on {stale}" if stale else "no messages received yet")
        if lim.expected_rate_hz > 0:
            values["expected_rate_hz"] = lim.expected_rate_hz
            slow = {c: rates[c] for c in self.cameras if 0.0 < rates.get(c, 0.0) < lim.expected_rate_hz}
            if slow:
                problems.append("below the expected rate: " + ", ".join(f"{c} {r:.3g} Hz" for c, r in slow.items())
                                + f" < {lim.expected_rate_hz:g} Hz")
        values.update({f"missing_from_sets.{cam}": n for cam, n in sorted(missing.items())})
        if missing:
            problems.append(f"cameras missing from sets in the last {lim.window_s:g} s: "
                            f"{dict(sorted(missing.items()))}")
        return self._status("inputs", _WARN if problems else _OK, "; ".join(problems) or "receiving", values)

    def _latency_status(self, latency: dict[str, float], recent: list[float]) -> DiagnosticStatus:
        budget = self.limits.latency_budget_ms
        values = dict(latency)
        message, level = "per stage", _OK
        if recent:
            mean_ms = 1e3 * sum(recent) / len(recent)
            values.update({"recent.total_mean_ms": mean_ms, "recent.sets": len(recent)})
            if budget > 0 and mean_ms > budget:
                message, level = f"recent mean latency {mean_ms:.1f} ms above the budget of {budget:g} ms", _WARN
        if budget > 0:
            values["budget_ms"] = budget
        return self._status("latency", level, message, values)

    def _tf_status(self, image_ns: int | None, pose_ns: int | None,
                   frames: tuple[int, int] | None) -> DiagnosticStatus:
        limit = self.limits.tf_stale_error_s
        values: dict[str, Any] = {"limit_s": limit} if limit > 0 else {}
        if frames is not None:
            values.update({"frames": frames[0], "frames_limit": frames[1]})
        if self.state != "active" or image_ns is None:
            return self._status("tf", _OK, "waiting for images" if self.state == "active" else
                                f"not checked while {self.state}", values)
        if pose_ns is None:
            return self._status("tf", _ERROR if limit > 0 else _OK, "no ego pose received in TF", values)
        age = (image_ns - pose_ns) / 1e9
        values["ego_pose_age_s"] = age
        if limit > 0 and age > limit:
            return self._status("tf", _ERROR, f"ego pose is {age:.3g} s older than the newest image "
                                              f"(limit {limit:g} s): TF stale", values)
        return self._status("tf", _OK, "ego pose up to date", values)

    def to_msg(self, stamp: Any = None) -> DiagnosticArray:
        """DiagnosticArray of the current counters; 'dropped' is WARN when drops happened since the last call."""
        with self._lock:
            self._forget_old(self.clock())
            rates = {name: meter.rate() for name, meter in sorted(self.inputs.items())}
            latency = {}
            for stage, (last, total, count, peak) in self._latency.items():
                latency[f"{stage}.last_ms"] = 1e3 * last
                latency[f"{stage}.mean_ms"] = 1e3 * total / max(count, 1)
                latency[f"{stage}.max_ms"] = 1e3 * peak
            recent = [seconds for _, seconds in self._recent_total]
            missing = Counter(cam for _, cam in self._missing)
            image_ns, pose_ns, frames = self._newest_image_ns, self._newest_pose_ns, self._tf_frames
            drops = dict(sorted(self.drops.items()))
            new_drops = {k: v - self._drops_reported[k] for k, v in drops.items()
                         if v > self._drops_reported[k] and k not in QUIET_DROPS}
            self._drops_reported = Counter(drops)
            message_drops = dict(sorted(self.message_drops.items()))
            new_message_drops = {k: v - self._message_drops_reported[k] for k, v in message_drops.items()
                                 if v > self._message_drops_reported[k]}
            self._message_drops_reported = Counter(message_drops)
            resets = dict(sorted(self.resets.items()))
            published = {"sets_published": self.output.count, "rate_hz": self.output.rate()}
            model = {"failures": self.model_failures, **({"warmup_ms": self.warmup_ms} if self.warmup_ms else {}),
                     **({"last_error": self.model_error} if self.model_error else {})}
            model_error, state, transition_error = self.model_error, self.state, self.transition_error
        array = DiagnosticArray()
        if stamp is not None:
            array.header.stamp = stamp
        array.status = [
            self._status("lifecycle", _ERROR if transition_error else _OK,
                         f"{state}; last transition failed: {transition_error}" if transition_error else state,
                         {"state": state}),
            self._inputs_status(rates, missing),
            self._latency_status(latency, recent),
            self._tf_status(image_ns, pose_ns, frames),
            self._status("model", _ERROR if model_error else _OK,
                         f"inference failed: {model_error}" if model_error else "ok", model),
            self._status("dropped", _WARN if new_drops else _OK,
                         f"sets dropped since the last report: {new_drops}" if new_drops else "no new drops", drops),
            self._status("dropped messages", _WARN if new_message_drops else _OK,
                         f"input messages refused since the last report: {new_message_drops}" if new_message_drops
                         else "no new refusals", message_drops),
            self._status("memory resets", _OK, "temporal memory resets by reason", resets),
            self._status("output", _OK, "occupancy sets published", published),
        ]
        return array
