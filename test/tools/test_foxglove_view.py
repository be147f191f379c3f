"""protoocc-foxglove: the shipped layout file is the layout of the nuScenes rig (the client and the snapshot
render are exercised against a live node in test/ros/test_foxglove_bridge.py)."""
from __future__ import annotations

import json
from pathlib import Path

from protoocc_ros.layouts import NUSCENES_CAMERAS
from protoocc_ros.tools.foxglove_view import layout_json
from protoocc_ros.tools.foxglove_view import main as bridge_main

REPO = Path(__file__).resolve().parents[2]


def test_layout_file_is_the_bridge_layout_for_the_nuscenes_rig(tmp_path: Path) -> None:
    text = (REPO / "config" / "foxglove_layout.json").read_text()
    assert json.loads(text) == json.loads(layout_json(NUSCENES_CAMERAS))
    assert bridge_main(["layout", "--out", str(tmp_path / "layout.json")]) == 0
    assert (tmp_path / "layout.json").read_text() == text
    for topic in ["/occupancy_node/scene"] + [f"/occupancy_node/images/{cam}" for cam in NUSCENES_CAMERAS]:
        assert f'"{topic}"' in text
