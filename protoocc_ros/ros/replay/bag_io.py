"""rosbag2 read/write with `rosbags` (docs/architecture.md "ROS replacements": replaces rosbag2_py; sqlite3 and mcap
storage, CDR payloads)."""
from __future__ import annotations

import importlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from protoocc_ros.package_files import find_package_file, package_file_candidates

# rosbag2 storage name -> rosbags storage plugin.
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
GRID_MSGTYPE = "protoocc_ros/msg/SemanticOccupancyGrid"
_GRID_MSG_FILE = "SemanticOccupancyGrid.msg"


class BagIOError(Exception):
    """A bag cannot be opened, read or written; the message names the path/topic/type and what was expected."""


@dataclass(frozen=True)
class BagMessage:
    """One serialized message of a bag."""

    topic: str
    msgtype: str         # "pkg/msg/Name"
    timestamp_ns: int    # receive/log time (ns)
    data: bytes          # CDR bytes as produced by rclpy.serialization.serialize_message


def grid_msg_definition() -> str:
    """Text of msg/SemanticOccupancyGrid.msg (checkout, or the installed share/protoocc_ros/msg)."""
    path = find_package_file("msg", _GRID_MSG_FILE)
    if path is None:
        looked = [str(p) for p in package_file_candidates("msg", _GRID_MSG_FILE)]
        raise BagIOError(f"message definition {_GRID_MSG_FILE} not found; looked in {looked}")
    return path.read_text()


def project_typestore() -> Any:
    """rosbags typestore of ROS 2 Kilted plus protoocc_ros/msg/SemanticOccupancyGrid (from the msg/ text)."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(grid_msg_definition(), GRID_MSGTYPE))
    return store


def ros_type_name(msg_or_cls: Any) -> str:
    """'pkg/msg/Name' of an rclpy message instance or class (e.g. sensor_msgs.msg.Image -> sensor_msgs/msg/Image)."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    parts = cls.__module__.split(".")
    if len(parts) < 3 or parts[1] not in {"msg", "srv", "action"}:
        raise BagIOError(f"{cls.__module__}.{cls.__name__} is not a generated ROS message class")
    return f"{parts[0]}/{parts[1]}/{cls.__name__}"


def message_class(msgtype: str) -> type:
    """The rclpy message class of 'pkg/msg/Name' (import of pkg.msg)."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise BagIOError(f"message type {msgtype!r}: expected 'pkg/msg/Name'")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise BagIOError(f"message type {msgtype!r} is not importable in this environment: {exc}") from exc


def serialize(msg: Any) -> bytes:
    """CDR bytes of an rclpy message."""
    from rclpy.serialization import serialize_message

    return serialize_message(msg)


def deserialize(record: BagMessage) -> Any:
    """The rclpy message of a bag record."""
    from rclpy.serialization import deserialize_message

    return deserialize_message(record.data, message_class(record.msgtype))


class BagWriter:
    """Writes CDR messages to a new rosbag2 directory; a connection per topic is added on its first message.

    Use as a context manager: `with BagWriter(path, "mcap") as bag: bag.write(topic, msg, t_ns)`.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", typestore: Any | None = None) -> None:
        if storage not in STORAGES:
            raise BagIOError(f"bag {path}: storage {storage!r} unknown, expected one of {sorted(STORAGES)}")
        self.path = Path(path)
        self.storage = storage
        self._typestore = typestore if typestore is not None else project_typestore()
        try:
            self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        except WriterError as exc:
            raise BagIOError(f"bag {self.path}: {exc}") from exc
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def open(self) -> BagWriter:
        try:
            self._writer.open()
        except WriterError as exc:
            raise BagIOError(f"bag {self.path}: {exc}") from exc
        self._open = True
        return self

    def close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False

    def __enter__(self) -> BagWriter:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def write_raw(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        """Append CDR bytes `data` of type `msgtype` on `topic` at `timestamp_ns` (ns)."""
        if not self._open:
            raise BagIOError(f"bag {self.path}: write to {topic} before open()")
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype not in self._typestore.fielddefs:
                raise BagIOError(f"bag {self.path}: topic {topic} has type {msgtype!r} that the typestore "
                                 f"does not know (no message definition to store)")
            conn = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
            self._connections[topic] = conn
            self.counts[topic] = 0
        elif conn.msgtype != msgtype:
            raise BagIOError(f"bag {self.path}: topic {topic} was {conn.msgtype}, got a {msgtype} message")
        self._writer.write(conn, int(timestamp_ns), bytes(data))
        self.counts[topic] += 1

    def write(self, topic: str, msg: Any, timestamp_ns: int) -> None:
        """Append an rclpy message (serialized to CDR)."""
        self.write_raw(topic, ros_type_name(msg), serialize(msg), timestamp_ns)


def _open_reader(path: str | Path) -> Reader:
    path = Path(path)
    if not path.exists():
        raise BagIOError(f"bag {path} does not exist")
    try:
        return Reader(path)
    except (ReaderError, FileNotFoundError) as exc:
        raise BagIOError(f"bag {path}: {exc}") from exc


def bag_topics(path: str | Path) -> dict[str, str]:
    """Topic -> 'pkg/msg/Name' of every connection in the bag."""
    with _open_reader(path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages of the bag (optionally only `topics`) in timestamp order."""
    wanted = set(topics) if topics is not None else None
    with _open_reader(path) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            raise BagIOError(f"bag {path}: none of the topics {sorted(wanted)} is recorded "
                             f"(has {sorted(c.topic for c in reader.connections)})")
        for conn, timestamp, data in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(data))


class BagRecorder:
    """A BagWriter owned by one background thread (sqlite3 connections are thread-bound): `put` from any
    thread (e.g. subscription callbacks) queues a message, `close` writes what is queued and closes the bag.
    A write error is kept and raised by `close`."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        self._writer = BagWriter(path, storage)   # validates storage / path before the thread starts
        self.path, self.storage = self._writer.path, storage
        self._queue: queue.Queue[tuple[str, str, bytes, int] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bag-recorder {self.path.name}", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._error is not None:
            raise BagIOError(f"bag {self.path}: {self._error}") from self._error

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._writer.counts)

    def put(self, topic: str, msgtype: str, data: bytes, timestamp_ns: int) -> None:
        self._queue.put((topic, msgtype, bytes(data), int(timestamp_ns)))

    def close(self, timeout_s: float = 30.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout_s)
        if self._error is not None:
            raise BagIOError(f"bag {self.path}: recording failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            self._writer.open()
        except BaseException as exc:  # reported by __init__
            self._error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while (item := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        self._writer.write_raw(*item)
                    except BagIOError as exc:
                        self._error = exc
        finally:
            self._writer.close()
