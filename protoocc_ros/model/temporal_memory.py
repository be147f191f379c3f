"""Temporal memory of the voxel features (paper Sec. 3.1 "spatial and temporal cue"; BEVFormer's prev_bev).

:class:`TemporalMemory` is an explicit value passed into ``ProtoOcc.forward`` and returned by it, so
the ROS node, training on sequential clips and evaluation carry it the same way. It holds the
previous frame's low-resolution voxel features (in that frame's ego frame), its ego pose and time
stamp, and why the frame that wrote it started without history (``reset_reason``).

Reset rules (per batch element, first match wins): ``'first_frame'`` (no memory, or a memory of
another batch size / shape), ``'time_backwards'`` (stamp earlier than the memory's),
``'gap'`` (more than ``memory_max_gap_s`` since the memory), ``'pose_jump'`` (ego moved more than
``memory_max_pose_jump_m``); otherwise None and the memory is warped into the current ego frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

RESET_REASONS = ("first_frame", "time_backwards", "gap", "pose_jump")


@dataclass
class TemporalMemory:
    features: Tensor | None = None  # (B, d, h, w, z) previous voxel features, ego frame of that frame
    ego2global: Tensor | None = None  # (B, 4, 4) float64
    timestamp: Tensor | None = None  # (B,) float64 seconds
    reset_reason: list[str | None] = field(default_factory=list)  # per element, for the frame that wrote it

    @property
    def batch_size(self) -> int:
        return 0 if self.features is None else int(self.features.shape[0])

    def reset_reasons(self, ego2global: Tensor, timestamp: Tensor, feature_shape: tuple[int, ...],
                      max_gap_s: float, max_pose_jump_m: float) -> list[str | None]:
        """Why each element of the current frame must start fresh (None = use this memory).

        ego2global (B, 4, 4), timestamp (B,) of the current frame; feature_shape = (d, h, w, z).
        """
        b = int(timestamp.shape[0])
        if (self.features is None or self.ego2global is None or self.timestamp is None or self.batch_size != b
                or tuple(self.features.shape[1:]) != tuple(feature_shape)):
            return ["first_frame"] * b
        dt = timestamp.double().cpu() - self.timestamp.double().cpu()  # (B,)
        jump = torch.linalg.norm(ego2global.double().cpu()[:, :3, 3] - self.ego2global.double().cpu()[:, :3, 3], dim=-1)
        reasons: list[str | None] = []
        for dt_i, jump_i in zip(dt.tolist(), jump.tolist()):  # B scalars
            if dt_i < 0:
                reasons.append("time_backwards")
            elif dt_i > max_gap_s:
                reasons.append("gap")
            elif jump_i > max_pose_jump_m:
                reasons.append("pose_jump")
            else:
                reasons.append(None)
        return reasons

    def should_reset(self, ego2global: Tensor, timestamp: Tensor, feature_shape: tuple[int, ...],
                     max_gap_s: float, max_pose_jump_m: float) -> list[bool]:
        return [r is not None for r in self.reset_reasons(ego2global, timestamp, feature_shape,
                                                            max_gap_s, max_pose_jump_m)]

    def detach(self) -> TemporalMemory:
        feats = None if self.features is None else self.features.detach()
        return TemporalMemory(feats, self.ego2global, self.timestamp, list(self.reset_reason))

    def to(self, device: torch.device | str) -> TemporalMemory:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return TemporalMemory(move(self.features), move(self.ego2global), move(self.timestamp), list(self.reset_reason))


def warp_features(features: Tensor, prev_ego2global: Tensor, cur_ego2global: Tensor,
                  point_cloud_range: list[float]) -> tuple[Tensor, Tensor]:
    """Resample the previous frame's voxel features at the current frame's voxel centres.

    features (B, d, h, w, z) over ``point_cloud_range`` in the previous ego frame; poses (B, 4, 4)
    ego -> world. A current voxel centre p is looked up at inv(prev) @ cur @ p (trilinear, zeros
    outside). Returns (warped (B, d, h, w, z), valid (B, 1, h, w, z) bool: the centre fell inside).
    """
    _b, _, h, w, z = features.shape
    dev = features.device
    rel = torch.linalg.solve(prev_ego2global.double(), cur_ego2global.double()).to(dev)  # (B, 4, 4) cur -> prev
    lo = torch.tensor(point_cloud_range[:3], dtype=torch.float64, device=dev)
    span = torch.tensor(point_cloud_range[3:], dtype=torch.float64, device=dev) - lo
    axes = [(torch.arange(n, dtype=torch.float64, device=dev) + 0.5) / n for n in (h, w, z)]
    norm = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # (h, w, z, 3) in (0, 1)
    pts = lo + norm * span  # current ego metres
    prev = torch.einsum("bij,xyzj->bxyzi", rel[:, :3, :3], pts) + rel[:, None, None, None, :3, 3]
    unit = (prev - lo) / span  # (B, h, w, z, 3) in [0, 1] when inside
    valid = ((unit >= 0) & (unit <= 1)).all(-1)  # (B, h, w, z)
    # grid_sample on (B, d, D=h, H=w, W=z): the last grid axis is ordered (W, H, D) = (z, y, x).
    grid = (2.0 * unit - 1.0).flip(-1).to(features.dtype)
    warped = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped, valid[:, None]
