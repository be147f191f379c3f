"""Learnable voxel query Q ∈ R^{d×h×w×z} with a 3D positional embedding (paper Sec. 3.1).

The query grid covers the dataset's ``point_cloud_range``: query voxel (i, j, k) sits at
``min + (i + 0.5) * (max - min) / (h, w, z)`` in the ego frame, and is flattened as
``q = (i * w + j) * z + k`` (the [x, y, z] order of the label grid). The module also holds the
reference points the attention layers need (metric centres, the pillar of heights inside every
query voxel for the cameras, normalised centres for the temporal attention).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def voxel_centres(point_cloud_range: list[float], size: list[int]) -> Tensor:
    """Metric centres of a regular grid over the range, flattened [x, y, z]: (X*Y*Z, 3) float32."""
    axes = [torch.linspace(0.5, n - 0.5, n, dtype=torch.float64) / n * (point_cloud_range[a + 3] - point_cloud_range[a])
            + point_cloud_range[a] for a, n in enumerate(size)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, Z, 3)
    return grid.reshape(-1, 3).float()


class VoxelQuery(nn.Module):
    """Q (h*w*z, d) plus a learned per-axis positional embedding (as PanoOcc's Learned3DPositionalEncoding)."""

    def __init__(self, embed_dims: int, query_size: list[int], point_cloud_range: list[float],
                 num_points_in_pillar: int) -> None:
        super().__init__()
        self.query_size = tuple(query_size)
        h, w, z = query_size
        self.query = nn.Embedding(h * w * z, embed_dims)
        self.x_embed = nn.Embedding(h, embed_dims)
        self.y_embed = nn.Embedding(w, embed_dims)
        self.z_embed = nn.Embedding(z, embed_dims)
        pcr = list(point_cloud_range)
        centres = voxel_centres(pcr, list(query_size))  # (Q, 3) metres
        self.centres: Tensor
        self.pillar_points: Tensor
        self.centres_normalized: Tensor
        self.register_buffer("centres", centres, persistent=False)
        # Pillar of `num_points_in_pillar` heights spread evenly inside each query voxel's z extent.
        dz = (pcr[5] - pcr[2]) / z
        offsets = (torch.arange(num_points_in_pillar, dtype=torch.float32) + 0.5) / num_points_in_pillar - 0.5
        pillar = centres[:, None, :].repeat(1, num_points_in_pillar, 1)  # (Q, Z_a, 3)
        pillar[..., 2] += offsets * dz
        self.register_buffer("pillar_points", pillar, persistent=False)
        lo = torch.tensor(pcr[:3], dtype=torch.float32)
        span = torch.tensor(pcr[3:], dtype=torch.float32) - lo
        self.register_buffer("centres_normalized", (centres - lo) / span, persistent=False)  # (Q, 3) in (0, 1)

    def forward(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Returns (query (B, Q, d), positional embedding (B, Q, d))."""
        h, w, z = self.query_size
        pos = (self.x_embed.weight[:, None, None] + self.y_embed.weight[None, :, None]
               + self.z_embed.weight[None, None, :])  # (h, w, z, d)
        pos = pos.reshape(h * w * z, -1)
        return (self.query.weight.unsqueeze(0).expand(batch_size, -1, -1),
                pos.unsqueeze(0).expand(batch_size, -1, -1))
