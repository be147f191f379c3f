"""Spin loops for the node entry points that end cleanly on Ctrl-C / SIGTERM, and a private rclpy context."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException


@contextmanager
def ros_context() -> Iterator[Context]:
    """A private rclpy Context (tests, benchmark probes), initialised for the block and shut down after it."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


def spin_until(executor: Executor, done: Callable[[], bool], period_s: float = 0.1) -> None:
    """Spin ``executor`` until ``done()`` is true or the ROS context is shut down.

    SIGINT/SIGTERM shut the context down asynchronously (rclpy's signal handler); when that happens
    between the ``rclpy.ok()`` check and ``spin_once``, rclpy raises (e.g. "failed to initialize wait
    set: the given context is not valid"). That is the normal end of the loop, not an error.
    """
    try:
        while rclpy.ok() and not done():
            try:
                executor.spin_once(timeout_sec=period_s)
            except Exception:
                if rclpy.ok():
                    raise
                return
    except (KeyboardInterrupt, ExternalShutdownException):
        return
