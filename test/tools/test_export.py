"""protoocc-export: the bundled checkpoint to ONNX, checked against PyTorch, with a metadata sidecar."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from protoocc_ros.tools.export import main
from protoocc_ros.training.checkpoint import default_checkpoint_path


def test_bundled_checkpoint_exports_and_matches_pytorch(synthetic_dataroot: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.onnx"
    code = main(["--set", f"dataset.dataroot={synthetic_dataroot}", "--output", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert out.stat().st_size > 1_000_000  # the weights are in the graph
    assert meta["checkpoint"] == str(default_checkpoint_path())
    assert meta["image_size"] == [96, 176] and len(meta["cameras"]) == 6 and meta["opset"] >= 20
    assert len(meta["checks"]) == 2
    for check in meta["checks"]:
        assert check["argmax_agreement"] > 0.999
        assert check["max_abs_diff"] < 1e-3 * max(check["max_abs_logit"], 1.0)
    assert "argmax agreement" in printed.out


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
