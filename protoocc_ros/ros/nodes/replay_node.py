"""replay_node (docs/architecture.md "ROS interfaces"): datasets and rosbag2 recordings -> camera, TF, /clock and
ground-truth topics.

Frames are paced at `rate` × real time (stamp differences, each gap capped at `max_frame_gap_s`; rate 0 =
no pacing) and/or by the consumer: with `wait_for_topic` set, frame k+1 is published only after a message
stamped like frame k arrived on that topic (or `wait_timeout_s` passed). At the end (unless `loop`) the node
publishes a JSON summary on /replay/done (std_msgs/String, reliable + transient local), finishes the
recording and exits with status 0 — so a script can run replay, occupancy_node and evaluation_node as
subprocesses and wait for replay (and evaluation, which also listens to /replay/done) to exit.

Recording (`record_path` non-empty): every topic of `record_topics` is subscribed (raw CDR, QoS matched to its
publisher once it appears in the graph) and written with rosbags (`record_storage` mcap or sqlite3); the bag
timestamp of a message is the replay clock (the stamp of the last published frame) when it arrives.

Delivery: publishers are reliable + transient local (depth `qos_depth`; /clock volatile). Before the first
frame the node waits for `wait_for_subscribers` and the `wait_for_topic` publisher, then `startup_settle_s`;
before /replay/done it waits until reliable subscribers acknowledged everything (`ack_timeout_s`). With
`resend_after_s` a frame whose output does not come is published again (without its ground truth), for
consumers on lossy sensor QoS.
"""
from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import rclpy
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String

from protoocc_ros.ros.nodes.replay_params import ReplayNodeParams
from protoocc_ros.ros.publishing import msg_builders as mb
from protoocc_ros.ros.replay import bag_io
from protoocc_ros.ros.replay.sources import open_source
from protoocc_ros.ros.replay.types import (
    CLOCK_TOPIC,
    TF_STATIC_TOPIC,
    FrameBundle,
    ReplaySource,
    ReplaySourceError,
    header_stamp_ns,
)
from protoocc_ros.ros.runtime.params import declared_params
from protoocc_ros.ros.runtime.qos import latched_qos, reliable_qos

NODE_NAME = "replay_node"
PARAMS = ReplayNodeParams
_LATCHED_TOPICS = (TF_STATIC_TOPIC, mb.DONE_TOPIC)


class ReplayNodeError(Exception):
    """Invalid replay parameters; the message names the parameter and value."""


class TopicTaps:
    """Raw subscriptions to topics whose type/QoS are taken from their publishers once they show up in the graph."""

    def __init__(self, node: Node, callback: Callable[[str, str, bytes], None]) -> None:
        self._node = node
        self._callback = callback
        self._wanted: set[str] = set()
        self.subscribed: dict[str, str] = {}     # topic -> msgtype
        self._subs: dict[str, Any] = {}
        node.create_timer(0.2, self.discover, clock=RosClock(clock_type=ClockType.STEADY_TIME))

    def add(self, topic: str) -> None:
        self._wanted.add(topic)

    def discover(self) -> None:
        for topic in sorted(self._wanted - set(self.subscribed)):
            infos = self._node.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            msgtype = infos[0].topic_type
            try:
                msg_class = bag_io.message_class(msgtype)
            except bag_io.BagIOError as exc:
                self._node.get_logger().error(f"cannot subscribe to {topic}: {exc}")
                self._wanted.discard(topic)
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            qos = QoSProfile(depth=100,
                             reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self._subs[topic] = self._node.create_subscription(
                msg_class, topic,
                lambda data, t=topic, m=msgtype: self._callback(t, m, data), qos, raw=True)
            self.subscribed[topic] = msgtype

    def matched(self, topic: str) -> bool:
        sub = self._subs.get(topic)
        return sub is not None and sub.get_publisher_count() > 0


class ReplayNode(Node):
    """Publishes the frames of a replay source; optionally records topics to a bag."""

    def __init__(self, source: ReplaySource | None = None, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.p = declared_params(self, ReplayNodeParams, ReplayNodeError, NODE_NAME)
        try:
            self.source = source or open_source(
                self.p.dataroot, self.p.source_format, split=self.p.split, scenes=self.p.scenes,
                cameras=self.p.cameras, image_format=self.p.image_format,
                ground_truth=self.p.publish_ground_truth, bag_topics=self.p.bag_topics,
                version=self.p.version, sync_slop_s=self.p.sync_slop_s)
        except ReplaySourceError as exc:
            raise ReplayNodeError(f"{NODE_NAME}: cannot open dataroot {self.p.dataroot!r}: {exc}") from exc
        self._topic_pubs: dict[str, Any] = {}
        self._clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, self._qos(CLOCK_TOPIC))
        self._done_pub = self.create_publisher(String, mb.DONE_TOPIC, self._qos(mb.DONE_TOPIC))
        self.sim_time_ns = 0
        self._cond = threading.Condition()
        self._seen_stamps: set[int] = set()
        self._taps = TopicTaps(self, self._on_tap)
        self._bag: bag_io.BagRecorder | None = None
        if self.p.wait_for_topic:
            self._taps.add(self.p.wait_for_topic)
        if self.p.record_path:
            self._bag = bag_io.BagRecorder(self.p.record_path, self.p.record_storage)
            for topic in self.p.record_topics:
                self._taps.add(topic)
        self.stats: dict[str, Any] = {"frames": 0, "incomplete_sets": 0, "wait_timeouts": 0, "resends": 0,
                                      "first_stamp_ns": None, "last_stamp_ns": None}

    def _qos(self, topic: str) -> QoSProfile:
        """Reliable + transient local: a subscriber that asks for transient local gets the last qos_depth
        messages even when DDS matched it only after they were sent; /clock is volatile (no stale time)."""
        if topic in _LATCHED_TOPICS:
            return latched_qos(1)
        if topic == CLOCK_TOPIC:
            return reliable_qos(self.p.qos_depth)
        return latched_qos(self.p.qos_depth)

    def _publisher(self, topic: str, msgtype: str) -> Any:
        pub = self._topic_pubs.get(topic)
        if pub is None:
            pub = self.create_publisher(bag_io.message_class(msgtype), topic, self._qos(topic))
            self._topic_pubs[topic] = pub
        return pub

    # --- callbacks (executor thread) -------------------------------------------------------------------
    def _on_tap(self, topic: str, msgtype: str, data: bytes) -> None:
        with self._cond:
            if self._bag is not None and topic in self.p.record_topics:
                self._bag.put(topic, msgtype, data, self.sim_time_ns)
            if topic == self.p.wait_for_topic:
                try:
                    self._seen_stamps.add(header_stamp_ns(data))
                except ReplaySourceError as exc:
                    self.get_logger().error(f"{topic}: {exc}")
                self._cond.notify_all()

    # --- publishing loop (main thread) -----------------------------------------------------------------
    def publish_bundle(self, bundle: FrameBundle, resend: bool = False) -> None:
        """Publish /clock at the frame stamp, then the bundle's messages in order. A resend skips the ground
        truth (the evaluator must see each frame's ground truth once)."""
        self.sim_time_ns = bundle.stamp_ns
        self._clock_pub.publish(mb.clock_msg(bundle.stamp_ns))
        for out in bundle.messages:
            if not (resend and out.topic == mb.GROUND_TRUTH_TOPIC):
                self._publisher(out.topic, out.msgtype).publish(out.payload)
        if resend:
            self.stats["resends"] += 1
            return
        self.stats["frames"] += 1  # camera sets
        if not bundle.complete:
            self.stats["incomplete_sets"] += 1
        if self.stats["first_stamp_ns"] is None:
            self.stats["first_stamp_ns"] = bundle.stamp_ns
        self.stats["last_stamp_ns"] = bundle.stamp_ns

    def wait_for_output(self, bundle: FrameBundle) -> bool:
        """Block until wait_for_topic delivered a message stamped like one of the set's images (True) or
        wait_timeout_s passed; every resend_after_s without it the set is published again (sensor-QoS consumers
        can lose a message of a set). An incomplete set (a camera missing) expects no output."""
        if not bundle.complete:
            return True
        start = time.monotonic()
        deadline, resend = start + self.p.wait_timeout_s, self.p.resend_after_s
        next_resend = start + resend if resend > 0 else float("inf")
        with self._cond:
            self._seen_stamps &= set(bundle.stamps)    # late duplicates of earlier sets (resends, loops)
            while not (self._seen_stamps & bundle.stamps) and self.context.ok():
                now = time.monotonic()
                if now >= deadline:
                    self.stats["wait_timeouts"] += 1
                    self.get_logger().warning(f"no message stamped {bundle.stamp_ns} ns on "
                                              f"{self.p.wait_for_topic} within {self.p.wait_timeout_s} s; "
                                              "going on")
                    return False
                if now >= next_resend:
                    self.get_logger().info(f"no output for frame {bundle.index} after {now - start:.1f} s; "
                                           "publishing it again")
                    self.publish_bundle(bundle, resend=True)
                    next_resend = now + resend
                self._cond.wait(min(deadline, next_resend) - now)
            self._seen_stamps -= bundle.stamps
        return True

    def wait_until_ready(self, first: FrameBundle) -> None:
        """Create every publisher the replay will use (a bag's whole topic list, else the first set's), then wait
        for wait_for_subscribers and the wait_for_topic publisher: the first set goes to matched subscribers."""
        topics = getattr(self.source, "publisher_topics", None)
        for topic, msgtype in (topics() if topics else {m.topic: m.msgtype for m in first.messages}).items():
            self._publisher(topic, msgtype)
        start = time.monotonic()
        deadline = start + self.p.startup_timeout_s
        pending = list(self.p.wait_for_subscribers) + ([self.p.wait_for_topic] if self.p.wait_for_topic else [])
        while pending and self.context.ok() and time.monotonic() < deadline:
            pending = [t for t in pending if not self._ready(t)]
            time.sleep(0.05)
        if pending:
            self.get_logger().warning(f"still waiting for {pending} after {self.p.startup_timeout_s} s; starting")
        self.stats["startup_wait_s"] = round(time.monotonic() - start, 3)
        time.sleep(self.p.startup_settle_s)

    def _ready(self, topic: str) -> bool:
        if topic == self.p.wait_for_topic:
            return self._taps.matched(topic) and self.count_subscribers(topic) >= self.p.wait_for_topic_subscriptions
        pub = {CLOCK_TOPIC: self._clock_pub, mb.DONE_TOPIC: self._done_pub}.get(topic) or self._topic_pubs.get(topic)
        return pub is not None and pub.get_subscription_count() > 0

    def _bundles(self) -> Iterator[FrameBundle]:
        while True:
            empty = True
            for bundle in self.source.frames():
                empty = False
                yield bundle
            if not self.p.loop or empty:
                return

    def run(self) -> dict[str, Any]:
        """Publish every frame (paced), then the done summary; returns the summary."""
        bundles = self._bundles()
        first = next(bundles, None)
        if first is None:
            raise ReplayNodeError(f"{NODE_NAME}: source {self.source.describe()} has no frames")
        self.wait_until_ready(first)
        rate, target, prev = self.p.rate, time.monotonic(), first.stamp_ns
        t_start = time.monotonic()
        for bundle in _chain(first, bundles):
            if not self.context.ok():
                break
            if rate > 0:
                gap_s = min(max(bundle.stamp_ns - prev, 0) / 1e9, self.p.max_frame_gap_s)
                target += gap_s / rate
                time.sleep(max(0.0, target - time.monotonic()))
            prev = bundle.stamp_ns
            self.publish_bundle(bundle)
            if self.p.wait_for_topic:
                self.wait_for_output(bundle)
            if self.p.max_frames and self.stats["frames"] >= self.p.max_frames:
                break
        self.stats["wall_s"] = round(time.monotonic() - t_start, 3)
        return self.finish()

    def wait_for_delivery(self) -> bool:
        """Wait (up to ack_timeout_s) until every reliable subscriber acknowledged everything published: a
        process that exits earlier takes undelivered messages with it."""
        deadline = time.monotonic() + self.p.ack_timeout_s
        for pub in [self._clock_pub, *self._topic_pubs.values()]:
            left = max(0.0, deadline - time.monotonic())
            if not pub.wait_for_all_acked(rclpy.duration.Duration(seconds=left)):
                self.get_logger().warning(f"{pub.topic_name}: not every subscriber acknowledged within "
                                          f"ack_timeout_s={self.p.ack_timeout_s}")
                return False
        return True

    def finish(self) -> dict[str, Any]:
        """Wait for delivery, drain and close the recording, publish the summary on /replay/done."""
        if self.context.ok():
            self.stats["delivered"] = self.wait_for_delivery()
        if self._bag is not None:
            time.sleep(self.p.record_drain_s if self.context.ok() else 0.0)
            with self._cond:
                bag, self._bag = self._bag, None
            bag.close()
            self.stats["record"] = {"path": str(bag.path), "storage": bag.storage, "counts": bag.counts}
        summary = {**self.stats, "source": self.source.describe()}
        if self.context.ok():
            self._done_pub.publish(String(data=json.dumps(summary)))
            self._done_pub.wait_for_all_acked(rclpy.duration.Duration(seconds=2.0))
        self.get_logger().info(f"replay done: {json.dumps(summary)}")
        return summary

    def close_recording(self) -> None:
        """Close the bag if still open (shutdown before the end)."""
        with self._cond:
            bag, self._bag = self._bag, None
        if bag is not None:
            bag.close()


def _chain(first: FrameBundle, rest: Iterator[FrameBundle]) -> Iterator[FrameBundle]:
    yield first
    yield from rest


def main(argv: list[str] | None = None) -> int:
    """Entry point of `ros2 run protoocc_ros replay_node`; returns the exit status."""
    rclpy.init(args=argv if argv is not None else sys.argv)
    node: ReplayNode | None = None
    executor = SingleThreadedExecutor()
    spinner: threading.Thread | None = None
    try:
        node = ReplayNode()
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
        spinner.start()
        node.run()
        if not node.p.exit_when_done:
            while node.context.ok():
                time.sleep(0.2)
        return 0
    except (ReplayNodeError, ReplaySourceError, bag_io.BagIOError) as exc:
        print(f"replay_node: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        if node is not None:
            node.close_recording()
        executor.shutdown(timeout_sec=2.0)   # stops the spin loop of the spinner thread
        if spinner is not None:
            spinner.join(timeout=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def _spin(executor: SingleThreadedExecutor) -> None:
    with contextlib.suppress(ExternalShutdownException):
        executor.spin()


if __name__ == "__main__":
    sys.exit(main())
