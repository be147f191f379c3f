"""Multi-perspective occupancy decoder (paper Sec. 3.3.1): voxel augmentations, one shared upsampler + classifier.

Training: the encoded volume V⁽⁰⁾ and P augmented copies (feature level: ``dropout``, ``noise``;
spatial: ``transpose``, ``flip_x``, ``flip_y``, ``flip`` = both) go through the same
ConvTranspose3d upsampler and classifier G; every spatial augmentation is inverted on the
upsampled logits, so all P+1 perspectives are in the label-grid frame. Inference (``eval()``), or
``multi_perspective = false``: the original perspective only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protoocc_ros.config import DecoderConfig

# Spatial operations on the x and y axes of a volume; `x_dim` is 2 for (B, C, X, Y, Z) volumes and
# 1 for channels-last (B, X, Y, Z, C) ones. Each operation is its own inverse.
_SPATIAL = {
    "transpose": lambda v, x: v.transpose(x, x + 1),
    "flip_x": lambda v, x: v.flip(x),
    "flip_y": lambda v, x: v.flip(x + 1),
    "flip": lambda v, x: v.flip(x, x + 1),
}


def spatial_ops(spec: str) -> list[str]:
    return [op for op in spec.split("+") if op in _SPATIAL]


def apply_spatial(volume: Tensor, spec: str, x_dim: int = 2) -> Tensor:
    """Apply the spatial operations of an augmentation spec, in order."""
    for op in spatial_ops(spec):
        volume = _SPATIAL[op](volume, x_dim)
    return volume


def invert_spatial(volume: Tensor, spec: str, x_dim: int = 2) -> Tensor:
    """Undo :func:`apply_spatial` (involutions applied in reverse order)."""
    for op in reversed(spatial_ops(spec)):
        volume = _SPATIAL[op](volume, x_dim)
    return volume


def augment_volume(volume: Tensor, spec: str, dropout_p: float, noise_std: float) -> Tensor:
    """One augmented perspective of a (B, d, h, w, z) volume (feature ops, then spatial ops)."""
    ops = spec.split("+")
    if "dropout" in ops:
        volume = F.dropout(volume, p=dropout_p, training=True)
    if "noise" in ops:
        volume = volume + noise_std * torch.randn_like(volume)
    return apply_spatial(volume, spec)


def upsample_kernel(factor: int, overlap: bool) -> tuple[int, int]:
    """(kernel, padding) of a ConvTranspose3d axis that scales by exactly `factor`."""
    if not overlap:
        return factor, 0
    pad = math.ceil(factor / 2)
    return factor + 2 * pad, pad


class MultiPerspectiveDecoder(nn.Module):
    def __init__(self, embed_dims: int, num_classes: int, factors: tuple[int, int, int], cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        (kx, px), (ky, py), (kz, pz) = (upsample_kernel(f, cfg.overlap) for f in factors)
        self.upsample = nn.ConvTranspose3d(embed_dims, cfg.channels, kernel_size=(kx, ky, kz),
                                           stride=factors, padding=(px, py, pz))
        self.norm = nn.BatchNorm3d(cfg.channels)
        hidden = [m for _ in range(cfg.classifier_layers - 1)
                  for m in (nn.Linear(cfg.channels, cfg.channels), nn.ReLU(inplace=True))]
        # G: per-voxel label classifier, Linear layers on channels-last voxels
        self.classifier = nn.Sequential(*hidden, nn.Linear(cfg.channels, num_classes))

    @property
    def num_perspectives(self) -> int:
        return 1 + (len(self.cfg.augmentations) if self.cfg.multi_perspective else 0)

    def decode(self, volume: Tensor) -> Tensor:
        """(B, d, h, w, z) -> channels-last logits (B, X, Y, Z, C): shared upsampler and classifier."""
        up = F.relu(self.norm(self.upsample(volume)), inplace=True)  # (B, c, X, Y, Z)
        return self.classifier(up.permute(0, 2, 3, 4, 1))

    def forward(self, volume: Tensor) -> tuple[Tensor, list[Tensor]]:
        """volume (B, d, h, w, z) -> (logits of the original perspective (B, C, X, Y, Z),
        all P+1 perspectives' logits in the grid frame when training with multi_perspective, else []).
        Logits are channels-last in memory (a permuted view), which keeps the voxel-wise losses fast."""
        if not (self.training and self.cfg.multi_perspective):
            return self.decode(volume).permute(0, 4, 1, 2, 3), []
        specs = self.cfg.augmentations
        views = [volume] + [augment_volume(volume, s, self.cfg.dropout_p, self.cfg.noise_std) for s in specs]
        b = volume.shape[0]
        # One batched pass of the shared upsampler; views of different shapes (transpose of a
        # non-square volume is rejected by the config) all match here.
        logits = self.decode(torch.cat(views, 0)).split(b, 0)
        perspectives = [logits[0]] + [invert_spatial(lg, s, x_dim=1) for lg, s in zip(logits[1:], specs)]
        perspectives = [lg.permute(0, 4, 1, 2, 3) for lg in perspectives]
        return perspectives[0], perspectives
