"""message_filters ApproximateTimeSynchronizer replacement (docs/architecture.md "ROS replacements").

Groups one message per input key into sets whose stamps lie within ``slop``. Pure Python: feed
``add(key, stamp_ns, msg)`` from any source (rclpy callbacks, a bag, a test). Unlike
message_filters it reports every message or set it drops, by reason:

message-level  ``unknown_key``  key not in the input list
               ``out_of_order`` stamp not newer than the previous message of the same key
               ``too_old``      stamp not newer than the newest set already emitted or dropped
set-level      ``incomplete_set`` a pending set lost to a newer complete set or to the queue limit;
                                ``missing`` counts which keys it lacked
A stamp more than ``time_jump_s`` older than the previous one of its key is a backwards time jump
(a replayed bag looping, a simulator restart): all pending state is cleared, ``resets`` counts it and
the message starts afresh.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SyncError", "SyncedSet", "ApproximateTimeSync",
    "DROP_UNKNOWN_KEY", "DROP_OUT_OF_ORDER", "DROP_TOO_OLD", "DROP_INCOMPLETE", "RESET_TIME_JUMP",
]

DROP_UNKNOWN_KEY = "unknown_key"
DROP_OUT_OF_ORDER = "out_of_order"
DROP_TOO_OLD = "too_old"
DROP_INCOMPLETE = "incomplete_set"
RESET_TIME_JUMP = "time_jump_backwards"


class SyncError(ValueError):
    """Invalid synchronizer configuration (message names the argument and its value)."""


@dataclass
class SyncedSet:
    """One message per key; ``stamp_ns`` is the stamp of the reference (first) key."""

    stamp_ns: int
    messages: dict[Hashable, Any]
    stamps_ns: dict[Hashable, int]


@dataclass
class _Pending:
    messages: dict[Hashable, Any] = field(default_factory=dict)
    stamps: dict[Hashable, int] = field(default_factory=dict)

    def spread_with(self, stamp_ns: int) -> int:
        values = [*self.stamps.values(), stamp_ns]
        return max(values) - min(values)

    def centre(self) -> float:
        return sum(self.stamps.values()) / len(self.stamps)


DropCallback = Callable[[str, str], None]  # (reason, human-readable detail)


class ApproximateTimeSync:
    """Approximate-time synchronizer over ``keys`` (e.g. camera names).

    slop_s: the largest stamp spread inside one set (s). queue_size: pending (incomplete) sets kept.
    callback(SyncedSet) is called for each complete set; on_drop(reason, detail) for each drop/reset.
    Thread-safe; callbacks run outside the internal lock.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        slop_s: float,
        queue_size: int = 10,
        time_jump_s: float = 1.0,
        callback: Callable[[SyncedSet], None] | None = None,
        on_drop: DropCallback | None = None,
    ) -> None:
        if not keys or len(set(keys)) != len(keys):
            raise SyncError(f"keys must be a non-empty list of distinct names, got {list(keys)!r}")
        if not slop_s >= 0.0:
            raise SyncError(f"slop_s must be >= 0 seconds, got {slop_s!r}")
        if queue_size < 1:
            raise SyncError(f"queue_size must be >= 1, got {queue_size!r}")
        if not time_jump_s > 0.0:
            raise SyncError(f"time_jump_s must be > 0 seconds, got {time_jump_s!r}")
        self.keys = list(keys)
        self.slop_ns = round(slop_s * 1e9)
        self.queue_size = int(queue_size)
        self.time_jump_ns = round(time_jump_s * 1e9)
        self.callback = callback
        self.on_drop = on_drop
        self.drops: Counter[str] = Counter()
        self.missing: Counter[Hashable] = Counter()
        self.resets: Counter[str] = Counter()
        self.emitted = 0
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []  # ordered by creation = by time for in-order inputs
        self._last: dict[Hashable, int] = {}
        self._watermark: int | None = None

    # -- public ---------------------------------------------------------------------------------
    def add(self, key: Hashable, stamp_ns: int, msg: Any) -> list[SyncedSet]:
        """Add one message; returns the sets it completed (also passed to ``callback``)."""
        events: list[tuple[str, str]] = []
        with self._lock:
            done = self._add_locked(key, int(stamp_ns), msg, events)
        for reason, detail in events:
            if self.on_drop is not None:
                self.on_drop(reason, detail)
        for synced in done:
            if self.callback is not None:
                self.callback(synced)
        return done

    def reset(self) -> None:
        """Forget pending sets and stamp history (counters are kept)."""
        with self._lock:
            self._clear()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- internals ------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._pending.clear()
        self._last.clear()
        self._watermark = None

    def _drop(self, events: list[tuple[str, str]], reason: str, detail: str) -> None:
        self.drops[reason] += 1
        events.append((reason, detail))

    def _add_locked(self, key: Hashable, stamp: int, msg: Any, events: list[tuple[str, str]]) -> list[SyncedSet]:
        if key not in self.keys:
            self._drop(events, DROP_UNKNOWN_KEY, f"message for unknown input {key!r}; inputs are {self.keys!r}")
            return []
        last = self._last.get(key)
        if last is not None and stamp < last - self.time_jump_ns:
            self.resets[RESET_TIME_JUMP] += 1
            events.append((RESET_TIME_JUMP, f"{key!r}: stamp jumped back {(last - stamp) / 1e9:.3f} s; sync reset"))
            self._clear()
        elif last is not None and stamp <= last:
            self._drop(events, DROP_OUT_OF_ORDER, f"{key!r}: stamp {stamp} ns not after previous {last} ns")
            return []
        self._last[key] = stamp
        if self._watermark is not None and stamp <= self._watermark:
            self._drop(events, DROP_TOO_OLD, f"{key!r}: stamp {stamp} ns not after the last set ({self._watermark} ns)")
            return []
        target = self._closest_compatible(key, stamp)
        if target is None:
            target = _Pending()
            self._pending.append(target)
        target.messages[key] = msg
        target.stamps[key] = stamp
        done: list[SyncedSet] = []
        if len(target.messages) == len(self.keys):
            done.append(self._emit(target, events))
        while len(self._pending) > self.queue_size:
            self._discard(self._pending[0], events, "queue full")
        return done

    def _closest_compatible(self, key: Hashable, stamp: int) -> _Pending | None:
        fits = [p for p in self._pending if key not in p.messages and p.spread_with(stamp) <= self.slop_ns]
        return min(fits, key=lambda p: abs(p.centre() - stamp), default=None)

    def _discard(self, pending: _Pending, events: list[tuple[str, str]], why: str) -> None:
        self._pending.remove(pending)
        lacking = [k for k in self.keys if k not in pending.messages]
        self.missing.update(lacking)
        self._advance(max(pending.stamps.values()))
        self._drop(events, DROP_INCOMPLETE, f"set at {min(pending.stamps.values())} ns missing {lacking!r} ({why})")

    def _emit(self, complete: _Pending, events: list[tuple[str, str]]) -> SyncedSet:
        start = min(complete.stamps.values())
        for older in [p for p in self._pending if p is not complete and min(p.stamps.values()) < start]:
            self._discard(older, events, "a newer set completed first")
        self._pending.remove(complete)
        self._advance(max(complete.stamps.values()))
        self.emitted += 1
        ordered = {k: complete.messages[k] for k in self.keys}
        stamps = {k: complete.stamps[k] for k in self.keys}
        return SyncedSet(stamp_ns=stamps[self.keys[0]], messages=ordered, stamps_ns=stamps)

    def _advance(self, stamp: int) -> None:
        self._watermark = stamp if self._watermark is None else max(self._watermark, stamp)
