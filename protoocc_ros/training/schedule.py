"""AdamW with a backbone learning-rate multiplier and a warm-up + cosine/step/constant schedule (paper Sec. 4.1).

The schedule is a :class:`torch.optim.lr_scheduler.LambdaLR` whose factor is a :class:`LrFactor` object:
its state is plain numbers, so the scheduler's ``state_dict`` is stored in checkpoints as JSON.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from protoocc_ros.config import TrainConfig
from protoocc_ros.training.errors import TrainingError

BACKBONE_PREFIX = "backbone."
# Step schedule: the LR drops by STEP_GAMMA at these fractions of the run (mmdet's "step" policy at 8/11 of 12 ep.).
STEP_MILESTONES = (0.67, 0.92)
STEP_GAMMA = 0.1
MIN_LR_RATIO = 1e-3  # cosine floor, as BEVFormer/PanoOcc (min_lr_ratio=1e-3)


class LrFactor:
    """Multiplier of the base LR at a step: linear warm-up from 1/3, then cosine, step or constant."""

    def __init__(self, kind: str, warmup_steps: int, total_steps: int) -> None:
        if kind not in ("cosine", "step", "constant"):
            raise TrainingError(f"train.schedule: unknown schedule {kind!r} (expected cosine, step or constant)")
        if total_steps <= 0:
            raise TrainingError(f"train: the run has {total_steps} optimizer steps (expected > 0)")
        self.kind = kind
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return 1.0 / 3.0 + (1.0 - 1.0 / 3.0) * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.kind == "cosine":
            return MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "step":
            return STEP_GAMMA ** sum(step >= m * self.total_steps for m in STEP_MILESTONES)
        return 1.0


def parameter_groups(model: nn.Module, train: TrainConfig) -> list[dict]:
    """AdamW groups: backbone weights get lr * backbone_lr_mult; biases, norms and 1-D tensors no weight decay."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (name.startswith(BACKBONE_PREFIX), param.ndim <= 1)
        groups.setdefault(key, []).append(param)
    out = []
    for (is_backbone, no_decay), params in sorted(groups.items()):
        out.append({"params": params, "lr": train.lr * (train.backbone_lr_mult if is_backbone else 1.0),
                    "weight_decay": 0.0 if no_decay else train.weight_decay})
    if not out:
        raise TrainingError("model has no trainable parameters")
    return out


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, train), lr=train.lr, weight_decay=train.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    factor = LrFactor(train.schedule, train.warmup_steps, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor] * len(optimizer.param_groups))
