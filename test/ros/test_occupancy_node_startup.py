"""occupancy_node refuses to start on a bad configuration: one clear line, non-zero exit, no traceback."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from ros_helpers import REPO, NodeProcess, wait_exit

from protoocc_ros.config import load_config
from protoocc_ros.model import build_model
from protoocc_ros.training.checkpoint import save_checkpoint

MODULE = "protoocc_ros.ros.occupancy_node"
SMALL = {"dataset": {"cameras": ["CAM_FRONT", "CAM_BACK"], "image_size": [48, 88],
                     "point_cloud_range": [-8.0, -8.0, -1.0, 8.0, 8.0, 5.4], "grid_size": [40, 40, 16]},
         "model": {"query_size": [20, 20, 4], "prototypes": {"num_prototypes": 18}}}


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump({"base": str(REPO / "config" / "demo.yaml"), **data}))
    return path


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """Start every bad case at once (they exit within seconds), collect (exit code, output) per case."""
    tmp = tmp_path_factory.mktemp("startup")
    small = write_config(tmp / "small.yaml", SMALL)
    other = write_config(tmp / "other.yaml", {**SMALL, "model": {**SMALL["model"], "encoder": {"num_layers": 2}}})
    cfg = load_config(other)
    good_for_other = save_checkpoint(tmp / "other.safetensors", build_model(cfg), cfg)
    small_cfg = load_config(small)
    corrupt = save_checkpoint(tmp / "corrupt.safetensors", build_model(small_cfg), small_cfg)
    corrupt.write_bytes(corrupt.read_bytes()[:-100])  # truncated weights, metadata left as it was
    bad_value = write_config(tmp / "bad.yaml", {"dataset": {"voxel_size": -0.4}})
    base = {"device": "cpu", "config_file": str(small)}
    params = {
        "missing_checkpoint": {**base, "checkpoint": str(tmp / "nope.safetensors")},
        "corrupt_checkpoint": {**base, "checkpoint": str(corrupt)},
        "mismatched_checkpoint": {**base, "checkpoint": str(good_for_other)},
        "invalid_config": {**base, "config_file": str(bad_value)},
        "missing_config": {**base, "config_file": str(tmp / "absent.yaml")},
        "bad_device": {**base, "device": "tpu"},
        "camera_count": {**base, "cameras": ["CAM_FRONT"]},
    }
    nodes = {name: NodeProcess(MODULE, tmp / f"{name}.log", params=p) for name, p in params.items()}
    return {name: wait_exit(node, timeout_s=90.0) for name, node in nodes.items()}


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_checkpoint", r"'checkpoint' = '.*nope.safetensors': file not found"),
        ("corrupt_checkpoint", r"corrupt.safetensors.*cannot be loaded: CheckpointError.*corrupt"),
        ("mismatched_checkpoint", r"other.safetensors.*does not match.*num_layers"),
        ("invalid_config", r"'config_file'.*dataset.voxel_size"),
        ("missing_config", r"'config_file'.*absent.yaml.*not found"),
        ("bad_device", r"'device' = 'tpu'"),
        ("camera_count", r"'cameras' = \['CAM_FRONT'\].*takes 2 cameras"),
    ],
)
def test_bad_start_exits_non_zero_with_the_reason(cases: dict[str, tuple[int, str]], case: str,
                                                   expected: str) -> None:
    code, output = cases[case]
    assert code == 2, output
    assert "Traceback" not in output, output
    fatal = [line for line in output.splitlines() if "FATAL" in line]
    assert len(fatal) == 1, output
    assert re.search(expected, fatal[0]), fatal[0]
