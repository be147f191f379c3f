"""tf2_ros Buffer replacement (docs/architecture.md "ROS replacements"; the listener: tf_listener.py).

Fed with TFMessage from /tf (dynamic, kept for ``cache_time_s``) and /tf_static (never expire).
``lookup_transform(target, source, t)`` chains frames through the tree (via the closest common
ancestor) and interpolates each dynamic edge in time: linear for translation, slerp for rotation.
Semantics follow tf2: a TransformStamped (parent = header.frame_id, child = child_frame_id) maps
child-frame points into the parent frame; the result of lookup_transform(target, source) maps
source-frame points into the target frame. Errors are TransformError subclasses.

Rejected at insert and counted by reason (``REJECT_REASONS``), each leaving the stored tree as it was:
NaN/inf, a quaternion whose squared norm is off 1 by more than tf2's 0.01 (zero_quaternion,
unnormalised_quaternion), bad frame ids, a repeated stamp, data older than the cache, and an edge that would
close a loop (a driver sending ``base_link -> odom`` beside ``odom -> base_link``): a loop edge is refused while
the edges it conflicts with are fresh, and replaces them once they are older than the cache (they age out as
tf2's cache does), so no single message poisons the tree. A late transform is inserted alone; with
``jump_back_s`` a transform that far behind its edge's newest is held as a possible backwards time jump, and
only a second one continuing that earlier timeline (or ``time_jumped()``, when the images jumped back too)
clears the history: a bag looping or sim time restarting resets, a single late message does not.

Two more refusals keep one bad publisher from costing good data. ``future``: with ``future_limit_s``, a dynamic
transform stamped more than that after the newest of its edge and after the horizon the caller gives
(``horizon_ns``: the newest stamp the inputs can carry now, e.g. the newest camera set's stamp advanced by the
clock since that set arrived) is held, not stored, so one message an hour ahead neither cuts the edge's history
nor makes the good data after it look like a backwards time jump. The next transform of that edge decides: one
back on the current timeline shows the held one was wrong (refused then, counted once as ``future``); one
continuing it shows that time jumped forward (both stored); ``release_future(horizon_ns)``, when the inputs
reach it (a camera set stamped there), stores it. ``too_many_frames``: with ``max_frames``, a transform of a new
child frame is refused while the tree holds
that many, unless the frame is needed (``need(frames)``: the frames the owner looks up and every ancestor of them in
the tree), which then takes the place of the stalest frame that is not; at most once a second, frames that are
not needed and whose newest transform is older than the cache are forgotten to make room.
"""
from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protoocc_ros.config import preview
from protoocc_ros.geometry import quaternion_to_matrix

__all__ = [
    "TransformError", "FrameLookupError", "ConnectivityError", "ExtrapolationError",
    "Transform", "TfBuffer", "quat_to_matrix", "quat_multiply", "slerp",
]


class TransformError(Exception):
    """Base of all TF errors (tf2.TransformException)."""


class FrameLookupError(TransformError, LookupError):
    """A frame the buffer has never heard of (tf2.LookupException)."""


class ConnectivityError(TransformError):
    """Both frames exist but lie in different trees (tf2.ConnectivityException)."""


class ExtrapolationError(TransformError):
    """The requested time is outside the stored history by more than the tolerance (tf2.ExtrapolationException).

    ``direction`` is "past" or "future".
    """

    def __init__(self, message: str, direction: str) -> None:
        super().__init__(message)
        self.direction = direction


# -- quaternion helpers (x, y, z, w), ROS order -------------------------------------------------
def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (rotation b first, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) -> 3x3 rotation matrix."""
    x, y, z, w = q
    return quaternion_to_matrix((w, x, y, z))


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions along the shorter arc, t in [0, 1]."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp is exact to ~1e-7
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    return (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)


@dataclass(frozen=True)
class Transform:
    """Rigid transform: p_parent = R(rotation) p_child + translation. rotation is (x, y, z, w)."""

    translation: np.ndarray  # (3,) float64, metres
    rotation: np.ndarray     # (4,) float64, unit quaternion

    @staticmethod
    def identity() -> Transform:
        return Transform(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    @staticmethod
    def from_msg(msg: Any) -> Transform:
        """geometry_msgs/Transform -> Transform (quaternion not normalised here; see TfBuffer)."""
        t, r = msg.translation, msg.rotation
        return Transform(np.array([t.x, t.y, t.z], float), np.array([r.x, r.y, r.z, r.w], float))

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix (float64)."""
        out = np.eye(4)
        out[:3, :3] = quat_to_matrix(self.rotation)
        out[:3, 3] = self.translation
        return out

    def inverse(self) -> Transform:
        conj = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return Transform(-quat_to_matrix(conj) @ self.translation, conj)

    def __matmul__(self, other: Transform) -> Transform:
        """self ∘ other: apply other first."""
        return Transform(
            quat_to_matrix(self.rotation) @ other.translation + self.translation,
            quat_multiply(self.rotation, other.rotation),
        )

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points -> (N, 3) transformed points."""
        return np.asarray(points) @ quat_to_matrix(self.rotation).T + self.translation


@dataclass
class _Edge:
    """History of one child frame's transform to its parent."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)  # ns, ascending
    values: list[Transform] = field(default_factory=list)

    def at(self, child: str, time_ns: int, tolerance_ns: int) -> Transform:
        if self.static:
            return self.values[0]
        i = bisect.bisect_left(self.stamps, time_ns)
        if i < len(self.stamps) and self.stamps[i] == time_ns:
            return self.values[i]
        if i == 0 or i == len(self.stamps):
            edge = self.stamps[0] if i == 0 else self.stamps[-1]
            gap = abs(edge - time_ns)
            if gap <= tolerance_ns:
                return self.values[0 if i == 0 else -1]
            direction = "past" if i == 0 else "future"
            raise ExtrapolationError(
                f"{self.parent[:80]} -> {child[:80]}: extrapolation into the {direction} at {time_ns} ns by "
                f"{gap / 1e9:.3f} s (data {self.stamps[0]}..{self.stamps[-1]} ns, tolerance "
                f"{tolerance_ns / 1e9:.3f} s)",
                direction,
            )
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        a, b = self.values[i - 1], self.values[i]
        w = (time_ns - t0) / (t1 - t0)
        return Transform((1 - w) * a.translation + w * b.translation, slerp(a.rotation, b.rotation, w))


RejectCallback = Callable[[str, str], None]  # (reason, detail)


@dataclass
class _Held:
    """A dynamic transform far behind its edge, kept until the next one tells late data from a time jump."""

    parent: str
    stamp: int
    value: Transform
    stored: bool = False  # inserted as late data already (inside the cache)


class TfBuffer:
    """Transform buffer fed by /tf and /tf_static messages (thread-safe).

    cache_time_s: how long dynamic transforms are kept (relative to the newest stamp of each edge).
    tolerance_s: default allowed extrapolation beyond the stored history (0 = none, like tf2).
    jump_back_s: when set, a dynamic transform more than this much older than the newest one of its edge may be a
    backwards time jump (a bag restarting): it is held (and inserted when inside the cache); a second such
    transform of that edge, newer than the first, or ``time_jumped()`` confirms the jump: the dynamic history
    of the old timeline is cleared (``resets`` counts it) and the held transforms are kept. A held transform
    followed by one on the old timeline was just late; one it could not be stored is then counted as rejected.
    None = tf2 behaviour (data older than the cache is rejected).
    """

    REJECT_REASONS = ("empty_frame_id", "self_transform", "nan", "zero_quaternion", "unnormalised_quaternion",
                      "loop", "older_than_cache", "repeated_stamp", "future", "too_many_frames")
    QUATERNION_TOLERANCE = 0.01  # |x²+y²+z²+w² - 1| allowed, as tf2's QUATERNION_NORMALIZATION_TOLERANCE
    SWEEP_PERIOD_S = 1.0  # at most one sweep for aged-out frames per second when the tree is full

    def __init__(self, cache_time_s: float = 10.0, tolerance_s: float = 0.0,
                 on_reject: RejectCallback | None = None, jump_back_s: float | None = None,
                 future_limit_s: float | None = None, max_frames: int | None = None) -> None:
        if not cache_time_s > 0:
            raise ValueError(f"TfBuffer: cache_time_s must be > 0 seconds, got {cache_time_s!r}")
        if not tolerance_s >= 0:
            raise ValueError(f"TfBuffer: tolerance_s must be >= 0 seconds, got {tolerance_s!r}")
        if future_limit_s is not None and not future_limit_s > 0:
            raise ValueError(f"TfBuffer: future_limit_s must be > 0 seconds, got {future_limit_s!r}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"TfBuffer: max_frames must be >= 1, got {max_frames!r}")
        self.cache_ns = int(cache_time_s * 1e9)
        self.tolerance_ns = int(tolerance_s * 1e9)
        self.on_reject = on_reject
        self.jump_back_ns = None if jump_back_s is None else int(jump_back_s * 1e9)
        self.future_limit_ns = None if future_limit_s is None else int(future_limit_s * 1e9)
        self.max_frames = max_frames
        self.rejected: Counter[str] = Counter()
        self.resets = 0
        self._edges: dict[str, _Edge] = {}
        self._held: dict[str, list[_Held]] = {}  # child -> transforms far behind its edge (a possible time jump)
        self._future: dict[str, _Held] = {}  # child -> a transform far ahead of its edge and the inputs
        self._needed: set[str] = set()
        self._last_sweep = -math.inf  # time.monotonic() of the last sweep for aged-out frames
        self._lock = threading.Lock()

    def need(self, frames: Iterable[str]) -> None:
        """Frames the owner looks up: they (and their ancestors in the tree) are never refused for ``max_frames``."""
        new = {f.lstrip("/") for f in frames} - self._needed
        if new:
            with self._lock:
                self._needed = self._needed | new

    # -- insert ---------------------------------------------------------------------------------
    def _reject(self, reason: str, detail: str) -> bool:
        self.rejected[reason] += 1
        if self.on_reject is not None:
            self.on_reject(reason, detail)
        return False

    def set_transform(self, ts: Any, authority: str = "", static: bool = False, horizon_ns: int | None = None) -> bool:
        """Insert one geometry_msgs/TransformStamped; returns False when it is not stored (rejected and counted,
        or held as a possible time jump). ``horizon_ns``: see ``future_limit_s`` (the module docstring)."""
        parent, child = ts.header.frame_id, ts.child_frame_id
        if parent[:1] == "/" or child[:1] == "/":
            parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            name = f"{parent[:80] or '?'} -> {child[:80] or '?'}" + (f" from {authority}" if authority else "")
            if parent == child and parent:
                return self._reject("self_transform", f"transform {name}: parent and child are the same frame")
            return self._reject("empty_frame_id", f"transform {name}: empty frame id")
        t, r = ts.transform.translation, ts.transform.rotation
        xyz, q = (t.x, t.y, t.z), (r.x, r.y, r.z, r.w)
        norm2 = q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]
        if not (math.isfinite(norm2) and math.isfinite(xyz[0] + xyz[1] + xyz[2])):
            return self._reject("nan", f"transform {self._name(ts, authority)}: NaN/inf in {list(xyz)}, {list(q)}")
        if norm2 < 1e-12:
            return self._reject("zero_quaternion", f"transform {self._name(ts, authority)}: quaternion {list(q)} has "
                                                   "zero length")
        if abs(norm2 - 1.0) > self.QUATERNION_TOLERANCE:
            return self._reject("unnormalised_quaternion", f"transform {self._name(ts, authority)}: quaternion "
                                f"{list(q)} has norm {math.sqrt(norm2):.4f}; |q|² must be 1 within "
                                f"{self.QUATERNION_TOLERANCE} (as tf2)")
        stamp = int(ts.header.stamp.sec) * 1_000_000_000 + int(ts.header.stamp.nanosec)
        norm = math.sqrt(norm2)
        value = Transform(np.array(xyz, dtype=np.float64), np.array(q, dtype=np.float64) / norm)
        name = ""
        with self._lock:
            problems: list[tuple[str, str]] = []
            ahead = None if static else self._ahead_locked(parent, child, stamp, value, horizon_ns, problems)
            stored = self._insert_locked(parent, child, stamp, value, static, problems) if ahead is None else ahead
        for reason, detail in problems:
            self._reject(reason, f"transform {name or self._name(ts, authority)}: {detail}")
        return stored

    @staticmethod
    def _name(ts: Any, authority: str) -> str:
        parent, child = ts.header.frame_id.lstrip("/"), ts.child_frame_id.lstrip("/")
        return f"{parent[:80] or '?'} -> {child[:80] or '?'}" + (f" from {authority}" if authority else "")

    def _ahead_locked(self, parent: str, child: str, stamp: int, value: Transform, horizon_ns: int | None,
                      problems: list[tuple[str, str]]) -> bool | None:
        """The future check (module docstring): None = not ahead, insert as usual; else whether it was stored."""
        if self.future_limit_ns is None:
            return None
        edge = self._edges.get(child)
        refs = [r for r in (edge.stamps[-1] if edge is not None and not edge.static and edge.stamps else None,
                            horizon_ns) if r is not None]
        prev = self._future.get(child)
        if not refs or stamp <= max(refs) + self.future_limit_ns:
            if prev is not None:  # the edge goes on where it was: the transform held was wrong
                del self._future[child]
                ahead_s = (prev.stamp - max(refs or [stamp])) / 1e9
                problems.append(("future", f"stamp {prev.stamp} ns was {ahead_s:.3f} s "
                                           f"ahead of the edge and the inputs (limit {self.future_limit_ns / 1e9:g} s, "
                                           f"parameter tf_future_limit_s); the next transform ({stamp} ns) was not"))
            return None
        if prev is not None and prev.stamp < stamp <= prev.stamp + self.cache_ns:  # time jumped forward
            del self._future[child]
            self._insert_locked(prev.parent, child, prev.stamp, prev.value, False, problems)
            return self._insert_locked(parent, child, stamp, value, False, problems)
        if prev is not None:
            problems.append(("future", f"stamp {prev.stamp} ns was ahead of the edge and the inputs, and the next "
                                       f"transform ({stamp} ns) did not continue it"))
        self._future[child] = _Held(parent, stamp, value)
        return False

    def release_future(self, horizon_ns: int) -> int:
        """The inputs reached ``horizon_ns`` (a camera set stamped there arrived): store the transforms held as
        ahead that are no longer more than ``future_limit_s`` beyond it; returns how many were stored."""
        if self.future_limit_ns is None or not self._future:
            return 0
        stored = 0
        problems: list[tuple[str, str]] = []
        with self._lock:
            for child, held in list(self._future.items()):
                if held.stamp <= horizon_ns + self.future_limit_ns:
                    del self._future[child]
                    stored += self._insert_locked(held.parent, child, held.stamp, held.value, False, problems)
        for reason, detail in problems:
            self._reject(reason, f"transform held as ahead: {detail}")
        return stored

    def _needed_locked(self) -> set[str]:
        """The needed frames and every ancestor of them in the tree."""
        out = set(self._needed)
        for frame in self._needed:
            steps = 0
            while frame in self._edges and steps <= len(self._edges):
                frame = self._edges[frame].parent
                out.add(frame)
                steps += 1
        return out

    def _room_locked(self, child: str, stamp: int, problems: list[tuple[str, str]]) -> bool:
        """Whether a new child frame may be stored under ``max_frames`` (making room when it is needed)."""
        if self.max_frames is None or len(self._edges) < self.max_frames:
            return True
        needed = self._needed_locked()
        now = time.monotonic()
        if now - self._last_sweep >= self.SWEEP_PERIOD_S:  # forget frames nobody needs whose data aged out
            self._last_sweep = now
            for f in [f for f, e in self._edges.items()
                      if f not in needed and not e.static and e.stamps and e.stamps[-1] < stamp - self.cache_ns]:
                del self._edges[f]
                self._held.pop(f, None)
            if len(self._edges) < self.max_frames:
                return True
        if child not in needed:
            problems.append(("too_many_frames", f"a new frame, and the tree holds {len(self._edges)} frames "
                                                f"(limit {self.max_frames}, parameter tf_max_frames)"))
            return False
        spare = [f for f in self._edges if f not in needed]
        if spare:  # a needed frame takes the place of the stalest frame that is not needed
            stalest = min(spare, key=lambda f: (self._edges[f].static, self._edges[f].stamps[-1]
                                                if self._edges[f].stamps else 0))
            del self._edges[stalest]
            self._held.pop(stalest, None)
        return True

    def _loop_locked(self, parent: str, child: str) -> list[str] | None:
        """Children of the edges that parent -> child would close a loop with; None when it closes none."""
        path, frame = [], parent
        while frame in self._edges and frame != child:
            path.append(frame)
            frame = self._edges[frame].parent
            if len(path) > len(self._edges):  # pragma: no cover - the tree never holds a loop
                break
        return path if frame == child else None

    def _insert_locked(self, parent: str, child: str, stamp: int, value: Transform, static: bool,
                       problems: list[tuple[str, str]]) -> bool:
        """Store one checked transform; appends (reason, detail) for what is rejected."""
        loop = self._loop_locked(parent, child)
        if loop is not None:
            fresh = [f for f in loop if self._edges[f].static or self._edges[f].stamps[-1] >= stamp - self.cache_ns]
            if fresh:
                edges = preview([f"{self._edges[f].parent[:80]} -> {f[:80]}" for f in loop[:8]], 300)
                problems.append(("loop", f"would close a loop with {edges} (kept: {len(fresh)} of them are static "
                                         "or newer than the cache)"))
                return False
            for f in loop:  # every conflicting edge is older than the cache: it ages out, this one replaces it
                del self._edges[f]
                self._held.pop(f, None)
        if child not in self._edges and not self._room_locked(child, stamp, problems):
            return False
        if static:
            self._edges[child] = _Edge(parent, True, [stamp], [value])
            return True
        edge = self._edges.get(child)
        if edge is None or edge.static or edge.parent != parent:
            edge = self._edges[child] = _Edge(parent, False)
            self._held.pop(child, None)
        if self.jump_back_ns is not None and edge.stamps and stamp < edge.stamps[-1] - self.jump_back_ns:
            return self._behind_locked(child, edge, _Held(parent, stamp, value), problems)
        self._settle_held_locked(child, problems)  # a transform on the current timeline: what was held was late
        return self._store_locked(edge, stamp, value, problems)

    def _store_locked(self, edge: _Edge, stamp: int, value: Transform, problems: list[tuple[str, str]] | None) -> bool:
        if edge.stamps and stamp < edge.stamps[-1] - self.cache_ns:
            if problems is not None:
                problems.append(("older_than_cache", f"stamp {stamp} ns is more than the cache length "
                                 f"({self.cache_ns / 1e9:.1f} s) before the newest ({edge.stamps[-1]} ns)"))
            return False
        i = bisect.bisect_left(edge.stamps, stamp)
        if i < len(edge.stamps) and edge.stamps[i] == stamp:
            if problems is not None:
                problems.append(("repeated_stamp", f"stamp {stamp} ns already stored"))
            return False
        edge.stamps.insert(i, stamp)
        edge.values.insert(i, value)
        cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
        del edge.stamps[:cut], edge.values[:cut]
        return True

    def _behind_locked(self, child: str, edge: _Edge, held: _Held, problems: list[tuple[str, str]]) -> bool:
        """A transform far behind its edge: late data, or the first of a timeline that jumped back."""
        earlier = self._held.get(child, [])
        if earlier and earlier[-1].stamp < held.stamp <= earlier[-1].stamp + self.cache_ns:
            self._held[child] = [*earlier, held]  # a second one continuing the earlier timeline: a jump
            self._jump_locked(held.stamp)
            return True
        self._settle_held_locked(child, problems)
        held.stored = self._store_locked(edge, held.stamp, held.value, None)  # late but maybe inside the cache
        self._held[child] = [held]
        return held.stored

    def _settle_held_locked(self, child: str, problems: list[tuple[str, str]]) -> None:
        """The transforms held for ``child`` were late, not a jump: count those that could not be stored."""
        for held in self._held.pop(child, []):
            if not held.stored:
                edge = self._edges.get(child)
                newest = edge.stamps[-1] if edge is not None and edge.stamps else held.stamp
                reason = "older_than_cache" if held.stamp < newest - self.cache_ns else "repeated_stamp"
                problems.append((reason, f"stamp {held.stamp} ns, {(newest - held.stamp) / 1e9:.3f} s before the "
                                         f"newest ({newest} ns), not followed by a time jump"))

    def _jump_locked(self, to_ns: int) -> bool:
        """Clear the dynamic edges still on a timeline after ``to_ns`` and store the held transforms."""
        margin = self.jump_back_ns if self.jump_back_ns is not None else 0
        old = [c for c, e in self._edges.items() if not e.static and e.stamps and e.stamps[-1] > to_ns + margin]
        for child in old:
            del self._edges[child]
        for child, held_list in self._held.items():
            for held in held_list:
                edge = self._edges.get(child)
                if edge is None or edge.static or edge.parent != held.parent:
                    edge = self._edges[child] = _Edge(held.parent, False)
                self._store_locked(edge, held.stamp, held.value, None)
        self._held.clear()
        if old:
            self.resets += 1
        return bool(old)

    def time_jumped(self, to_ns: int) -> bool:
        """Time jumped back to about ``to_ns`` (e.g. the camera stamps did): clear the dynamic edges whose data is
        newer than that by more than ``jump_back_s``, keep what was held for the new timeline. True when it
        cleared something (``resets`` counts it)."""
        with self._lock:
            return self._jump_locked(to_ns)

    def set_transform_static(self, ts: Any, authority: str = "") -> bool:
        return self.set_transform(ts, authority, static=True)

    def add_message(self, msg: Any, static: bool = False, authority: str = "", horizon_ns: int | None = None) -> int:
        """Insert every transform of a tf2_msgs/TFMessage; returns how many were accepted."""
        return sum(self.set_transform(ts, authority, static, horizon_ns) for ts in msg.transforms)

    def clear(self) -> None:
        """Drop all dynamic history (after a backwards time jump); static transforms stay."""
        with self._lock:
            self._edges = {k: e for k, e in self._edges.items() if e.static}
            self._held.clear()
            self._future.clear()

    # -- query ----------------------------------------------------------------------------------
    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def frame_count(self) -> int:
        """Child frames stored (what ``max_frames`` bounds)."""
        return len(self._edges)

    def newest_stamp(self, child: str) -> int | None:
        """Stamp of the newest dynamic transform stored for ``child`` (None: none, or a static edge)."""
        with self._lock:
            edge = self._edges.get(child.lstrip("/"))
            return edge.stamps[-1] if edge is not None and not edge.static and edge.stamps else None

    def _chain(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > len(self._edges) + 1:
                raise TransformError(f"TF tree has a loop through {chain!r}")
        return chain

    def _latest_common_ns(self, frames: Iterable[str]) -> int:
        stamps = [self._edges[f].stamps[-1] for f in frames if f in self._edges and not self._edges[f].static]
        return min(stamps) if stamps else 0

    def lookup_transform(self, target_frame: str, source_frame: str, time_ns: int | None = None,
                         tolerance_s: float | None = None) -> Transform:
        """Transform mapping source_frame points into target_frame at time_ns (None/0 = latest common time)."""
        target, source = target_frame.lstrip("/"), source_frame.lstrip("/")
        tol = self.tolerance_ns if tolerance_s is None else int(tolerance_s * 1e9)
        with self._lock:
            known = set(self._edges) | {e.parent for e in self._edges.values()}
            for frame in (target, source):
                if frame not in known:
                    raise FrameLookupError(
                        f"frame {frame[:80]!r} does not exist (looking up {target[:80]!r} <- {source[:80]!r}); "
                        f"known: {preview(sorted(known), 240)}")
            if target == source:
                return Transform.identity()
            up_source, up_target = self._chain(source), self._chain(target)
            common = next((f for f in up_source if f in set(up_target)), None)
            if common is None:
                raise ConnectivityError(
                    f"frames {target[:80]!r} and {source[:80]!r} are not connected (roots {up_target[-1][:80]!r}, "
                    f"{up_source[-1][:80]!r})")
            path_s = up_source[: up_source.index(common)]
            path_t = up_target[: up_target.index(common)]
            t = time_ns or self._latest_common_ns(path_s + path_t)
            return self._to_ancestor(path_t, t, tol).inverse() @ self._to_ancestor(path_s, t, tol)

    def _to_ancestor(self, path: list[str], time_ns: int, tol: int) -> Transform:
        acc = Transform.identity()
        for frame in path:
            acc = self._edges[frame].at(frame, time_ns, tol) @ acc
        return acc

    def lookup_matrix(self, target_frame: str, source_frame: str, time_ns: int | None = None,
                      tolerance_s: float | None = None) -> np.ndarray:
        """Like lookup_transform, as a 4x4 float64 matrix."""
        return self.lookup_transform(target_frame, source_frame, time_ns, tolerance_s).matrix()

    def can_transform(self, target_frame: str, source_frame: str, time_ns: int | None = None,
                      tolerance_s: float | None = None) -> bool:
        try:
            self.lookup_transform(target_frame, source_frame, time_ns, tolerance_s)
        except TransformError:
            return False
        return True
