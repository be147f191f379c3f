"""Tests for protoocc_ros.ros.inputs.sync (approximate-time synchronizer)."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protoocc_ros.ros.inputs.sync import (
    DROP_INCOMPLETE,
    DROP_OUT_OF_ORDER,
    DROP_OUT_OF_ORDER_SET,
    DROP_TOO_OLD,
    DROP_UNKNOWN_KEY,
    DROP_UNMATCHED,
    MESSAGE_DROPS,
    RESET_TIME_JUMP,
    SET_DROPS,
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


def feed_sets(sync: ApproximateTimeSync, stamps_ms: list[int], keys: list[str] = CAMS) -> list[SyncedSet]:
    return [s for t in stamps_ms for k in keys for s in sync.add(k, t * MS, (k, t))]


def families(sync: ApproximateTimeSync) -> tuple[int, int]:
    """(messages dropped, sets dropped) so far."""
    return (sum(n for r, n in sync.drops.items() if r in MESSAGE_DROPS),
            sum(n for r, n in sync.drops.items() if r in SET_DROPS))


def test_repeated_set_counts_every_message_and_the_set_once() -> None:
    sync = ApproximateTimeSync(CAMS, slop_s=0.02)
    assert len(feed_sets(sync, [1000, 1500])) == 2
    assert feed_sets(sync, [1500]) == []  # the same set again
    assert sync.drops == {DROP_OUT_OF_ORDER: 3, DROP_OUT_OF_ORDER_SET: 1} and families(sync) == (3, 1)
    assert feed_sets(sync, [1250]) == []  # an older set after newer ones
    assert families(sync) == (6, 2)
    assert len(feed_sets(sync, [2000])) == 1


def test_one_late_message_is_not_a_set() -> None:
    sync = ApproximateTimeSync(CAMS, slop_s=0.02)
    feed_sets(sync, [1000, 1500])
    sync.add("CAM_LEFT", 1200 * MS, "late")
    assert sync.drops == {DROP_OUT_OF_ORDER: 1} and families(sync) == (1, 0)


def test_camera_later_than_the_slop_loses_one_set_not_two() -> None:
    sync = ApproximateTimeSync(CAMS, slop_s=0.02)
    feed_sets(sync, [0, 500])
    sync.add("CAM_FRONT", 1000 * MS, 1)
    sync.add("CAM_LEFT", 1000 * MS, 1)
    sync.add("CAM_RIGHT", 1080 * MS, 1)  # 80 ms late: a set of its own within the slop
    assert len(feed_sets(sync, [1500])) == 1
    assert sync.drops == {DROP_INCOMPLETE: 1, DROP_UNMATCHED: 1} and families(sync) == (1, 1)
    assert sync.missing == {"CAM_RIGHT": 1}


def test_one_stamp_far_behind_is_dropped_alone_without_a_reset() -> None:
    sync = ApproximateTimeSync(CAMS, slop_s=0.02, time_jump_s=1.0)
    feed_sets(sync, [100_000, 100_500])
    sync.add("CAM_FRONT", 101_000 * MS, 1)
    sync.add("CAM_LEFT", 101_000 * MS, 1)
    assert sync.add("CAM_RIGHT", 0, 1) == []  # stamped 0: held, a jump or a stray stamp?
    assert not sync.drops and not sync.resets
    assert len(feed_sets(sync, [101_500])) == 1  # CAM_RIGHT goes on: a stray stamp, its set lost once
    assert sync.drops == {DROP_OUT_OF_ORDER: 1, DROP_INCOMPLETE: 1} and not sync.resets
    assert families(sync) == (1, 1)


def test_backwards_jump_of_a_single_input_is_confirmed_by_its_next_message() -> None:
    sync = ApproximateTimeSync(["a"], slop_s=0.0, time_jump_s=1.0)
    assert len(feed_sets(sync, [50_000, 50_100], ["a"])) == 2
    assert feed_sets(sync, [1_000], ["a"]) == []  # held
    assert [s.stamp_ns for s in feed_sets(sync, [1_100], ["a"])] == [1_000 * MS, 1_100 * MS]
    assert sync.resets == {RESET_TIME_JUMP: 1} and sync.jumped_to_ns == 1_000 * MS and not sync.drops


def test_backwards_jump_gives_up_the_pending_set_once() -> None:
    sync = ApproximateTimeSync(CAMS, slop_s=0.02, time_jump_s=1.0)
    feed_sets(sync, [50_000])
    sync.add("CAM_FRONT", 50_500 * MS, 1)  # a set the bag never finished
    assert len(feed_sets(sync, [1_000])) == 1
    assert sync.resets == {RESET_TIME_JUMP: 1} and sync.drops == {DROP_INCOMPLETE: 1}


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
