"""tf2_ros TransformListener replacement (docs/architecture.md "ROS replacements"): /tf and /tf_static into a TfBuffer.

``attach_tf_listener(node, buffer)`` subscribes a node the caller spins (``TransformListener(buffer, node)``).
:class:`TfListener` is ``TransformListener(buffer, node, spin_thread=True)``: the subscriptions live on a node of
their own, spun by an executor on a thread of their own, so the owner's executor never sees TF. That matters for a
fast /tf stream: rclpy's executor rebuilds its wait set from every entity of its nodes for each message it takes,
so in a node with a dozen camera subscriptions, services and publishers' event handlers one TFMessage cost ~420 us
of executor time (a 1 kHz robot_state_publisher: 42 % of a core, on the thread that also receives the cameras and
hands sets to the model). The listener's executor waits on two subscriptions, pauses ``BATCH_S`` after each wake
and then takes every message queued meanwhile: one wait per ~10 messages of a 1 kHz stream (12 % of a core for
2000 transforms per second, most of it rclpy turning CDR into message objects). The listener node
(``<owner>_tf_listener``) takes no process-wide arguments (a ``__node:=`` remap would give it the owner's name); it
subscribes to the owner's resolved /tf and /tf_static names, so the owner's topic remaps and namespace apply.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from protoocc_ros.ros.inputs.tf_buffer import TfBuffer

__all__ = ["attach_tf_listener", "TfListener", "DRAIN_LIMIT", "BATCH_S"]

DRAIN_LIMIT = 200  # messages taken per wake at most, so /tf_static and shutdown get their turn
BATCH_S = 0.01     # the listener thread's pause after each wake (TF reaches the buffer at most this much later)


def _take(sub: Any) -> Any:
    """The next message queued on ``sub`` (None when there is none), as the executor takes it."""
    with sub.handle:
        taken = sub.handle.take_message(sub.msg_type, sub.raw)
    return None if taken is None else taken[0]


def attach_tf_listener(node: Any, buffer: TfBuffer, callback_group: Any = None,
                       on_message: Callable[[Any, bool], None] | None = None,
                       horizon: Callable[[], int | None] | None = None,
                       topics: tuple[str, str] = ("/tf", "/tf_static"), drain: bool = False) -> list[Any]:
    """TransformListener: subscribe ``node`` to /tf and /tf_static (tf2_ros QoS) and feed ``buffer``.

    ``on_message(msg, static)`` (optional) sees every TFMessage after it was stored; ``horizon()`` (optional) is the
    buffer's ``horizon_ns`` for dynamic transforms (TfBuffer ``future_limit_s``). ``drain``: each callback also
    takes the messages already queued on its subscription (one wait of the executor for many messages).
    Returns the subscriptions.
    """
    from tf2_msgs.msg import TFMessage

    from protoocc_ros.ros.runtime.qos import tf_qos, tf_static_qos

    subs: list[Any] = []

    def feed(static: bool) -> Callable[[Any], None]:
        authority = "/tf_static" if static else "/tf"

        def handle(msg: Any) -> None:
            buffer.add_message(msg, static=static, authority=authority,
                               horizon_ns=None if static or horizon is None else horizon())
            if on_message is not None:
                on_message(msg, static)

        def callback(msg: Any) -> None:
            handle(msg)
            if drain:
                sub = subs[1 if static else 0]
                for _ in range(DRAIN_LIMIT):
                    queued = _take(sub)
                    if queued is None:
                        break
                    handle(queued)
        return callback

    subs.append(node.create_subscription(TFMessage, topics[0], feed(False), tf_qos(), callback_group=callback_group))
    subs.append(node.create_subscription(TFMessage, topics[1], feed(True), tf_static_qos(),
                                         callback_group=callback_group))
    return subs


class TfListener:
    """/tf and /tf_static fed to ``buffer`` on a node and a thread of their own (module docstring); ``close()``
    stops the thread and destroys that node. ``horizon`` and ``on_message`` as in :func:`attach_tf_listener`."""

    def __init__(self, owner: Any, buffer: TfBuffer, horizon: Callable[[], int | None] | None = None,
                 on_message: Callable[[Any, bool], None] | None = None) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.buffer = buffer
        topics = (owner.resolve_topic_name("/tf"), owner.resolve_topic_name("/tf_static"))
        self.node = Node(f"{owner.get_name()}_tf_listener", namespace=owner.get_namespace(), context=owner.context,
                         use_global_arguments=False, enable_rosout=False, start_parameter_services=False)
        self.subscriptions = attach_tf_listener(self.node, buffer, on_message=on_message, horizon=horizon,
                                                topics=topics, drain=True)
        self.executor = SingleThreadedExecutor(context=owner.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, name="tf_listener", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        context = self.node.context
        while not self._stop.is_set() and context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
                self._stop.wait(BATCH_S)  # let a fast stream queue up: the next wake takes several messages
            except Exception:  # the context shut down under the wait (Ctrl-C): the end of the loop, not an error
                if self._stop.is_set() or not context.ok():
                    return
                raise

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread, then destroy the listener node (lifecycle cleanup, shutdown)."""
        self._stop.set()
        self.thread.join(timeout_s)
        self.executor.shutdown(timeout_sec=timeout_s)
        self.node.destroy_node()
