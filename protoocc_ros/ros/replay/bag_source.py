"""rosbag2 recordings (sqlite3 or mcap) -> camera-set bundles for replay_node (docs/operating.md "Replaying a bag").

Real recorders stamp every camera on its own (a few ms apart, jittered) and log each message when it
arrived, not at its header stamp. A bag is therefore grouped into camera sets by header stamp with the
rule of the node's synchronizer: one image per camera topic, all within ``slop_s`` of the set's first
stamp (images sorted by stamp, grouped greedily). A set that lacks a camera is kept as an incomplete
bundle (published, but no grid is expected for it). Every other message joins a set:
  - CameraInfo: the set holding the image of the same camera namespace (``<ns>/camera_info`` and
    ``<ns>/image_*``) with the nearest stamp;
  - messages with a stamp (a std_msgs/Header first, or TFMessage: its newest transform): the set whose time
    window [first stamp - slop, next set's first stamp - slop) holds the stamp (earlier: the first set), so
    ground truth stamped like the set and a transform stamped just after the images travel with them;
  - messages without a stamp: the set whose images were logged last before them.
Two passes over the bag: the first reads stamps only and plans the sets, the second yields each set as soon
as all its messages were read (memory bounded by how far log order runs ahead of stamp order). Messages keep
their CDR bytes; /clock and /replay/done are not republished (the replay node publishes its own).
"""
from __future__ import annotations

import bisect
import itertools
import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io
from protoocc_ros.ros.replay.types import (
    CLOCK_TOPIC,
    TF_MSGTYPE,
    TF_STATIC_TOPIC,
    FrameBundle,
    OutMessage,
    ReplaySourceError,
    header_stamp_ns,
)

__all__ = ["BagSource", "IMAGE_MSGTYPES", "HEADER_MSGTYPES", "camera_namespace"]

IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
# Types whose CDR starts with std_msgs/Header (the header stamp is readable without deserialising).
HEADER_MSGTYPES = (*IMAGE_MSGTYPES, CAMERA_INFO_MSGTYPE, "sensor_msgs/msg/PointCloud2", bag_io.GRID_MSGTYPE,
                   "nav_msgs/msg/OccupancyGrid", "nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped",
                   "geometry_msgs/msg/TransformStamped", "sensor_msgs/msg/Imu", "sensor_msgs/msg/NavSatFix")
OWN_TOPICS = (CLOCK_TOPIC, mb.DONE_TOPIC)
LOOKAHEAD_SETS = 2
_IMAGE_SUFFIXES = ("image_raw", "image_rect", "image_rect_color", "image_color", "image_mono", "image")
# publishing order inside a bundle
_RANK = {TF_STATIC_TOPIC: 0, "tf": 1, "camera_info": 2, "image": 3, "other": 4, "ground_truth": 5}


def camera_namespace(topic: str) -> str:
    """/a/b/image_raw/compressed, /a/b/image_rect, /a/b/camera_info -> /a/b (the camera of a topic)."""
    parts = topic.rstrip("/").split("/")
    if parts[-1] in ("compressed", "compressedDepth", "theora"):
        parts = parts[:-1]
    if parts[-1] == "camera_info" or parts[-1] in _IMAGE_SUFFIXES:
        parts = parts[:-1]
    return "/".join(parts) or "/"


@dataclass
class _Record:
    index: int       # position in the bag (log order)
    topic: str
    msgtype: str
    log_ns: int
    stamp_ns: int | None


def _tf_stamp(data: bytes, store: Any) -> int | None:
    msg = store.deserialize_cdr(data, TF_MSGTYPE)
    stamps = [int(t.header.stamp.sec) * 1_000_000_000 + int(t.header.stamp.nanosec) for t in msg.transforms]
    return max(stamps) if stamps else None


def _stamp(record: bag_io.BagMessage, store: Any) -> int | None:
    try:
        if record.msgtype in HEADER_MSGTYPES:
            return header_stamp_ns(record.data)
        if record.msgtype == TF_MSGTYPE:
            return _tf_stamp(record.data, store)
    except (ReplaySourceError, struct.error, ValueError, KeyError):
        return None
    return None


class BagSource:
    """A rosbag2 recording as a sequence of camera-set bundles (see the module docstring)."""

    def __init__(self, path: str | Path, topics: Sequence[str] = (), slop_s: float = 0.05) -> None:
        self.path = Path(path)
        try:
            self._types = bag_io.bag_topics(self.path)
        except bag_io.BagIOError as exc:
            raise ReplaySourceError(str(exc)) from exc
        missing = [t for t in topics if t not in self._types]
        if missing:
            raise ReplaySourceError(f"bag {self.path}: topics {missing} are not recorded (has {sorted(self._types)})")
        self._topics = [t for t in (topics or self._types) if t not in OWN_TOPICS]
        self.cameras = sorted(t for t in self._topics if self._types[t] in IMAGE_MSGTYPES)
        if not self.cameras:
            raise ReplaySourceError(f"bag {self.path}: no Image/CompressedImage topic to group into camera sets "
                                    f"among {sorted(self._topics)}")
        if not slop_s >= 0:
            raise ReplaySourceError(f"slop_s must be >= 0 seconds, got {slop_s!r}")
        self.slop_ns = int(round(slop_s * 1e9))
        self._plan: tuple[list[list[int]], dict[int, int], list[bool]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"source": "rosbag2", "path": str(self.path), "topics": sorted(self._topics), "cameras": self.cameras,
                "slop_s": self.slop_ns / 1e9}

    def publisher_topics(self) -> dict[str, str]:
        """Every topic the replay publishes -> its type (to create and match all publishers before the first set)."""
        return {t: self._types[t] for t in self._topics}

    # -- planning (pass 1: stamps only) --------------------------------------------------------------------
    def _records(self) -> list[_Record]:
        store = bag_io.project_typestore()
        try:
            return [_Record(i, r.topic, r.msgtype, r.timestamp_ns, _stamp(r, store))
                    for i, r in enumerate(bag_io.read_bag(self.path, self._topics))]
        except bag_io.BagIOError as exc:
            raise ReplaySourceError(str(exc)) from exc

    def _group_images(self, images: list[_Record]) -> list[list[_Record]]:
        """Camera sets: images by stamp, each set one per camera within slop of its first stamp."""
        groups: list[list[_Record]] = []
        for rec in sorted(images, key=lambda r: (r.stamp_ns or 0, r.index)):
            current = groups[-1] if groups else None
            if (current is not None and (rec.stamp_ns or 0) - (current[0].stamp_ns or 0) <= self.slop_ns
                    and rec.topic not in {r.topic for r in current}):
                current.append(rec)
            else:
                groups.append([rec])
        return groups

    def plan(self) -> tuple[list[list[int]], dict[int, int], list[bool]]:
        """(record indices per set, record index -> set, set is complete) for the whole bag."""
        if self._plan is not None:
            return self._plan
        records = self._records()
        images = [r for r in records if r.msgtype in IMAGE_MSGTYPES and r.stamp_ns is not None]
        groups = self._group_images(images)
        if not groups:
            raise ReplaySourceError(f"bag {self.path}: no image with a readable header stamp")
        owner: dict[int, int] = {}
        for k, group in enumerate(groups):
            for rec in group:
                owner[rec.index] = k
        images_of = set(owner)
        starts = [(g[0].stamp_ns or 0) - self.slop_ns for g in groups]  # window of set k: [starts[k], starts[k+1])
        # camera namespace -> [(stamp, set)] for pairing CameraInfo with its image
        by_camera: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for k, group in enumerate(groups):
            for rec in group:
                by_camera[camera_namespace(rec.topic)].append((rec.stamp_ns or 0, k))
        last_logged = sorted((max(r.log_ns for r in g), k) for k, g in enumerate(groups))
        for rec in records:
            if rec.index in owner:
                continue
            pairs = by_camera.get(camera_namespace(rec.topic)) if rec.msgtype == CAMERA_INFO_MSGTYPE else None
            if pairs and rec.stamp_ns is not None:
                stamp, k = min(pairs, key=lambda p: abs(p[0] - rec.stamp_ns))  # type: ignore[operator]
                if abs(stamp - rec.stamp_ns) <= max(self.slop_ns, 1):
                    owner[rec.index] = k
                    continue
            if rec.stamp_ns is not None:
                owner[rec.index] = max(0, bisect.bisect_right(starts, rec.stamp_ns) - 1)
            else:  # unstamped: the set whose images were logged last before it (else the first)
                i = bisect.bisect_right(last_logged, (rec.log_ns, len(groups))) - 1
                owner[rec.index] = last_logged[i][1] if i >= 0 else 0
        # A message logged long after its set (e.g. /tf_static written at the end) travels with the set being
        # formed when it was logged instead: the second pass then buffers at most LOOKAHEAD_SETS sets.
        formed = [max(r.index for r in g) for g in groups]  # log index of each set's last image
        pending_until = list(itertools.accumulate(formed, max))  # set m is pending while reading index <= this
        for rec in records:
            k = owner[rec.index]
            if rec.index not in images_of and k + LOOKAHEAD_SETS < len(groups) \
                    and rec.index > formed[k + LOOKAHEAD_SETS]:
                owner[rec.index] = min(len(groups) - 1, bisect.bisect_left(pending_until, rec.index))
        members: list[list[int]] = [[] for _ in groups]
        for index, k in owner.items():
            members[k].append(index)
        complete = [len({r.topic for r in g}) == len(self.cameras) for g in groups]
        self._plan = ([sorted(m) for m in members], owner, complete)
        return self._plan

    # -- bundles (pass 2) -------------------------------------------------------------------------------------
    def _rank(self, msg: OutMessage) -> int:
        if msg.topic == TF_STATIC_TOPIC:
            return _RANK[TF_STATIC_TOPIC]
        if msg.msgtype == TF_MSGTYPE:
            return _RANK["tf"]
        if msg.msgtype == CAMERA_INFO_MSGTYPE:
            return _RANK["camera_info"]
        if msg.msgtype in IMAGE_MSGTYPES:
            return _RANK["image"]
        return _RANK["ground_truth"] if msg.topic == mb.GROUND_TRUTH_TOPIC else _RANK["other"]

    def frames(self) -> Iterator[FrameBundle]:
        members, owner, complete = self.plan()
        left = [len(m) for m in members]
        pending: dict[int, list[tuple[int, OutMessage]]] = defaultdict(list)
        stamps: dict[int, set[int]] = defaultdict(set)
        nxt = 0
        for index, record in enumerate(bag_io.read_bag(self.path, self._topics)):
            k = owner[index]
            pending[k].append((index, OutMessage(record.topic, record.msgtype, record.data)))
            if record.msgtype in IMAGE_MSGTYPES:
                stamps[k].add(header_stamp_ns(record.data))
            left[k] -= 1
            while nxt < len(members) and left[nxt] == 0:
                yield self._bundle(nxt, pending.pop(nxt, []), stamps.pop(nxt, set()), complete[nxt])
                nxt += 1

    def _bundle(self, k: int, items: list[tuple[int, OutMessage]], stamps: set[int], complete: bool) -> FrameBundle:
        messages = [m for _, m in sorted(items, key=lambda im: (self._rank(im[1]), im[0]))]
        return FrameBundle(k, min(stamps), self.path.name, messages, stamps=frozenset(stamps), complete=complete)
