"""Helpers of the model tests: a nuScenes-like camera rig, random inputs and targets of a config."""
from __future__ import annotations

import math

import torch

from protoocc_ros.config import ProtoOccConfig

# nuScenes camera yaws (degrees, ego frame: x forward, y left) in the config's camera order.
YAWS = {"CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": -55.0, "CAM_FRONT_LEFT": 55.0, "CAM_BACK": 180.0,
        "CAM_BACK_LEFT": 110.0, "CAM_BACK_RIGHT": -110.0, "image_2": 0.0}


def camera_rig(cameras: list[str], image_size: tuple[int, int], height: float = 1.6) -> torch.Tensor:
    """lidar2img (N, 4, 4) = K4 @ inv(cam2ego) for pinhole cameras looking out horizontally."""
    h, w = image_size
    f = 0.8 * w
    k4 = torch.eye(4, dtype=torch.float64)
    k4[0, 0], k4[1, 1], k4[0, 2], k4[1, 2] = f, f, (w - 1) / 2, (h - 1) / 2
    optical_to_ego = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    mats = []
    for cam in cameras:
        yaw = math.radians(YAWS[cam])
        rz = torch.tensor([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0],
                           [0.0, 0.0, 1.0]], dtype=torch.float64)
        cam2ego = torch.eye(4, dtype=torch.float64)
        cam2ego[:3, :3] = rz @ optical_to_ego
        cam2ego[:3, 3] = torch.tensor([0.0, 0.0, height])
        mats.append(k4 @ torch.linalg.inv(cam2ego))
    return torch.stack(mats).float()


def make_inputs(cfg: ProtoOccConfig, batch: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(cfg.dataset.cameras)
    h, w = cfg.dataset.image_size
    rig = camera_rig(cfg.dataset.cameras, (h, w))
    return {
        "images": torch.randn(batch, n, 3, h, w, generator=g),
        "lidar2img": rig.unsqueeze(0).repeat(batch, 1, 1, 1),
        "ego2global": torch.eye(4, dtype=torch.float64).repeat(batch, 1, 1),
        "timestamp": torch.arange(batch, dtype=torch.float64),
    }


def make_targets(cfg: ProtoOccConfig, batch: int = 1, seed: int = 0,
                 pseudo_labels: int = 12) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y, z = cfg.dataset.grid_size
    n = len(cfg.dataset.cameras)
    h, w = cfg.dataset.image_size
    sem = torch.randint(0, cfg.dataset.num_classes, (batch, x, y, z), generator=g)
    sem[:, :2] = 255
    return {
        "semantics": sem,
        "mask_camera": torch.rand(batch, x, y, z, generator=g) > 0.3,
        "pseudo_masks": torch.randint(0, pseudo_labels, (batch, n, h, w), generator=g, dtype=torch.int32),
    }
