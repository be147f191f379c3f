"""The types every replay source shares (docs/architecture.md "ROS interfaces" replay_node): the per-frame message
bundle, its messages, the source protocol and error, the topics replay publishes itself, and the header-stamp reader
of CDR payloads. sources.py (datasets, open_source) and bag_source.py (rosbag2) both build on this module."""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CLOCK_TOPIC", "TF_TOPIC", "TF_STATIC_TOPIC", "TF_MSGTYPE", "ReplaySourceError", "OutMessage", "FrameBundle",
           "ReplaySource", "header_stamp_ns"]

CLOCK_TOPIC = "/clock"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_MSGTYPE = "tf2_msgs/msg/TFMessage"


class ReplaySourceError(Exception):
    """A replay source cannot be opened or read; the message names the dataroot/bag and what was expected."""


@dataclass
class OutMessage:
    """One message to publish: an rclpy message, or CDR bytes of `msgtype` (from a bag)."""

    topic: str
    msgtype: str      # "pkg/msg/Name"
    payload: Any      # rclpy message or bytes


@dataclass
class FrameBundle:
    """Everything published for one camera set, in publishing order (/clock first, then /tf, ...)."""

    index: int                 # position in the replay (0-based)
    stamp_ns: int              # set stamp (ns, its earliest image); /clock is set to it
    scene: str
    messages: list[OutMessage] = field(default_factory=list)
    stamps: frozenset[int] = frozenset()  # every image stamp of the set (a consumer's output carries one of them)
    complete: bool = True      # every camera of the source is in the set (else no output is expected)

    def __post_init__(self) -> None:
        if not self.stamps:
            self.stamps = frozenset({self.stamp_ns})

    def topics(self) -> list[str]:
        return [m.topic for m in self.messages]


class ReplaySource(Protocol):
    """Something the replay node iterates over; `describe()` is logged and put into the done summary."""

    def frames(self) -> Iterator[FrameBundle]: ...

    def describe(self) -> dict[str, Any]: ...


def header_stamp_ns(cdr: bytes) -> int:
    """Header stamp (ns) of a CDR message whose first field is std_msgs/Header (4-byte encapsulation, sec, nanosec)."""
    if len(cdr) < 12:
        raise ReplaySourceError(f"CDR payload of {len(cdr)} bytes is too short to hold a header stamp")
    little = cdr[1] == 0x01   # encapsulation id 0x0001 = CDR little endian, 0x0000 = big endian
    sec, nanosec = struct.unpack("<iI" if little else ">iI", cdr[4:12])
    return sec * 1_000_000_000 + nanosec
