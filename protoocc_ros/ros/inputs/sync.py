"""message_filters ApproximateTimeSynchronizer replacement (docs/architecture.md "ROS replacements").

Groups one message per input key into sets whose stamps lie within ``slop``. Pure Python: feed
``add(key, stamp_ns, msg)`` from any source (rclpy callbacks, a bag, a test). Unlike message_filters it
reports everything it drops, in two families, so that a set lost is counted once however many messages it had:

messages (MESSAGE_DROPS), one per message refused:
  ``unknown_key``   key not in the input list
  ``out_of_order``  stamp not newer than the previous message of the same key (a repeat, or late); also a stamp
                    far behind (see below) that the key's next message showed to be a stray stamp
  ``too_old``       stamp not newer than the newest set already emitted or given up
  ``unmatched``     more than slop away from the rest of its set (a camera late by more than the slop): its set
                    is counted once as ``incomplete_set``
sets (SET_DROPS), one per set lost:
  ``incomplete_set``    a pending set given up (a newer set completed first, the queue was full, time jumped
                        back); fragments of one set (disjoint keys, within half the set period) count once;
                        ``missing`` counts the keys absent from it
  ``out_of_order_set``  a set whose messages were refused as out_of_order / too_old (a repeated set, or one that
                        arrived after newer ones), counted once when more than half of the keys sent it
A stamp more than ``time_jump_s`` older than the previous one of its key is held as a possible backwards time
jump (a bag looping, a simulator restart): another key jumping back to the same time, or the same key going on
from there, confirms it (pending sets are given up, ``resets`` counts it, ``jumped_to_ns`` says where to, and the
held messages start the new timeline); the key going on with its old timeline shows it was one stray stamp.
"""
from __future__ import annotations

import itertools
import statistics
import threading
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SyncError", "SyncedSet", "ApproximateTimeSync", "MESSAGE_DROPS", "SET_DROPS",
    "DROP_UNKNOWN_KEY", "DROP_OUT_OF_ORDER", "DROP_TOO_OLD", "DROP_UNMATCHED", "DROP_INCOMPLETE",
    "DROP_OUT_OF_ORDER_SET", "RESET_TIME_JUMP",
]

DROP_UNKNOWN_KEY = "unknown_key"
DROP_OUT_OF_ORDER = "out_of_order"
DROP_TOO_OLD = "too_old"
DROP_UNMATCHED = "unmatched"
DROP_INCOMPLETE = "incomplete_set"
DROP_OUT_OF_ORDER_SET = "out_of_order_set"
RESET_TIME_JUMP = "time_jump_backwards"
MESSAGE_DROPS = frozenset({DROP_UNKNOWN_KEY, DROP_OUT_OF_ORDER, DROP_TOO_OLD, DROP_UNMATCHED})
SET_DROPS = frozenset({DROP_INCOMPLETE, DROP_OUT_OF_ORDER_SET})
LATE_GROUPS = 8  # recent refused-late stamps remembered to tell a late set from stray messages


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


@dataclass
class _LateGroup:
    """Messages refused as late whose stamps lie within slop: one set sent again or after newer ones."""

    stamps: dict[Hashable, int] = field(default_factory=dict)
    counted: bool = False


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
        self.jumped_to_ns: int | None = None  # where the last confirmed backwards jump went
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []  # ordered by creation = by time for in-order inputs
        self._last: dict[Hashable, int] = {}
        self._watermark: int | None = None
        self._held: dict[Hashable, tuple[int, Any]] = {}  # key -> (stamp, msg) far behind: a possible time jump
        self._late: deque[_LateGroup] = deque(maxlen=LATE_GROUPS)
        self._emitted_stamps: deque[int] = deque(maxlen=6)

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
        self._held.clear()
        self._late.clear()
        self._emitted_stamps.clear()

    def _drop(self, events: list[tuple[str, str]], reason: str, detail: str) -> None:
        self.drops[reason] += 1
        events.append((reason, detail))

    def _add_locked(self, key: Hashable, stamp: int, msg: Any, events: list[tuple[str, str]]) -> list[SyncedSet]:
        if key not in self.keys:
            self._drop(events, DROP_UNKNOWN_KEY, f"message for unknown input {str(key)[:80]!r}; inputs are "
                                                 f"{self.keys!r}")
            return []
        last = self._last.get(key)
        if last is not None and stamp < last - self.time_jump_ns:
            return self._far_behind(key, stamp, msg, events)
        if key in self._held:  # the key goes on with its old timeline: what it held was a stray stamp
            self._settle(key, events)
        if last is not None and stamp <= last:
            self._refuse_late(events, DROP_OUT_OF_ORDER, key, stamp, f"not after previous {last} ns")
            return []
        self._last[key] = stamp
        if self._watermark is not None and stamp <= self._watermark:
            self._refuse_late(events, DROP_TOO_OLD, key, stamp, f"not after the last set ({self._watermark} ns)")
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
            self._lose([self._pending[0]], events, "queue full")
        return done

    def _far_behind(self, key: Hashable, stamp: int, msg: Any, events: list[tuple[str, str]]) -> list[SyncedSet]:
        """A stamp more than time_jump_s behind its key: held until another message says jump or stray stamp."""
        same = self._held.get(key)
        along = {k: held for k, held in self._held.items() if abs(held[0] - stamp) <= self.time_jump_ns
                 and (k != key or held[0] < stamp)}
        if not along:
            if same is not None:
                self._settle(key, events)
            self._held[key] = (stamp, msg)
            return []
        newest = self._last[key]
        strays = [k for k in self._held if k not in along]
        for k in strays:
            self._settle(k, events)
        restart = sorted([(s, k, m) for k, (s, m) in along.items()] + [(stamp, key, msg)], key=lambda x: x[0])
        self.resets[RESET_TIME_JUMP] += 1
        events.append((RESET_TIME_JUMP, f"{str(key)!r}: stamp jumped back {(newest - stamp) / 1e9:.3f} s "
                                        f"(confirmed by {sorted(str(k) for k in along)}); sync reset"))
        self._lose(list(self._pending), events, "time jumped back")
        self._clear()
        self.jumped_to_ns = restart[0][0]
        done: list[SyncedSet] = []
        for s, k, m in restart:
            done += self._add_locked(k, s, m, events)
        return done

    def _settle(self, key: Hashable, events: list[tuple[str, str]]) -> None:
        stamp, _ = self._held.pop(key)
        last = self._last.get(key)
        behind = f", {(last - stamp) / 1e9:.3f} s behind its previous" if last is not None else ""
        self._refuse_late(events, DROP_OUT_OF_ORDER, key, stamp,
                          f"far behind{behind}, and no other input jumped back with it (a stray stamp)")

    def _refuse_late(self, events: list[tuple[str, str]], reason: str, key: Hashable, stamp: int, why: str) -> None:
        """Count one late message, and its set once when more than half of the keys sent that set late."""
        self._drop(events, reason, f"{str(key)!r}: stamp {stamp} ns {why}")
        group = next((g for g in self._late if key not in g.stamps
                      and max(*g.stamps.values(), stamp) - min(*g.stamps.values(), stamp) <= self.slop_ns), None)
        if group is None:
            group = _LateGroup()
            self._late.append(group)
        group.stamps[key] = stamp
        if not group.counted and 2 * len(group.stamps) > len(self.keys):
            group.counted = True
            self._drop(events, DROP_OUT_OF_ORDER_SET, f"set at {min(group.stamps.values())} ns came again or after "
                                                      f"newer sets ({len(group.stamps)} of {len(self.keys)} inputs)")

    def _closest_compatible(self, key: Hashable, stamp: int) -> _Pending | None:
        fits = [p for p in self._pending if key not in p.messages and p.spread_with(stamp) <= self.slop_ns]
        return min(fits, key=lambda p: abs(p.centre() - stamp), default=None)

    def _half_period_ns(self) -> float | None:
        stamps = list(self._emitted_stamps)
        gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
        return statistics.median(gaps) / 2 if gaps else None

    def _lose(self, lost: list[_Pending], events: list[tuple[str, str]], why: str) -> None:
        """Give up pending sets: one incomplete_set per set, fragments of one set merged (their messages unmatched)."""
        for pending in lost:
            self._pending.remove(pending)
            self._advance(max(pending.stamps.values()))
        half = self._half_period_ns()
        clusters: list[list[_Pending]] = []
        for pending in sorted(lost, key=lambda p: p.centre()):
            last = clusters[-1] if clusters else None
            if last is not None and not any(k in p.messages for p in last for k in pending.messages) and (
                    half is None or abs(pending.centre() - last[0].centre()) <= half):
                last.append(pending)
            else:
                clusters.append([pending])
        for cluster in clusters:
            base = max(cluster, key=lambda p: len(p.messages))
            lacking = [k for k in self.keys if k not in base.messages]
            self.missing.update(lacking)
            for fragment in (p for p in cluster if p is not base):
                for k, s in fragment.stamps.items():
                    self._drop(events, DROP_UNMATCHED, f"{str(k)!r}: stamp {s} ns more than the slop "
                                                       f"({self.slop_ns / 1e9:g} s) from the rest of its set")
            self._drop(events, DROP_INCOMPLETE,
                       f"set at {min(base.stamps.values())} ns missing {lacking!r} ({why})")

    def _emit(self, complete: _Pending, events: list[tuple[str, str]]) -> SyncedSet:
        start = min(complete.stamps.values())
        self._lose([p for p in self._pending if p is not complete and min(p.stamps.values()) < start], events,
                   "a newer set completed first")
        self._pending.remove(complete)
        self._advance(max(complete.stamps.values()))
        self.emitted += 1
        ordered = {k: complete.messages[k] for k in self.keys}
        stamps = {k: complete.stamps[k] for k in self.keys}
        self._emitted_stamps.append(stamps[self.keys[0]])
        return SyncedSet(stamp_ns=stamps[self.keys[0]], messages=ordered, stamps_ns=stamps)

    def _advance(self, stamp: int) -> None:
        self._watermark = stamp if self._watermark is None else max(self._watermark, stamp)
