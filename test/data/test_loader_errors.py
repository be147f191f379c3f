"""Bad dataset input raises DatasetError naming the file and the problem."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from protoocc_ros.data import DatasetError
from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset
from protoocc_ros.data.semantic_kitti import SemanticKittiDataset


@pytest.fixture()
def nus_root(synthetic_dataroot: Path, tmp_path: Path) -> Path:
    """A writable copy of the nuScenes part of the tiny sample."""
    root = tmp_path / "nus"
    for part in ("v1.0-mini", "samples", "gts", "maps"):
        shutil.copytree(synthetic_dataroot / part, root / part)
    return root


@pytest.fixture()
def kitti_root(synthetic_kitti_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "kitti"
    shutil.copytree(synthetic_kitti_root / "sequences" / "08", root / "sequences" / "08")
    return root


def _first_gt(ds: Occ3DNuScenesDataset) -> Path:
    return Path(ds.frames[0].gt_path)


def _rewrite_gt(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    np.savez_compressed(path, **arrays)


def test_missing_labels_file(nus_root):
    ds = Occ3DNuScenesDataset(nus_root, "v1.0-mini")
    _first_gt(ds).unlink()
    with pytest.raises(DatasetError, match=f"{_first_gt(ds)}: npz file is missing"):
        ds[0]


@pytest.mark.parametrize("change,match", [
    ({"semantics": np.zeros((200, 200, 8), np.uint8)},
     r"'semantics' has shape \(200, 200, 8\); expected \(200, 200, 16\)"),
    ({"semantics": np.zeros((200, 200, 16), np.float32)}, "'semantics' has dtype float32; expected an integer"),
    ({"semantics": np.full((200, 200, 16), 40, np.uint8)}, "holds label 40 outside the class range"),
    ({"mask_camera": np.full((200, 200, 16), 3, np.uint8)}, "mask 'mask_camera' holds values outside"),
])
def test_bad_ground_truth_arrays(nus_root, change, match):
    ds = Occ3DNuScenesDataset(nus_root, "v1.0-mini")
    _rewrite_gt(_first_gt(ds), **change)
    with pytest.raises(DatasetError, match=match) as info:
        ds[0]
    assert str(_first_gt(ds)) in str(info.value)


def test_ground_truth_without_a_mask(nus_root):
    ds = Occ3DNuScenesDataset(nus_root, "v1.0-mini")
    gt = _first_gt(ds)
    with np.load(gt) as data:
        np.savez_compressed(gt, semantics=data["semantics"], mask_camera=data["mask_camera"])
    with pytest.raises(DatasetError, match=r"missing arrays \['mask_lidar'\]"):
        ds[0]


def test_unreadable_and_missing_images(nus_root):
    ds = Occ3DNuScenesDataset(nus_root, "v1.0-mini")
    image = Path(ds.frames[1].image_paths[2])
    image.write_bytes(b"this is not a jpeg")
    with pytest.raises(DatasetError, match=f"{image}: unreadable image"):
        ds[1]
    image.unlink()
    with pytest.raises(DatasetError, match=f"{image}: image file is missing"):
        ds[1]


def test_bad_tables_splits_and_scenes(nus_root):
    with pytest.raises(DatasetError, match="v1.0-trainval: nuScenes table directory is missing"):
        Occ3DNuScenesDataset(nus_root, "v1.0-trainval")
    with pytest.raises(DatasetError, match=r"scenes \['scene-0999'\] are not in scene.json"):
        Occ3DNuScenesDataset(nus_root, "v1.0-mini", scenes=["scene-0999"])
    with pytest.raises(DatasetError, match="no split 'test'"):
        Occ3DNuScenesDataset(nus_root, "v1.0-mini", split="test")
    with pytest.raises(DatasetError, match="grid_size"):
        Occ3DNuScenesDataset(nus_root, "v1.0-mini", grid_size=(100, 100, 16))
    (nus_root / "v1.0-mini" / "sample.json").unlink()
    with pytest.raises(DatasetError, match="sample.json: nuScenes file is missing"):
        Occ3DNuScenesDataset(nus_root, "v1.0-mini")


def test_kitti_bad_voxel_files(kitti_root):
    ds = SemanticKittiDataset(kitti_root)
    label = kitti_root / "sequences" / "08" / "voxels" / "000000.label"
    raw = np.fromfile(label, dtype=np.uint16)
    raw[:10].tofile(label)
    with pytest.raises(DatasetError, match=f"{label}: 10 uint16 labels; expected 2097152"):
        ds[0]
    raw[5] = 1234
    raw.tofile(label)
    with pytest.raises(DatasetError, match="raw label 1234 is outside the semantic-kitti.yaml learning map"):
        ds[0]
    raw[5] = 0
    raw.tofile(label)
    invalid = label.with_suffix(".invalid")
    invalid.write_bytes(b"\x00" * 7)
    with pytest.raises(DatasetError, match=f"{invalid}: 7 bytes; expected 262144"):
        ds[0]


def test_kitti_missing_files(kitti_root):
    seq = kitti_root / "sequences" / "08"
    (seq / "image_2" / "000001.png").unlink()
    ds = SemanticKittiDataset(kitti_root, sequences=["8"])
    with pytest.raises(DatasetError, match="000001.png: image file is missing"):
        ds[1]
    with pytest.raises(DatasetError, match=r"split 'val' \(\['08'\]\)|sequences \['00'\] are missing"):
        SemanticKittiDataset(kitti_root, sequences=["00"])
    (seq / "calib.txt").write_text("P2: 1 2 3\n")
    with pytest.raises(DatasetError, match="calib.txt: P2 has 3 values; expected 12"):
        SemanticKittiDataset(kitti_root)
    (seq / "calib.txt").unlink()
    with pytest.raises(DatasetError, match="calib.txt: KITTI calibration is missing"):
        SemanticKittiDataset(kitti_root)
