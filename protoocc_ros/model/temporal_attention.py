"""Temporal self-attention over voxel queries (paper Sec. 3.1; BEVFormer TSA lifted to 3D voxels).

Each query attends, with learned 3D sampling offsets and softmax weights, to two volumes: the
previous frame's voxel features already warped into the current ego frame, and the current
queries. On a reset the previous volume is the current queries themselves (as BEVFormer's first
frame). Offsets and weights are predicted from [previous feature, query + pos]; the two results
are averaged. Sampling is trilinear ``grid_sample`` on 5-D tensors (CPU and CUDA).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_QUEUES = 2  # [warped previous frame, current queries]


class TemporalSelfAttention(nn.Module):
    def __init__(self, embed_dims: int, num_heads: int, num_points: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.num_points = num_heads, num_points
        self.sampling_offsets = nn.Linear(NUM_QUEUES * embed_dims, NUM_QUEUES * num_heads * num_points * 3)
        self.attention_weights = nn.Linear(NUM_QUEUES * embed_dims, NUM_QUEUES * num_heads * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        # Initial offsets: head directions spread over the sphere (Fibonacci), growing with the point index.
        i = torch.arange(self.num_heads, dtype=torch.float32) + 0.5
        phi = torch.acos(1 - 2 * i / self.num_heads)
        theta = math.pi * (1 + 5 ** 0.5) * i
        dirs = torch.stack([phi.sin() * theta.cos(), phi.sin() * theta.sin(), phi.cos()], -1)  # (heads, 3)
        dirs = dirs / dirs.abs().max(-1, keepdim=True)[0]
        grid = dirs[None, :, None, :] * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.repeat(NUM_QUEUES, 1, 1, 1).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: Tensor, query_pos: Tensor, prev: Tensor, ref: Tensor,
                size: tuple[int, int, int]) -> Tensor:
        """query, query_pos, prev (B, Q, d); ref (Q, 3) normalised voxel centres; size (h, w, z) -> (B, Q, d)."""
        b, q, d = query.shape
        h, w, z = size
        heads, pts = self.num_heads, self.num_points
        x = query + query_pos
        volumes = torch.stack([prev, query], 1)  # (B, 2, Q, d)
        value = self.value_proj(volumes).view(b * NUM_QUEUES, q, heads, d // heads)
        value = value.permute(0, 2, 3, 1).reshape(b * NUM_QUEUES * heads, d // heads, h, w, z)
        both = torch.cat([prev, x], -1)  # (B, Q, 2d)
        offsets = self.sampling_offsets(both).view(b, q, NUM_QUEUES, heads, pts, 3)
        loc = ref[None, :, None, None, None, :] + offsets / offsets.new_tensor([h, w, z])  # (B, Q, 2, heads, P, 3)
        weights = self.attention_weights(both).view(b, q, NUM_QUEUES, heads, pts).softmax(-1)
        # grid_sample volume dims (D, H, W) = (h, w, z): grid last axis is (z, y, x).
        grid = (2.0 * loc - 1.0).flip(-1).permute(0, 2, 3, 1, 4, 5).reshape(b * NUM_QUEUES * heads, q, pts, 1, 3)
        sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.view(b, NUM_QUEUES, heads, d // heads, q, pts)  # (B, 2, heads, d_head, Q, P)
        out = torch.einsum("bthcqp,bqthp->bqhc", sampled, weights) / NUM_QUEUES  # mean over the 2 volumes
        out = self.output_proj(out.reshape(b, q, d))
        return self.dropout(out) + query
