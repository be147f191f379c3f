"""Helpers of the training tests: a tiny full-ProtoOcc config and a small sequence dataset of sample dicts."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from protoocc_ros.config import ProtoOccConfig, load_config
from protoocc_ros.data.preprocessing import preprocess_camera_set

TINY_OVERRIDES = [
    "dataset.image_size=[48,80]", "dataset.cameras=[CAM_FRONT,CAM_BACK]",
    "dataset.point_cloud_range=[-16.0,-16.0,-1.0,16.0,16.0,5.4]", "dataset.voxel_size=0.8",
    "dataset.grid_size=[40,40,8]", "model.query_size=[20,20,2]",
    "model.prototypes.num_prototypes=15", "model.embed_dims=16", "model.neck.channels=16",
    "model.backbone.width=8", "model.decoder.channels=8", "model.decoder.augmentations=[dropout+flip]",
    "train.warmup_steps=0", "train.lr=2e-3", "train.clip_length=2", "train.log_every=1",
    "train.checkpoint_every=1000", "train.num_workers=0",
]


def tiny_config(*extra: str) -> ProtoOccConfig:
    return load_config("demo", TINY_OVERRIDES + list(extra))


# Timestamps at nuScenes magnitude (~1.53e9 s). NUSCENES_STAMP is a multiple of 128 s, the spacing of float32
# there: frames at +63.0, +63.5, +64.0, +64.5 s straddle a float32 rounding boundary (+64 s), so a float32
# cast anywhere turns dt = 0.5 s into 0 s or 128 s (a 'gap' memory reset) and the tests see it.
NUSCENES_STAMP = 1_530_000_000.0
STAMP_OFFSET = 63.0
SCENE_STRIDE_S = 1024.0  # scene starts, a multiple of 128 s: every scene straddles the same way


def ros_now_stamp() -> float:
    """A multiple of 128 s near the current ROS time (wall clock), for the same straddling pattern."""
    return float(int(time.time()) // 128 * 128)


def frame_stamp(scene: int, frame: int, base: float = NUSCENES_STAMP) -> float:
    return base + SCENE_STRIDE_S * scene + STAMP_OFFSET + 0.5 * frame


class SequenceDataset:
    """Scenes of consecutive frames in the sample-dict format of docs/architecture.md.

    Each scene is a fixed random label volume (ground slab + boxes) seen by cameras whose pixels are
    the colour of the class of a voxel column they look at, while the ego drives 1 m per 0.5 s; the
    timestamps are real-magnitude seconds (:func:`frame_stamp`).
    """

    def __init__(self, cfg: ProtoOccConfig, num_scenes: int = 2, frames_per_scene: int = 4, seed: int = 0,
                 stamp_base: float = NUSCENES_STAMP) -> None:
        self.cfg, self.seed, self.stamp_base = cfg, seed, stamp_base
        self.keys = [(f"scene-{s:04d}", f) for s in range(num_scenes) for f in range(frames_per_scene)]
        rng = np.random.default_rng(seed)
        x, y, z = cfg.dataset.grid_size
        self.labels = []
        for _ in range(num_scenes):
            sem = np.full((x, y, z), cfg.dataset.free_label, dtype=np.int64)
            sem[:, :, 0] = rng.choice([11, 13], size=(x, y))
            for _ in range(6):
                cx, cy = rng.integers(0, x - 4), rng.integers(0, y - 4)
                sem[cx:cx + 4, cy:cy + 4, 1:4] = rng.choice([4, 9, 15])
            self.labels.append(sem)
        self.palette = rng.integers(0, 256, size=(cfg.dataset.num_classes, 3), dtype=np.uint8)

    def frame_keys(self) -> list[tuple[str, int]]:
        return list(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def _camera(self, yaw_deg: float) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.cfg.dataset.image_size
        f = 0.6 * w
        K = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
        yaw = math.radians(yaw_deg)
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0, 0, 1.0]])
        cam2ego = np.eye(4)
        cam2ego[:3, :3] = rz @ np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        cam2ego[2, 3] = 1.6
        return K, cam2ego

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene, frame = self.keys[index]
        s = int(scene.split("-")[1])
        sem = self.labels[s]
        h, w = self.cfg.dataset.image_size
        cams = [self._camera(0.0), self._camera(180.0)]
        top = np.where(sem[..., 1:] != self.cfg.dataset.free_label, sem[..., 1:], sem[..., :1]).max(-1)  # (X, Y)
        images = []
        for c in range(len(cams)):
            cols = np.linspace(0, top.shape[1] - 1, w).astype(int)
            rows = (np.arange(h) * top.shape[0] // h + frame + 7 * c) % top.shape[0]
            images.append(self.palette[top[rows][:, cols]])
        pre = preprocess_camera_set(images, [k for k, _ in cams], [t for _, t in cams], (h, w))
        ego = np.eye(4)
        ego[0, 3] = float(frame)
        x, y, z = self.cfg.dataset.grid_size
        mask = np.ones((x, y, z), dtype=bool)
        mask[:, :, -1] = False
        return {"images": pre.images, "lidar2img": pre.lidar2img, "ego2global": torch.from_numpy(ego),
                "timestamp": frame_stamp(s, frame, self.stamp_base), "scene": scene, "frame_index": frame,
                "sample_token": f"{scene}-{frame}", "semantics": torch.from_numpy(sem),
                "mask_camera": torch.from_numpy(mask), "mask_lidar": torch.from_numpy(mask), "raw_images": pre.raw}
