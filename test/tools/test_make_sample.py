"""protoocc-make-sample and the cached sample (ensure_sample / dataroot 'synthetic')."""
from __future__ import annotations

import json

import pytest

from protoocc_ros.data import DatasetError
from protoocc_ros.data.build import resolve_dataroot
from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset
from protoocc_ros.data.synthetic.sample import MARKER, SampleConfig, default_root, ensure_sample
from protoocc_ros.tools import make_sample

TINY = ["--train-scenes", "1", "--val-scenes", "1", "--frames", "2", "--image-size", "32x64", "--no-kitti",
        "--workers", "1", "--quiet"]


def test_cli_writes_a_loadable_dataroot_and_refuses_a_non_empty_directory(tmp_path, capsys):
    out = tmp_path / "sample"
    assert make_sample.main(["--out", str(out), *TINY]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataroot"] == str(out) and report["splits"] == {"train": ["scene-0001"], "val": ["scene-0002"]}
    ds = Occ3DNuScenesDataset(out, "v1.0-mini", split="train")
    assert len(ds) == 2 and ds[0]["raw_images"].shape == (6, 32, 64, 3)
    assert not (out / "semantic_kitti").exists()
    assert make_sample.main(["--out", str(out), *TINY]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_sample.main(["--image-size", "12"])
    assert make_sample.main(["--frames", "3"]) == 2                  # the cache holds the default sample only
    assert "--out" in capsys.readouterr().err


def test_ensure_sample_generates_once(tmp_path):
    cfg = SampleConfig(train_scenes=1, val_scenes=0, frames_per_scene=1, image_size=(32, 64), kitti=False, workers=1)
    root = tmp_path / "cache" / "sample"
    assert ensure_sample(root, cfg=cfg, progress=False) == root
    marker = (root / MARKER).stat().st_mtime_ns
    (root / "sentinel").write_text("kept")
    assert ensure_sample(root, cfg=cfg, progress=False) == root
    assert (root / MARKER).stat().st_mtime_ns == marker and (root / "sentinel").exists()
    assert not list(root.parent.glob(".*tmp*"))        # the temporary directory was renamed
    other = SampleConfig(train_scenes=1, val_scenes=0, frames_per_scene=2, image_size=(32, 64), kitti=False)
    with pytest.raises(DatasetError, match="holds a synthetic sample made with"):
        ensure_sample(root, cfg=other, progress=False)
    half = tmp_path / "half"
    half.mkdir()
    (half / "junk").write_text("x")
    with pytest.raises(DatasetError, match="without the completion marker"):
        ensure_sample(half, cfg=cfg, progress=False)


def test_dataroot_synthetic_means_the_cached_sample(synthetic_dataroot, synthetic_sample_config, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv("PROTOOCC_DATA_DIR", str(tmp_path))
    assert default_root(0) == tmp_path / "synthetic-v1-seed0"
    # 'synthetic' is the default sample; let the tiny one stand in for it (its marker names its own config)
    monkeypatch.setattr("protoocc_ros.data.synthetic.sample.SampleConfig", lambda seed=0: synthetic_sample_config)
    cached = default_root(synthetic_sample_config.seed)
    cached.symlink_to(synthetic_dataroot, target_is_directory=True)
    assert resolve_dataroot("synthetic", "occ3d") == cached
    assert resolve_dataroot("synthetic", "kitti") == cached / "semantic_kitti"
    assert resolve_dataroot("/data/nuscenes", "occ3d").as_posix() == "/data/nuscenes"
