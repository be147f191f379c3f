"""Tests for protoocc_ros.ros.sync (approximate-time synchronizer)."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protoocc_ros.ros.sync import (
    DROP_INCOMPLETE,
    DROP_OUT_OF_ORDER,
    DROP_TOO_OLD,
    DROP_UNKNOWN_KEY,
    RESET_TIME_JUMP,
    ApproximateTimeSync,
    SyncedSet,
    SyncError,
)

MS = 1_000_000
CAMS = ["CAM_FRONT", "CAM_LEFT", "CAM_RIGHT"]


def test_set_within_slop_is_emitted_with_reference_stamp_and_key_order() -> None:
    got: list[SyncedSet] = []
    sync = ApproximateTimeSync(CAMS, slop_s=0.02, callback=got.append)
    assert sync.add("CAM_RIGHT", 1000 * MS + 5 * MS, "r") == []
    assert sync.add("CAM_FRONT", 1000 * MS, "f") == []
    done = sync.add("CAM_LEFT", 1000 * MS - 9 * MS, "l")
    assert done == got and len(done) == 1
    assert done[0].stamp_ns == 1000 * MS
    assert list(done[0].messages) == CAMS and list(done[0].messages.values()) == ["f", "l", "r"]
    assert done[0].stamps_ns["CAM_LEFT"] == 991 * MS
    assert sync.pending == 0 and sync.emitted == 1 and not sync.drops


def test_spread_beyond_slop_is_not_a_set() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_s=0.01)
    sync.add("a", 0, 1)
    assert sync.add("b", 11 * MS, 2) == []
    assert sync.pending == 2
    assert len(sync.add("a", 12 * MS, 3)) == 1  # a@12 pairs with b@11
    assert sync.drops[DROP_INCOMPLETE] == 1 and sync.missing["b"] == 1


@settings(max_examples=60, deadline=None)
@given(
    n_frames=st.integers(1, 12),
    jitter=st.lists(st.integers(-4, 4), min_size=36, max_size=36),
    order_seed=st.randoms(use_true_random=False),
)
def test_every_frame_is_emitted_once_for_any_interleaving(n_frames: int, jitter: list[int], order_seed) -> None:
    # Frames 100 ms apart, per-camera jitter within ±4 ms, slop 10 ms; cameras interleave arbitrarily
    # but each camera's own messages stay in order.
    streams = {
        cam: [(f * 100 * MS + jitter[(f * 3 + i) % 36] * MS, (cam, f)) for f in range(n_frames)]
        for i, cam in enumerate(CAMS)
    }
    sync = ApproximateTimeSync(CAMS, slop_s=0.01, queue_size=n_frames + 1)
    out: list[SyncedSet] = []
    while any(streams.values()):
        cam = order_seed.choice([c for c in CAMS if streams[c]])
        stamp, msg = streams[cam].pop(0)
        out.extend(sync.add(cam, stamp, msg))
    assert [s.messages["CAM_FRONT"][1] for s in out] == list(range(n_frames))
    assert all({m[1] for m in s.messages.values()} == {s.messages["CAM_FRONT"][1]} for s in out)
    assert not sync.drops


def test_missing_camera_drops_that_set_and_names_the_camera() -> None:
    drops: list[tuple[str, str]] = []
    sync = ApproximateTimeSync(CAMS, slop_s=0.01, on_drop=lambda r, d: drops.append((r, d)))
    sync.add("CAM_FRONT", 0, 0)
    sync.add("CAM_LEFT", 0, 0)  # CAM_RIGHT never sends frame 0
    done = [s for cam in CAMS for s in sync.add(cam, 100 * MS, 1)]
    assert [s.stamp_ns for s in done] == [100 * MS]
    assert sync.drops == {DROP_INCOMPLETE: 1}
    assert sync.missing == {"CAM_RIGHT": 1}
    assert drops[0][0] == DROP_INCOMPLETE and "CAM_RIGHT" in drops[0][1]


def test_dead_camera_bounds_pending_sets_by_queue_size() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_s=0.01, queue_size=3)
    for f in range(10):
        sync.add("a", f * 100 * MS, f)
        assert sync.pending <= 3
    assert sync.drops[DROP_INCOMPLETE] == 7 and sync.missing["b"] == 7
    # b comes back for a frame still pending: that set is emitted
    assert [s.messages["a"] for s in sync.add("b", 900 * MS, "b9")] == [9]


def test_out_of_order_stamp_on_one_key_is_dropped() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_s=0.01)
    sync.add("a", 500 * MS, 1)
    sync.add("a", 400 * MS, 2)
    sync.add("a", 500 * MS, 3)
    assert sync.drops == {DROP_OUT_OF_ORDER: 2}
    assert sync.add("b", 500 * MS, 4)[0].messages == {"a": 1, "b": 4}


def test_message_older_than_a_finished_set_is_too_old() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_s=0.01, queue_size=1)
    sync.add("a", 100 * MS, 1)
    sync.add("a", 200 * MS, 2)  # queue of one pending set: the set at 100 ms is given up
    assert sync.add("b", 100 * MS, 3) == []  # b's first message, for the set already given up
    assert sync.drops == {DROP_INCOMPLETE: 1, DROP_TOO_OLD: 1}
    assert sync.add("b", 200 * MS, 4)[0].messages == {"a": 2, "b": 4}


def test_backwards_time_jump_resets_and_sets_continue() -> None:
    sync = ApproximateTimeSync(["a", "b"], slop_s=0.01, time_jump_s=1.0)
    sync.add("a", 50_000 * MS, 1)
    assert sync.add("b", 50_000 * MS, 2)
    sync.add("a", 1_000 * MS, 3)  # bag looped: 49 s back
    done = sync.add("b", 1_000 * MS, 4)
    assert sync.resets == {RESET_TIME_JUMP: 1}
    assert len(done) == 1 and done[0].stamp_ns == 1_000 * MS
    assert not sync.drops


def test_unknown_key_is_counted() -> None:
    sync = ApproximateTimeSync(["a"], slop_s=0.0)
    assert sync.add("z", 0, 1) == [] and sync.drops == {DROP_UNKNOWN_KEY: 1}
    assert len(sync.add("a", 0, 1)) == 1  # one key: every message is a set


@pytest.mark.parametrize(
    "kwargs,match",
    [({"keys": []}, "keys"), ({"keys": ["a", "a"]}, "keys"), ({"slop_s": -1.0}, "slop_s"),
     ({"slop_s": float("nan")}, "slop_s"), ({"queue_size": 0}, "queue_size"), ({"time_jump_s": 0.0}, "time_jump_s")],
)
def test_invalid_configuration_is_rejected(kwargs: dict, match: str) -> None:
    args = {"keys": ["a", "b"], "slop_s": 0.01} | kwargs
    with pytest.raises(SyncError, match=match):
        ApproximateTimeSync(**args)


def test_concurrent_producers_lose_nothing() -> None:
    sync = ApproximateTimeSync(CAMS, slop_s=0.005, queue_size=500)
    out: list[SyncedSet] = []
    lock = threading.Lock()

    def produce(cam: str) -> None:
        for f in range(300):
            done = sync.add(cam, f * 50 * MS, f)
            with lock:
                out.extend(done)

    threads = [threading.Thread(target=produce, args=(c,)) for c in CAMS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s.stamp_ns for s in out) == [f * 50 * MS for f in range(300)]
    assert not sync.drops
