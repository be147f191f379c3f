"""Start ROS 2 nodes of this package as subprocesses (what `ros2 launch` does on a ROS install).

Used by the demo and the benchmarks; the launch files in launch/ describe the same pipelines for a
normal ROS 2 install.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def ros_param_text(value: Any) -> str:
    """A parameter value as ``--ros-args -p name:=value`` expects it (YAML syntax)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(ros_param_text(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


class NodeProcess:
    """A node running in a subprocess (``python -m module --ros-args ...``); its output goes to ``log_path``."""

    def __init__(self, module: str, log_path: Path, params: dict[str, Any] | None = None,
                 params_file: Path | None = None, args: list[str] | None = None,
                 env: dict[str, str] | None = None, node_name: str | None = None, cwd: Path | None = None) -> None:
        ros_args = ["--ros-args"] + (["-r", f"__node:={node_name}"] if node_name else [])
        if params_file is not None:
            ros_args += ["--params-file", str(params_file)]
        for key, value in (params or {}).items():
            ros_args += ["-p", f"{key}:={ros_param_text(value)}"]
        self.cmd = [sys.executable, "-m", module, *(args or []), *ros_args]
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open for the child's lifetime, closed in close()
        child_env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
        child_env.update(env or {})
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=child_env, cwd=cwd)

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float) -> int:
        """Wait for the process to exit on its own; returns the exit code (raises TimeoutExpired)."""
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

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
