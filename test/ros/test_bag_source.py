"""BagSource on recordings made like a real recorder's (test/ros/bag_recordings.py, written with rosbags):
one bundle per camera set, whatever each camera's own stamp and the log order, CameraInfo / TF / ground truth
with the set they belong to, sqlite3 and mcap, raw and compressed, incomplete sets kept and marked."""
from __future__ import annotations

from pathlib import Path

import pytest
from bag_recordings import CAMERAS, PERIOD, T0, typestore, write_recording

from protoocc_ros.ros.replay.bag_source import BagSource, camera_namespace
from protoocc_ros.ros.replay.types import header_stamp_ns


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)])
def test_each_camera_set_is_one_bundle_with_its_camera_info_tf_and_ground_truth(tmp_path: Path, storage: str,
                                                                                 compressed: bool) -> None:
    rec = write_recording(tmp_path / "bag", storage, sets=12, compressed=compressed)
    bundles = list(BagSource(tmp_path / "bag").frames())
    assert len(bundles) == 12 and all(b.complete for b in bundles)
    store = typestore()
    suffix = "/image_raw/compressed" if compressed else "/image_raw"
    for k, bundle in enumerate(bundles):
        assert bundle.stamps == frozenset(rec.image_stamps[k].values()) and bundle.stamp_ns == min(bundle.stamps)
        topics = bundle.topics()
        assert sorted(t for t in topics if t.endswith(suffix)) == sorted(f"/cameras/{c}{suffix}" for c in CAMERAS)
        infos = [m for m in bundle.messages if m.topic.endswith("/camera_info")]
        assert sorted(m.topic for m in infos) == sorted(f"/cameras/{c}/camera_info" for c in CAMERAS)
        for m in infos:  # each CameraInfo travels with the image of its camera and stamp
            cam = m.topic.split("/")[2]
            assert header_stamp_ns(m.payload) == rec.image_stamps[k][cam]
        assert topics.count("/ground_truth/occupancy") == 1
        gt = next(m for m in bundle.messages if m.topic == "/ground_truth/occupancy")
        assert header_stamp_ns(gt.payload) == T0 + k * PERIOD
        tf_stamps = [store.deserialize_cdr(m.payload, m.msgtype).transforms[0].header.stamp
                     for m in bundle.messages if m.topic == "/tf"]
        tf_ns = [s.sec * 1_000_000_000 + s.nanosec for s in tf_stamps]
        assert tf_ns and min(tf_ns) >= T0 + k * PERIOD or k == 0  # the poses of this set's time window
        assert max(tf_ns) >= max(bundle.stamps)  # a pose after the last image: the node can interpolate
        # publishing order: tf before camera info before images before ground truth
        ranks = [0 if t.startswith("/tf") else 1 if t.endswith("camera_info") else 3 if "ground_truth" in t else 2
                 for t in topics]
        assert ranks == sorted(ranks)
    assert bundles[0].topics()[0] == "/tf_static"
    assert sum(b.topics().count("/tf") for b in bundles) == (12 + 1) * 10  # every pose published once


def test_a_set_missing_a_camera_is_kept_as_an_incomplete_bundle(tmp_path: Path) -> None:
    write_recording(tmp_path / "bag", "mcap", sets=6, missing={(3, "CAM_BACK")})
    bundles = list(BagSource(tmp_path / "bag").frames())
    assert len(bundles) == 6 and [b.complete for b in bundles] == [True, True, True, False, True, True]
    assert len(bundles[3].stamps) == 5


def test_a_late_logged_message_travels_with_the_set_being_recorded_then(tmp_path: Path) -> None:
    """/tf_static written at the end of the bag: not buffered until the end, published when it was logged."""
    write_recording(tmp_path / "bag", "mcap", sets=8, static_tf_last=True)
    source = BagSource(tmp_path / "bag")
    members, owner, _ = source.plan()
    assert max(len(m) for m in members) < 3 * min(len(m) for m in members)  # no set collects the whole bag
    assert sum(b.topics().count("/tf_static") for b in source.frames()) == 1


def test_slop_decides_the_sets(tmp_path: Path) -> None:
    write_recording(tmp_path / "bag", "mcap", sets=4)
    assert len(list(BagSource(tmp_path / "bag", slop_s=0.05).frames())) == 4
    tight = list(BagSource(tmp_path / "bag", slop_s=0.0).frames())  # every camera its own set
    assert len(tight) > 4 and not any(b.complete for b in tight)


def test_camera_namespace_pairs_images_and_camera_info() -> None:
    for topic in ("/kitti/camera_color_left/image_raw", "/kitti/camera_color_left/image_raw/compressed",
                  "/kitti/camera_color_left/image_rect", "/kitti/camera_color_left/camera_info"):
        assert camera_namespace(topic) == "/kitti/camera_color_left"
