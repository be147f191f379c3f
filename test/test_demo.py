"""The README's main job: replay -> occupancy_node -> evaluation_node over DDS writes its outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_demo_writes_report_renders_and_recording(tmp_path: Path) -> None:
    env = dict(os.environ, ROS_DOMAIN_ID=str(1 + (os.getpid() + 7) % 200), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    result = subprocess.run([sys.executable, "-m", "protoocc_ros.tools.demo", "--output-dir", str(tmp_path),
                             "--max-frames", "2", "--timeout", "400"],
                            env=env, capture_output=True, text=True, timeout=480)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["frames_replayed"] == 2
    assert summary["frames_evaluated"] >= 1
    assert 0.0 <= summary["miou"] <= 100.0
    for png in summary["renders"]:
        assert Path(png).stat().st_size > 10_000, png
    assert any(p.endswith("markers_view.png") for p in summary["renders"])
    assert any(Path(summary["recording"]).glob("*.mcap"))
    assert "report" in result.stdout and str(tmp_path) in result.stdout
