"""Sample dicts -> model inputs and loss targets (docs/architecture.md "Sample dict"; paper Eq. 3 pseudo masks).

``collate_frame`` stacks one frame of B sequences into the tensors ``ProtoOcc.forward`` takes and the
targets ``ProtoOcc.loss`` reads (semantics, mask_camera and the samples' ``pseudo_masks`` when they carry
them: training/loader.py reads or computes those in the DataLoader workers; nothing is computed here).
Timestamps stay float64 from the sample to the model: float32 cannot hold seconds at nuScenes or ROS
magnitudes (its spacing is 128 s at 1.5e9 s).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from protoocc_ros.training.errors import TrainingError

INPUT_KEYS = ("images", "lidar2img", "ego2global", "timestamp")
TARGET_KEYS = ("semantics", "mask_camera")


def _as_tensor(value: Any, key: str, dtype: torch.dtype | None = None) -> Tensor:
    if isinstance(value, Tensor):
        t = value
    elif isinstance(value, (np.ndarray, np.floating, np.integer)):
        t = torch.from_numpy(np.asarray(value))
    elif isinstance(value, (float, int)) and not isinstance(value, bool):
        # torch.as_tensor(<python float>) is float32; build in the target dtype (float64 for timestamps)
        t = torch.tensor(value, dtype=dtype if dtype is not None else torch.float64)
    else:
        raise TrainingError(f"sample[{key!r}]: expected a tensor or array, got {type(value).__name__}")
    return t if dtype is None else t.to(dtype)


def _stack(samples: Sequence[dict[str, Any]], key: str, dtype: torch.dtype | None = None) -> Tensor:
    missing = [i for i, s in enumerate(samples) if key not in s]
    if missing:
        raise TrainingError(f"sample[{key!r}] is missing (batch positions {missing}); see docs/architecture.md")
    return torch.stack([_as_tensor(s[key], key, dtype) for s in samples])


def _check_timestamps(samples: Sequence[dict[str, Any]]) -> None:
    for i, s in enumerate(samples):
        stamp = s.get("timestamp")
        dtype = getattr(stamp, "dtype", None)
        if dtype is not None and str(dtype).replace("torch.", "") in ("float32", "float16", "bfloat16"):
            raise TrainingError(f"sample['timestamp'] at batch position {i} is {dtype}: seconds at real magnitudes "
                                "(~1.5e9) need float64 (or int nanoseconds) from the loader on")


def collate_inputs(samples: Sequence[dict[str, Any]], device: torch.device) -> dict[str, Tensor]:
    """images (B,N,3,H,W) f32, lidar2img (B,N,4,4) f32, ego2global (B,4,4) f64, timestamp (B,) f64."""
    _check_timestamps(samples)
    return {
        "images": _stack(samples, "images", torch.float32).to(device),
        "lidar2img": _stack(samples, "lidar2img", torch.float32).to(device),
        "ego2global": _stack(samples, "ego2global", torch.float64).to(device),
        "timestamp": _stack(samples, "timestamp", torch.float64).to(device),
    }


def collate_targets(samples: Sequence[dict[str, Any]], device: torch.device,
                    require_pseudo_masks: bool = False) -> dict[str, Tensor]:
    """semantics (B,X,Y,Z) int64, mask_camera (B,X,Y,Z) bool, pseudo_masks (B,N,h,w) int64 when the samples have them.

    ``require_pseudo_masks``: raise when they are missing (the loss would silently drop L_cls).
    """
    targets = {"semantics": _stack(samples, "semantics", torch.int64).to(device),
               "mask_camera": _stack(samples, "mask_camera", torch.bool).to(device)}
    have = ["pseudo_masks" in s for s in samples]
    if any(have) or require_pseudo_masks:
        if not all(have):
            raise TrainingError(f"sample['pseudo_masks'] is missing (batch positions "
                                f"{[i for i, h in enumerate(have) if not h]}): L_cls needs the masks of every "
                                "sample; load samples through training.loader.TrainingSamples")
        targets["pseudo_masks"] = _stack(samples, "pseudo_masks", torch.int64).to(device)
    return targets


def collate_frame(samples: Sequence[dict[str, Any]], device: torch.device,
                  require_pseudo_masks: bool = False) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One frame of B sequences -> (model inputs, loss targets)."""
    return collate_inputs(samples, device), collate_targets(samples, device, require_pseudo_masks)
