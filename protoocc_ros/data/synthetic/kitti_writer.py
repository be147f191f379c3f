"""Writes synthetic scenes in the SemanticKITTI SSC layout (docs/architecture.md "Data") from a KITTI-like front camera.

  <root>/sequences/NN/image_2/NNNNNN.png, calib.txt (P0..P3, Tr), poses.txt (cam0 poses), times.txt
  <root>/sequences/NN/voxels/NNNNNN.label (uint16 raw SemanticKITTI ids, 256x256x32, indexed [x, y, z]),
                              .invalid / .occluded (bit-packed, 1 = never observed), .bin (bit-packed occupancy)
The grid is the velodyne frame range [0, -25.6, -2, 51.2, 25.6, 4.4] at 0.2 m. ``invalid`` = voxels that
neither the camera nor a virtual 360-degree HDL-64 at the velodyne sees (Occ3D-style ray rule).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from protoocc_ros.data.synthetic import world as W
from protoocc_ros.data.synthetic.frames import FrameOutput
from protoocc_ros.data.synthetic.rig import KITTI_VELO_HEIGHT
from protoocc_ros.geometry import invert_transform, make_transform

KITTI_BASELINE_P1 = 0.54   # metres between cam0 and cam1 (grey stereo pair)


def _row(M: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in np.asarray(M, dtype=np.float64).reshape(-1))


def write_calib(seq_dir: Path, P2: np.ndarray, Tr: np.ndarray) -> None:
    """calib.txt with P0..P3 (3x4, rectified cam0 frame) and Tr (velodyne -> cam0, 3x4)."""
    K = P2[:, :3]

    def shift(baseline: float) -> np.ndarray:
        return K @ np.hstack([np.eye(3), np.array([[baseline], [0.0], [0.0]])])

    lines = [f"P0: {_row(shift(0.0))}", f"P1: {_row(shift(-KITTI_BASELINE_P1))}", f"P2: {_row(P2)}",
             f"P3: {_row(shift(-KITTI_BASELINE_P1 + P2[0, 3] / K[0, 0]))}", f"Tr: {_row(Tr[:3])}"]
    (seq_dir / "calib.txt").write_text("\n".join(lines) + "\n")


def cam0_poses(scene: W.Scene, frames: list[int], Tr: np.ndarray) -> list[np.ndarray]:
    """Poses of cam0 in the cam0 frame of the first frame (poses.txt convention)."""
    velo_in_world = [make_transform(None, scene.ego_positions[f] + (0.0, 0.0, KITTI_VELO_HEIGHT)) for f in frames]
    cam0_in_world = [T @ invert_transform(Tr) for T in velo_in_world]
    first = invert_transform(cam0_in_world[0])
    return [first @ T for T in cam0_in_world]


def write_frame(seq_dir: Path, frame_id: int, out: FrameOutput) -> None:
    """image_2 PNG and the voxels/ files of one frame."""
    (seq_dir / "image_2").mkdir(parents=True, exist_ok=True)
    (seq_dir / "voxels").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(seq_dir / "image_2" / f"{frame_id:06d}.png"), cv2.cvtColor(out.images[0], cv2.COLOR_RGB2BGR))
    stem = seq_dir / "voxels" / f"{frame_id:06d}"
    out.labels.astype(np.uint16).reshape(-1).tofile(f"{stem}.label")
    invalid = ~(out.mask_camera | out.mask_lidar)
    np.packbits(invalid.reshape(-1)).tofile(f"{stem}.invalid")
    np.packbits(invalid.reshape(-1)).tofile(f"{stem}.occluded")
    np.packbits(((out.labels != 0) & ~invalid).reshape(-1)).tofile(f"{stem}.bin")


def write_sequence_meta(seq_dir: Path, scene: W.Scene, frames: list[int], P2: np.ndarray, Tr: np.ndarray,
                        period_s: float) -> None:
    """calib.txt, poses.txt and times.txt of a sequence."""
    seq_dir.mkdir(parents=True, exist_ok=True)
    write_calib(seq_dir, P2, Tr)
    (seq_dir / "poses.txt").write_text("".join(_row(T[:3]) + "\n" for T in cam0_poses(scene, frames, Tr)))
    (seq_dir / "times.txt").write_text("".join(f"{i * period_s:.6e}\n" for i in range(len(frames))))
