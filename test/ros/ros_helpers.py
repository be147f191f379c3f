"""Shared helpers for ROS tests: a private ROS_DOMAIN_ID per test run, node subprocesses, message collection.

Importing this module pins ROS_DOMAIN_ID (derived from the pid of the pytest process) and keeps DDS
discovery on this host, so parallel test runs do not hear each other, and exports the package's Fast DDS
profile (protoocc_ros.ros.runtime.dds); subprocesses inherit all three.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from protoocc_ros.ros.runtime.dds import dds_profile_env
from protoocc_ros.ros.runtime.spin import ros_context  # noqa: F401 - re-exported for the tests
from protoocc_ros.tools.processes import NodeProcess as _NodeProcess

REPO = Path(__file__).resolve().parents[2]

if "PROTOOCC_TEST_ROS_DOMAIN_ID" not in os.environ:  # first import in this run decides, children inherit
    os.environ["PROTOOCC_TEST_ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
os.environ["ROS_DOMAIN_ID"] = os.environ["PROTOOCC_TEST_ROS_DOMAIN_ID"]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.update(dds_profile_env())  # the Fast DDS profile the launch files and the demo use
DOMAIN_ID = int(os.environ["ROS_DOMAIN_ID"])


class NodeProcess(_NodeProcess):
    """protoocc_ros.tools.processes.NodeProcess started in the repository root (test defaults)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cwd", REPO)
        super().__init__(*args, **kwargs)


def wait_exit(node: NodeProcess, timeout_s: float = 60.0) -> tuple[int, str]:
    """Wait for a node that is expected to exit by itself (e.g. on a start-up error); returns (code, output)."""
    try:
        code = node.wait(timeout_s)
    except subprocess.TimeoutExpired:
        node.stop()
        raise AssertionError(f"{node.cmd} did not exit within {timeout_s} s; output:\n{node.output()}") from None
    node.stop()
    return code, node.output()


def spin_until(executor: Any, predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; returns the last predicate value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return predicate()


class Collector:
    """Subscribes a node to topics and keeps every message received, per topic."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.messages: dict[str, list[Any]] = {}

    def listen(self, topic: str, msg_type: Any, qos: Any) -> "Collector":
        self.messages.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, self.messages[topic].append, qos)
        return self

    def of(self, topic: str) -> list[Any]:
        return self.messages.get(topic, [])
