"""Tests of protoocc_ros.ros.replay.bag_io: rosbag2 round trips in both storages, CDR readable by rosbags' own typestore."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protoocc_ros.msg import SemanticOccupancyGrid
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io


def _grid(stamp_ns: int, seed: int) -> SemanticOccupancyGrid:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 18, size=(4, 5, 3), dtype=np.uint8)
    msg = SemanticOccupancyGrid(header=mb.header(stamp_ns, "base_link"), voxel_size=0.4,
                                size_x=4, size_y=5, size_z=3, free_label=17)
    msg.class_names = [f"c{i}" for i in range(18)]
    msg.labels = labels.tobytes()
    return msg


def _messages() -> list[tuple[str, object, int]]:
    t0 = 1_600_000_000_123_456_000
    pose = np.eye(4)
    pose[:3, 3] = [1.0, -2.0, 0.5]
    out: list[tuple[str, object, int]] = []
    for k in range(3):
        t = t0 + k * 500_000_000
        out.append(("/clock", mb.clock_msg(t), t))
        out.append(("/tf", mb.ego_pose_tf(pose, t), t))
        out.append(("/cameras/CAM_FRONT/camera_info",
                    mb.camera_info_msg(np.diag([500.0, 500.0, 1.0]), 64, 48, t, "cam_front_optical_frame"), t))
        out.append(("/ground_truth/occupancy", _grid(t, k), t + 1))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_roundtrip_preserves_every_message(tmp_path: Path, storage: str) -> None:
    written = _messages()
    with bag_io.BagWriter(tmp_path / "bag", storage) as bag:
        for topic, msg, t in written:
            bag.write(topic, msg, t)
    assert bag.counts["/ground_truth/occupancy"] == 3
    assert bag_io.bag_topics(tmp_path / "bag")["/ground_truth/occupancy"] == bag_io.GRID_MSGTYPE
    records = list(bag_io.read_bag(tmp_path / "bag"))
    assert len(records) == len(written)
    got = sorted(((r.topic, r.timestamp_ns, bag_io.deserialize(r)) for r in records), key=lambda x: (x[1], x[0]))
    expected = sorted(written, key=lambda x: (x[2], x[0]))
    for (topic, t, msg), (etopic, emsg, et) in zip(got, expected):
        assert (topic, t) == (etopic, et)
        # float32 fields (voxel_size) compare exactly only after the same CDR round trip; CDR padding bytes are
        # not initialised by rclpy, so the bytes themselves are not comparable
        assert msg == bag_io.deserialize(bag_io.BagMessage(topic, bag_io.ros_type_name(emsg), t,
                                                           bag_io.serialize(emsg)))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_grid_cdr_decodes_with_rosbags_typestore(tmp_path: Path, storage: str) -> None:
    """The registered msg/ definition matches rclpy's CDR layout: rosbags' own deserializer reads the labels back."""
    grid = _grid(42, seed=7)
    with bag_io.BagWriter(tmp_path / "bag", storage) as bag:
        bag.write("/g", grid, 42)
    (record,) = bag_io.read_bag(tmp_path / "bag", topics=["/g"])
    decoded = bag_io.project_typestore().deserialize_cdr(record.data, record.msgtype)
    assert bytes(decoded.labels) == bytes(grid.labels)
    assert list(decoded.class_names) == list(grid.class_names)
    assert (decoded.size_x, decoded.size_y, decoded.size_z, decoded.free_label) == (4, 5, 3, 17)


def test_writer_rejects_unknown_storage_and_existing_path(tmp_path: Path) -> None:
    with pytest.raises(bag_io.BagIOError, match="storage 'rosbag1'"):
        bag_io.BagWriter(tmp_path / "a", "rosbag1")
    (tmp_path / "b").mkdir()
    with pytest.raises(bag_io.BagIOError, match="exists"):
        bag_io.BagWriter(tmp_path / "b", "mcap").open()


def test_read_bag_names_missing_topics(tmp_path: Path) -> None:
    with bag_io.BagWriter(tmp_path / "bag", "mcap") as bag:
        bag.write("/clock", mb.clock_msg(5), 5)
    with pytest.raises(bag_io.BagIOError, match="/nope"):
        list(bag_io.read_bag(tmp_path / "bag", topics=["/nope"]))
    with pytest.raises(bag_io.BagIOError, match="does not exist"):
        list(bag_io.read_bag(tmp_path / "missing"))


def test_ros_type_name_and_message_class_are_inverse() -> None:
    for cls in (SemanticOccupancyGrid, type(mb.clock_msg(0)), type(mb.ego_pose_tf(np.eye(4), 0))):
        assert bag_io.message_class(bag_io.ros_type_name(cls)) is cls
    with pytest.raises(bag_io.BagIOError, match="not importable"):
        bag_io.message_class("nonexistent_pkg/msg/Foo")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_accepts_messages_from_other_threads(tmp_path: Path, storage: str) -> None:
    import threading

    recorder = bag_io.BagRecorder(tmp_path / "bag", storage)
    workers = [threading.Thread(target=lambda k=k: recorder.put(f"/t{k}", "rosgraph_msgs/msg/Clock",
                                                                bag_io.serialize(mb.clock_msg(k)), k))
               for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    recorder.close()
    assert recorder.counts == {f"/t{k}": 1 for k in range(4)}
    assert sorted(r.timestamp_ns for r in bag_io.read_bag(tmp_path / "bag")) == [0, 1, 2, 3]


def test_recorder_reports_write_errors_at_close(tmp_path: Path) -> None:
    recorder = bag_io.BagRecorder(tmp_path / "bag", "mcap")
    recorder.put("/x", "not_a_pkg/msg/Nothing", b"\x00\x01\x00\x00", 1)
    with pytest.raises(bag_io.BagIOError, match="not_a_pkg/msg/Nothing"):
        recorder.close()
