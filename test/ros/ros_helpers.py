"""Shared helpers for ROS tests: a private ROS_DOMAIN_ID per test run, node subprocesses, message collection.

Importing this module pins ROS_DOMAIN_ID (derived from the pid of the pytest process) and keeps DDS
discovery on this host, so parallel test runs do not hear each other; subprocesses inherit both.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[2]

if "PROTOOCC_TEST_ROS_DOMAIN_ID" not in os.environ:  # first import in this run decides, children inherit
    os.environ["PROTOOCC_TEST_ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
os.environ["ROS_DOMAIN_ID"] = os.environ["PROTOOCC_TEST_ROS_DOMAIN_ID"]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
DOMAIN_ID = int(os.environ["ROS_DOMAIN_ID"])


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a node subprocess: this process's (venv, AMENT/LD/PYTHON paths, domain) + unbuffered."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env.update(extra or {})
    return env


class NodeProcess:
    """A node running in a subprocess (``python -m module --ros-args ...``); output goes to ``log_path``."""

    def __init__(self, module: str, log_path: Path, params: dict[str, Any] | None = None,
                 params_file: Path | None = None, args: list[str] | None = None,
                 env: dict[str, str] | None = None, node_name: str | None = None) -> None:
        ros_args = ["--ros-args"] + (["-r", f"__node:={node_name}"] if node_name else [])
        if params_file is not None:
            ros_args += ["--params-file", str(params_file)]
        for key, value in (params or {}).items():
            ros_args += ["-p", f"{key}:={_param_text(value)}"]
        self.cmd = [sys.executable, "-m", module, *(args or []), *ros_args]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=node_env(env),
                                     cwd=REPO)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit on its own; returns the exit code."""
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (like Ctrl-C), then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


def wait_exit(node: NodeProcess, timeout_s: float = 60.0) -> tuple[int, str]:
    """Wait for a node that is expected to exit by itself (e.g. on a start-up error); returns (code, output)."""
    try:
        code = node.wait(timeout_s)
    except subprocess.TimeoutExpired:
        node.stop()
        raise AssertionError(f"{node.cmd} did not exit within {timeout_s} s; output:\n{node.output()}") from None
    node.stop()
    return code, node.output()


@contextmanager
def ros_context() -> Iterator[Any]:
    """A private rclpy Context, initialised for the block and shut down after it."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


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
