"""SemanticKITTI semantic scene completion loader (docs/architecture.md "Data"), in the official on-disk layout.

``sequences/NN/image_2/NNNNNN.png``, ``calib.txt`` (P2, Tr), ``poses.txt`` (cam0 poses), ``times.txt`` and
``voxels/NNNNNN.label`` (uint16 raw ids, 256 x 256 x 32 indexed [x, y, z] in the velodyne frame) with
``.invalid`` (bit-packed, 1 = never observed). Labels go through semantic-kitti.yaml's learning map as the
official completion evaluation does (raw 0 = empty; ids the map sends to "unlabeled" and invalid voxels
become 255). The ego frame is the velodyne frame; ``cam2ego = inv(Tr) @ T(-t2)`` with ``P2 = K [I | t2]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from protoocc_ros.classes import IGNORE_LABEL, KITTI_LEARNING_MAP, kitti_ssc_lut
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.io import read_rgb, require_file
from protoocc_ros.data.preprocessing import preprocess_camera_set, resize_images
from protoocc_ros.data.sequences import SceneDataset
from protoocc_ros.geometry import grid_shape, invert_transform, make_transform
from protoocc_ros.layouts import KITTI, KITTI_RANGE

KITTI_SPLITS = {"train": ["00", "01", "02", "03", "04", "05", "06", "07", "09", "10"], "val": ["08"],
                "test": [f"{i:02d}" for i in range(11, 22)]}
_LUT = kitti_ssc_lut()
_KNOWN = np.zeros(65536, dtype=bool)
_KNOWN[list(KITTI_LEARNING_MAP)] = True


def unpack_bits(packed: np.ndarray) -> np.ndarray:
    """Bit-packed voxel flags (MSB first, as semantic-kitti-api ``unpack``) -> uint8 0/1."""
    return np.unpackbits(packed)


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """calib.txt -> {'P0'.. 'P3': (3, 4), 'Tr': (4, 4)}."""
    out: dict[str, np.ndarray] = {}
    for line in require_file(path, "KITTI calibration").read_text().splitlines():
        if ":" not in line:
            continue
        key, values = line.split(":", 1)
        try:
            nums = np.array([float(v) for v in values.split()])
        except ValueError as exc:
            raise DatasetError(f"{path}: line {key!r} does not hold numbers") from exc
        if nums.size != 12:
            raise DatasetError(f"{path}: {key} has {nums.size} values; expected 12 (a 3x4 matrix)")
        out[key.strip()] = nums.reshape(3, 4)
    for key in ("P2", "Tr"):
        if key not in out:
            raise DatasetError(f"{path}: no {key} line")
    out["Tr"] = np.vstack([out["Tr"], [0.0, 0.0, 0.0, 1.0]])
    return out


def read_poses(path: Path) -> np.ndarray:
    """poses.txt -> (F, 4, 4) cam0 poses."""
    text = require_file(path, "KITTI poses").read_text().split()
    try:
        vals = np.array([float(v) for v in text])
    except ValueError as exc:
        raise DatasetError(f"{path}: not a list of numbers") from exc
    if vals.size % 12:
        raise DatasetError(f"{path}: {vals.size} numbers is not a multiple of 12 (one 3x4 pose per line)")
    poses = np.tile(np.eye(4), (vals.size // 12, 1, 1))
    poses[:, :3, :] = vals.reshape(-1, 3, 4)
    return poses


@dataclass
class KittiFrame:
    sequence: str
    frame_id: str
    image_path: Path
    label_path: Path | None
    invalid_path: Path | None
    timestamp: float
    ego2global: np.ndarray     # (4, 4) velodyne pose


class SemanticKittiDataset(SceneDataset):
    """SemanticKITTI SSC frames as sample dicts (one camera, ``image_2``)."""

    def __init__(self, dataroot: str | Path, split: str | None = None, sequences: Sequence[str] | None = None,
                 image_size: tuple[int, int] | None = None, point_cloud_range: Sequence[float] = KITTI_RANGE,
                 voxel_size: float = KITTI.voxel_size, grid_size: Sequence[int] | None = None, load_gt: bool = True,
                 camera: str = "image_2") -> None:
        """``sequences`` (e.g. ["00", "08"]) wins over ``split`` (train / val / test of SemanticKITTI);
        neither = every sequence present. ``image_size`` (H, W) of the network input; None = stored size."""
        super().__init__()
        root = Path(dataroot)
        self.seq_root = root / "sequences" if (root / "sequences").is_dir() else root / "dataset" / "sequences"
        if not self.seq_root.is_dir():
            raise DatasetError(f"{root}: no sequences/ directory (expected <dataroot>/sequences/NN/...)")
        self.image_size: tuple[int, int] | None = (
            (int(image_size[0]), int(image_size[1])) if image_size is not None else None)
        self.grid_size = tuple(grid_size) if grid_size is not None else grid_shape(point_cloud_range, voxel_size)
        self.load_gt = load_gt
        self.camera = camera
        present = sorted(p.name for p in self.seq_root.iterdir() if p.is_dir())
        if sequences is not None:
            names = [f"{int(s):02d}" for s in sequences]
            missing = [s for s in names if s not in present]
            if missing:
                raise DatasetError(f"{self.seq_root}: sequences {missing} are missing; present: {present}")
        elif split is not None:
            if split not in KITTI_SPLITS:
                raise DatasetError(f"SemanticKITTI split {split!r} is unknown; expected one of {sorted(KITTI_SPLITS)}")
            names = [s for s in KITTI_SPLITS[split] if s in present]
            if not names:
                raise DatasetError(f"{self.seq_root}: split {split!r} ({KITTI_SPLITS[split]}) has no sequence here")
        else:
            names = present
        self._calib: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for seq in names:
            self._add_sequence(seq)

    def _add_sequence(self, seq: str) -> None:
        d = self.seq_root / seq
        calib = read_calib(d / "calib.txt")
        P2, Tr = calib["P2"], calib["Tr"]
        K = P2[:, :3]
        t2 = np.linalg.solve(K, P2[:, 3])
        self._calib[seq] = (K, invert_transform(Tr) @ make_transform(None, -t2))
        poses = read_poses(d / "poses.txt")
        times_path = d / "times.txt"
        times = np.loadtxt(times_path, ndmin=1) if times_path.is_file() else None
        if self.load_gt:
            ids = sorted(p.stem for p in (d / "voxels").glob("*.label"))
        else:
            ids = sorted(p.stem for p in (d / self.camera).glob("*.png"))
        if not ids:
            raise DatasetError(f"{d}: no frames ({'voxels/*.label' if self.load_gt else self.camera + '/*.png'})")
        Tr_inv = invert_transform(Tr)
        for fid in ids:
            n = int(fid)
            if n >= len(poses):
                raise DatasetError(f"{d / 'poses.txt'}: has {len(poses)} poses; frame {fid} needs line {n + 1}")
            self._add_frame(seq, KittiFrame(
                sequence=seq, frame_id=fid, image_path=d / self.camera / f"{fid}.png",
                label_path=d / "voxels" / f"{fid}.label" if self.load_gt else None,
                invalid_path=d / "voxels" / f"{fid}.invalid" if self.load_gt else None,
                timestamp=float(times[n]) if times is not None and n < len(times) else n * 0.1,
                ego2global=Tr_inv @ poses[n] @ Tr))

    def load_targets(self, index: int) -> np.ndarray:
        """int64 (X, Y, Z) learning labels, 255 where ignored (invalid or unlabeled)."""
        f = self.frames[index]
        n = int(np.prod(self.grid_size))
        raw = np.fromfile(require_file(f.label_path, "SemanticKITTI voxel labels"), dtype=np.uint16)
        if raw.size != n:
            raise DatasetError(f"{f.label_path}: {raw.size} uint16 labels; expected {n} "
                               f"(grid {self.grid_size})")
        unknown = ~_KNOWN[raw]
        if unknown.any():
            raise DatasetError(f"{f.label_path}: raw label {int(raw[unknown][0])} is outside the "
                               "semantic-kitti.yaml learning map")
        packed = np.fromfile(require_file(f.invalid_path, "SemanticKITTI invalid mask"), dtype=np.uint8)
        if packed.size * 8 != n:
            raise DatasetError(f"{f.invalid_path}: {packed.size} bytes; expected {n // 8} (bit-packed grid)")
        labels = _LUT[raw].astype(np.int64)
        labels[unpack_bits(packed) == 1] = IGNORE_LABEL
        return labels.reshape(self.grid_size)

    def raw_images(self, index: int) -> np.ndarray:
        """uint8 (1, H, W, 3) image at the network input size (``sample["raw_images"]`` without the rest)."""
        image = read_rgb(self.frames[index].image_path)
        return resize_images([image], self.image_size or (image.shape[0], image.shape[1]))

    def sample_token(self, index: int) -> str:
        f = self.frames[index]
        return f"{f.sequence}/{f.frame_id}"

    def __getitem__(self, index: int) -> dict:
        f = self.frames[index]
        K, cam2ego = self._calib[f.sequence]
        image = read_rgb(f.image_path)
        size = self.image_size or (image.shape[0], image.shape[1])
        pre = preprocess_camera_set([image], [K], [cam2ego], size)
        S = np.diag([size[1] / image.shape[1], size[0] / image.shape[0], 1.0])
        item = {
            "images": pre.images, "lidar2img": pre.lidar2img, "ego2global": torch.from_numpy(f.ego2global.copy()),
            "timestamp": f.timestamp, "scene": f.sequence, "frame_index": self.frame_position(index, f.sequence),
            "sample_token": f"{f.sequence}/{f.frame_id}", "raw_images": pre.raw,
            "intrinsics": torch.from_numpy((S @ K)[None].astype(np.float32)),
            "cam2ego": torch.from_numpy(cam2ego[None].copy()),
        }
        if self.load_gt:
            sem = self.load_targets(index)
            ones = torch.ones(self.grid_size, dtype=torch.bool)
            item.update({"semantics": torch.from_numpy(sem), "mask_camera": ones, "mask_lidar": ones.clone()})
        return item

