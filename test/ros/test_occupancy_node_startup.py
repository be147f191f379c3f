"""occupancy_node refuses a bad configuration with one clear reason and no traceback.

With autostart (the default) the process exits with code 2 and one FATAL line; a managed node
(autostart false) answers FAILURE to `configure`, logs "configure failed: <reason>" and stays
unconfigured, so one process tries every bad config / checkpoint / camera case in turn.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ros_helpers import REPO, NodeProcess, ros_context, wait_exit
from test_occupancy_node import MAIN, Rig

from protoocc_ros.checkpoints.format import save_checkpoint
from protoocc_ros.config import load_config
from protoocc_ros.model import build_model
from protoocc_ros.ros.runtime.lifecycle import LifecycleClient

MODULE = "protoocc_ros.ros.nodes.occupancy_node"
SMALL = {"dataset": {"cameras": ["CAM_FRONT", "CAM_BACK"], "image_size": [48, 88],
                     "point_cloud_range": [-8.0, -8.0, -1.0, 8.0, 8.0, 5.4], "grid_size": [40, 40, 16]},
         "model": {"query_size": [20, 20, 4], "prototypes": {"num_prototypes": 18}}}
EXIT_CASES = ("missing_checkpoint", "bad_device", "python_tag_config")  # autostart: the process exits
ALIAS_BOMB = ('name: [&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"],\n'
              + "".join(f"  &{n} [{', '.join([f'*{p}'] * 9)}],\n" for p, n in zip("abcdefg", "bcdefgh"))
              + f"  [{', '.join(['*h'] * 9)}]]\n")  # inside a value: 9^9 strings once expanded, in 400 bytes


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump({"base": str(REPO / "config" / "demo.yaml"), **data}))
    return path


def configure_failures(node: NodeProcess, cases: dict[str, dict[str, Any]]) -> dict[str, tuple[bool, str, str]]:
    """Per case: set its parameters on the unconfigured node, configure; (success, state, new log text)."""
    out = {}
    with ros_context() as ctx:
        rig = Rig(ctx)
        lifecycle = LifecycleClient(rig.node, f"/{MAIN}", rig.executor)
        assert lifecycle.get_state(timeout_s=60.0) == "unconfigured", node.output()
        for name, params in cases.items():
            assert all(r.successful for r in rig.set_params(params)), (name, node.output())
            before = len(node.output())
            ok = lifecycle.change_state("configure")
            out[name] = (ok, lifecycle.get_state(), node.output()[before:])
        rig.executor.shutdown()
        rig.node.destroy_node()
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, str]]:
    """Start the exiting cases and the managed node at once; collect (exit code or configure result, output)."""
    tmp = tmp_path_factory.mktemp("startup")
    small = write_config(tmp / "small.yaml", SMALL)
    other = write_config(tmp / "other.yaml", {**SMALL, "model": {**SMALL["model"], "encoder": {"num_layers": 2}}})
    cfg = load_config(other)
    good_for_other = save_checkpoint(tmp / "other.safetensors", build_model(cfg), cfg)
    small_cfg = load_config(small)
    good = save_checkpoint(tmp / "small.safetensors", build_model(small_cfg), small_cfg)
    corrupt = save_checkpoint(tmp / "corrupt.safetensors", build_model(small_cfg), small_cfg)
    corrupt.write_bytes(corrupt.read_bytes()[:-100])  # truncated weights, metadata left as it was
    bad_value = write_config(tmp / "bad.yaml", {"dataset": {"voxel_size": -0.4}})
    bomb = tmp / "bomb.yaml"
    bomb.write_text(f"base: {REPO / 'config' / 'demo.yaml'}\n" + ALIAS_BOMB)
    tagged = tmp / "tagged.yaml"
    tagged.write_text(f"base: {REPO / 'config' / 'demo.yaml'}\nname: !!python/object/apply:os.system ['true']\n")
    base = {"device": "cpu", "config_file": str(small)}
    exiting = {
        "missing_checkpoint": NodeProcess(MODULE, tmp / "missing.log",
                                          params={**base, "checkpoint": str(tmp / "nope.safetensors")}),
        "bad_device": NodeProcess(MODULE, tmp / "device.log", params={**base, "device": "tpu"}),
        "python_tag_config": NodeProcess(MODULE, tmp / "tagged.log", params={**base, "config_file": str(tagged)}),
    }
    managed = NodeProcess(MODULE, tmp / "managed.log", params={**base, "autostart": False}, node_name=MAIN)
    valid = {"config_file": str(small), "checkpoint": str(good), "cameras": [""]}
    results: dict[str, tuple[Any, str]] = {}
    try:
        failures = configure_failures(managed, {
            "corrupt_checkpoint": {**valid, "checkpoint": str(corrupt)},
            "mismatched_checkpoint": {**valid, "checkpoint": str(good_for_other)},
            "invalid_config": {**valid, "config_file": str(bad_value)},
            "missing_config": {**valid, "config_file": str(tmp / "absent.yaml")},
            "alias_bomb_config": {**valid, "config_file": str(bomb)},
            "checkpoint_directory": {**valid, "checkpoint": str(tmp)},
        })
        results.update({name: ((ok, state), text) for name, (ok, state, text) in failures.items()})
    finally:
        assert managed.stop() == 0, managed.output()
    results.update({name: wait_exit(node, timeout_s=90.0) for name, node in exiting.items()})
    assert "Traceback" not in managed.output(), managed.output()
    return results


@pytest.mark.parametrize(
    "case,expected",
    [
        ("missing_checkpoint", r"'checkpoint' = '.*nope.safetensors': file not found"),
        ("bad_device", r"'device' = 'tpu'"),
        ("corrupt_checkpoint", r"corrupt.safetensors.*cannot be loaded: CheckpointError.*corrupt"),
        ("mismatched_checkpoint", r"other.safetensors.*changes 1 setting\(s\) that define the weights "
                                  r"\(model.encoder.num_layers: checkpoint 2, given 1\).*leave the config empty"),
        ("invalid_config", r"'config_file'.*dataset.voxel_size"),
        ("missing_config", r"'config_file'.*absent.yaml.*not found"),
        ("alias_bomb_config", r"'config_file'.*bomb.yaml: not valid YAML: line 3, column 7: alias \*a refused"),
        ("python_tag_config", r"'config_file'.*tagged.yaml: not valid YAML: line 2, column 7: could not determine a "
                              r"constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'$"),
        ("checkpoint_directory", r"'checkpoint' = '.*startup\d*': is a directory"),
    ],
)
def test_bad_start_is_refused_with_the_reason(cases: dict[str, tuple[Any, str]], case: str, expected: str) -> None:
    result, output = cases[case]
    assert "Traceback" not in output, output
    assert "<unicode string>" not in output, output  # PyYAML's multi-line report
    if case in EXIT_CASES:  # autostart: exit code 2, one FATAL line with the reason
        assert result == 2, output
        fatal = [line for line in output.splitlines() if "FATAL" in line]
        assert len(fatal) == 1 and re.search(r"cannot start: .*" + expected, fatal[0]), output
    else:  # managed: configure answers FAILURE, the node stays unconfigured and says why
        assert result == (False, "unconfigured"), output
        failed = [line for line in output.splitlines() if "configure failed:" in line]
        assert len(failed) == 1 and re.search(expected, failed[0]), output
