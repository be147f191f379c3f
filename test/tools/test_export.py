"""protoocc-export: the bundled checkpoint to ONNX with its temporal memory, checked against PyTorch over a whole
held-out scene, with a metadata sidecar; the single-frame graph on request."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from protoocc_ros.checkpoints.format import default_checkpoint_path
from protoocc_ros.config import load_config
from protoocc_ros.tools.export import main


def test_bundled_checkpoint_exports_with_memory_and_matches_pytorch_over_a_held_out_scene(
        synthetic_dataroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.onnx"
    code = main(["--set", f"dataset.dataroot={synthetic_dataroot}", "--output", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 1_000_000  # the weights are in the graph
    assert meta["checkpoint"] == str(default_checkpoint_path()) and len(meta["weights_sha256"]) == 64
    assert meta["graph"] == "temporal" and set(meta["inputs"]) >= {"images", "lidar2img", "prev_features",
                                                                    "prev_valid", "ego_motion", "mean", "std"}
    assert set(meta["outputs"]) == {"logits", "features"}
    assert meta["image_size"] == list(load_config("demo").dataset.image_size)
    assert len(meta["cameras"]) == 6 and meta["opset"] >= 20
    assert meta["class_names"][17] == "free" and 0 < meta["max_hits_per_camera"] < 50 * 50 * 4
    frames = meta["check"]["frames"]
    assert meta["check"]["split"] == "val" and len(frames) == 3  # the whole held-out scene of the tiny sample
    assert [f["reset_reason"] for f in frames] == ["first_frame", None, None]
    assert all(f["onnx_reset_reason"] == f["reset_reason"] for f in frames)
    for check in frames:
        assert check["argmax_agreement"] > 0.999
        assert check["max_abs_diff"] < 1e-3 * max(check["max_abs_logit"], 1.0)
    assert "argmax agreement" in printed.out and "memory used" in printed.out


def test_single_frame_graph_is_still_exported_on_request(synthetic_dataroot: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "single.onnx"
    code = main(["--set", f"dataset.dataroot={synthetic_dataroot}", "--output", str(out), "--single-frame",
                 "--check-frames", "2"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["graph"] == "single_frame" and "prev_features" not in meta["inputs"]
    assert len(meta["check"]["frames"]) == 2 and meta["check"]["min_argmax_agreement"] > 0.999


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(default_checkpoint_path().read_bytes()[:5000])  # truncated weights, intact metadata
    shutil.copy(default_checkpoint_path().with_suffix(".json"), bad.with_suffix(".json"))
    code = main(["--checkpoint", str(bad), "--output", str(tmp_path / "x.onnx")])
    assert code == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_old_opset_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--opset", "17"]) == 2
    assert "opset" in capsys.readouterr().err
