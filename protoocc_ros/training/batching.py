"""Sample dicts -> model inputs and loss targets (docs/architecture.md "Sample dict"; paper Eq. 3 pseudo masks).

``collate_frame`` stacks one frame of B sequences into the tensors ``ProtoOcc.forward`` takes and the
targets ``ProtoOcc.loss`` reads (semantics, mask_camera and, when prototype optimization is on, the
SEEDS pseudo masks of every camera image, computed once per image through a cache).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from protoocc_ros.model.pseudo_masks import PseudoMaskCache, compute_pseudo_masks_batched
from protoocc_ros.training.errors import TrainingError

INPUT_KEYS = ("images", "lidar2img", "ego2global", "timestamp")
TARGET_KEYS = ("semantics", "mask_camera")


def _as_tensor(value: Any, key: str, dtype: torch.dtype | None = None) -> Tensor:
    if isinstance(value, Tensor):
        t = value
    elif isinstance(value, (np.ndarray, float, int, np.floating, np.integer)):
        t = torch.as_tensor(value)
    else:
        raise TrainingError(f"sample[{key!r}]: expected a tensor or array, got {type(value).__name__}")
    return t if dtype is None else t.to(dtype)


def _stack(samples: Sequence[dict[str, Any]], key: str, dtype: torch.dtype | None = None) -> Tensor:
    missing = [i for i, s in enumerate(samples) if key not in s]
    if missing:
        raise TrainingError(f"sample[{key!r}] is missing (batch positions {missing}); see docs/architecture.md")
    return torch.stack([_as_tensor(s[key], key, dtype) for s in samples])


def collate_inputs(samples: Sequence[dict[str, Any]], device: torch.device) -> dict[str, Tensor]:
    """images (B,N,3,H,W) f32, lidar2img (B,N,4,4) f32, ego2global (B,4,4) f64, timestamp (B,) f64."""
    return {
        "images": _stack(samples, "images", torch.float32).to(device),
        "lidar2img": _stack(samples, "lidar2img", torch.float32).to(device),
        "ego2global": _stack(samples, "ego2global", torch.float64).to(device),
        "timestamp": _stack(samples, "timestamp", torch.float64).to(device),
    }


def collate_targets(samples: Sequence[dict[str, Any]], device: torch.device,
                    pseudo_cache: PseudoMaskCache | None = None,
                    camera_names: Sequence[str] = ()) -> dict[str, Tensor]:
    """semantics (B,X,Y,Z) int64, mask_camera (B,X,Y,Z) bool, pseudo_masks (B,N,H,W) int64 when a cache is given."""
    targets = {"semantics": _stack(samples, "semantics", torch.int64).to(device),
               "mask_camera": _stack(samples, "mask_camera", torch.bool).to(device)}
    if pseudo_cache is not None:
        raw = np.stack([np.asarray(s["raw_images"]) for s in samples])  # (B, N, H, W, 3) uint8
        keys = [f"{s.get('sample_token', s.get('scene'))}/{s.get('frame_index')}/{cam}"
                for s in samples for cam in (camera_names or range(raw.shape[1]))]
        masks = compute_pseudo_masks_batched(raw, pseudo_cache.num_superpixels, pseudo_cache.seed, pseudo_cache,
                                             keys=keys)  # (B, N, H, W) int32
        targets["pseudo_masks"] = torch.from_numpy(masks.astype(np.int64)).to(device)
    return targets


def collate_frame(samples: Sequence[dict[str, Any]], device: torch.device,
                  pseudo_cache: PseudoMaskCache | None = None,
                  camera_names: Sequence[str] = ()) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One frame of B sequences -> (model inputs, loss targets)."""
    return collate_inputs(samples, device), collate_targets(samples, device, pseudo_cache, camera_names)
