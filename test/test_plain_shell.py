"""After set-up, the venv's console scripts and ``python -m protoocc_ros...`` work from a plain shell (no
sourced environment): the message libraries of the workspace are found without LD_LIBRARY_PATH /
AMENT_PREFIX_PATH (protoocc_ros/ros/runtime/typesupport.py)."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
NODES = {"occupancy_node", "replay_node", "evaluation_node"}


def plain_env() -> dict[str, str]:
    """What a new login shell has: no ROS, no venv, no sourced set-up; a private DDS domain for this run."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "ROS_DOMAIN_ID": str(1 + (os.getpid() + 100) % 200), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return env


def console_scripts() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return [line.split("=")[0].strip() for line in parser["options.entry_points"]["console_scripts"].splitlines()
            if line.strip()]


def test_every_console_script_runs_from_a_plain_shell(tmp_path: Path) -> None:
    """``<script> --help`` of every console script but the nodes (started below), all at once."""
    scripts = sorted(set(console_scripts()) - NODES)
    procs = {s: subprocess.Popen([str(VENV_BIN / s), "--help"], env=plain_env(), cwd=tmp_path, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for s in scripts}
    failed = {}
    for script, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failed[script] = out[-1500:]
    assert len(scripts) >= 10 and not failed, failed


def test_python_m_doctor_creates_its_graph_probe_from_a_plain_shell(tmp_path: Path) -> None:
    """``python -m``: the probe subscribes to /tf (tf2_msgs, built by the set-up), so its type support loads."""
    out = subprocess.run([sys.executable, "-m", "protoocc_ros.tools.doctor", "--wait", "0.2", "--device", "cpu"],
                         env=plain_env(),
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert "Could not load library" not in out.stdout + out.stderr, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.returncode == 0 and "no check failed" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]


def test_occupancy_node_console_script_starts_from_a_plain_shell(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([str(VENV_BIN / "occupancy_node"), "--ros-args", "-p", "device:=cpu"],
                                env=plain_env(), cwd=tmp_path,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120.0
            while time.monotonic() < deadline and proc.poll() is None and "active:" not in log.read_text():
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(30)
    text = log.read_text()
    assert "configured: config demo" in text and "active:" in text, text[-3000:]
    assert "Could not load library" not in text and "Traceback" not in text, text[-3000:]
