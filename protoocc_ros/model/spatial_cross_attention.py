"""Spatial cross-attention (paper Sec. 3.1; BEVFormer SCA with Deformable-DETR attention [56]), pure PyTorch.

Each voxel query owns a pillar of reference heights inside its voxel; the pillar is projected with
``lidar2img`` into every camera. A camera attends for a query only if one of the query's pillar
points lands in its image ("hit"). Hit queries are gathered per camera (padded to the largest hit
count, no loops over queries or cameras), run through multi-scale deformable attention with learned
offsets and weights (``torch.nn.functional.grid_sample``, CPU and CUDA), and the per-camera
results are summed back into the queries and divided by the number of cameras that hit each one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS_DEPTH = 1e-5


def project_points(points: Tensor, lidar2img: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Project ego points into every camera.

    points (Q, Z_a, 3) metres, lidar2img (B, N, 4, 4) ego -> pixels, image_size (H, W).
    Returns uv (B, N, Q, Z_a, 2) normalised to [0, 1] as ((u + 0.5) / W, (v + 0.5) / H) (OpenCV
    pixel centres at integers; grid_sample's at (i + 0.5) / size), and a visibility mask
    (B, N, Q, Z_a): in front of the camera and inside the image.
    """
    homo = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)  # (Q, Z_a, 4)
    cam = torch.einsum("bnij,qaj->bnqai", lidar2img.to(points.dtype), homo)  # (B, N, Q, Z_a, 4)
    depth = cam[..., 2:3]
    in_front = depth[..., 0] > EPS_DEPTH
    uv = cam[..., :2] / depth.clamp(min=EPS_DEPTH)
    uv = (uv + 0.5) / uv.new_tensor([image_size[1], image_size[0]])
    inside = (uv > 0.0).all(-1) & (uv < 1.0).all(-1)
    return uv, in_front & inside


@dataclass
class CameraQueries:
    """Per-camera gather of the hit queries (computed once per frame, shared by all layers).

    index (B, N, K) query index of slot k in camera n (padding slots point at query 0),
    valid (B, N, K) slot holds a hit query, uv (B, N, K, Z_a, 2) its pillar in that image,
    count (B, Q) number of cameras that hit each query (>= 1 to divide by).
    """

    index: Tensor
    valid: Tensor
    uv: Tensor
    count: Tensor


def gather_hit_queries(uv: Tensor, visible: Tensor, k: int | None = None) -> CameraQueries:
    """uv (B, N, Q, Z_a, 2), visible (B, N, Q, Z_a) -> CameraQueries padded to K slots: the most hits of a camera,
    or a constant ``k`` (a traced graph; a camera with more hits than ``k`` keeps its first ``k``)."""
    hit = visible.any(-1)  # (B, N, Q)
    per_cam = hit.sum(-1)  # (B, N)
    if k is None:
        k = max(int(per_cam.max()), 1)
    order = torch.argsort((~hit).to(torch.int8), dim=-1, stable=True)[..., :k]  # hits first, (B, N, K)
    valid = torch.arange(k, device=uv.device) < per_cam[..., None]  # (B, N, K)
    idx = order[..., None, None].expand(-1, -1, -1, *uv.shape[-2:])
    uv_k = torch.gather(uv, 2, idx)  # (B, N, K, Z_a, 2)
    count = hit.sum(1).clamp(min=1)  # (B, Q)
    return CameraQueries(order, valid, uv_k, count)


def deformable_sample(values: list[Tensor], locations: Tensor, weights: Tensor) -> Tensor:
    """Multi-scale deformable attention core (Deformable DETR, Eq. 3 of [56]) with grid_sample.

    values: per level (S, heads, d_head, H_l, W_l); locations (S, K, heads, L, P, 2) in [0, 1] as
    (x / W_l, y / H_l) with pixel centres at (i + 0.5) / size; weights (S, K, heads, L, P).
    Bilinear sampling, zeros outside the map. Returns (S, K, heads * d_head).
    """
    s, k, heads, _levels, _points, _ = locations.shape
    d_head = values[0].shape[2]
    grids = 2.0 * locations - 1.0
    out = locations.new_zeros(s * heads, d_head, k)
    for lvl, value in enumerate(values):  # L is small (levels of the FPN)
        v = value.flatten(0, 1)  # (S*heads, d_head, H_l, W_l)
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).flatten(0, 1)  # (S*heads, K, P, 2)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (S*h, d, K, P)
        w = weights[:, :, :, lvl].permute(0, 2, 1, 3).flatten(0, 1)  # (S*heads, K, P)
        out = out + torch.einsum("sdkp,skp->sdk", sampled, w)
    return out.view(s, heads * d_head, k).transpose(1, 2)  # (S, K, heads*d_head)


class MSDeformableAttention3D(nn.Module):
    """Learned sampling offsets around each pillar anchor and softmax weights over levels x points."""

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int,
                 num_anchors: int) -> None:
        super().__init__()
        self.num_heads, self.num_levels = num_heads, num_levels
        self.num_points, self.num_anchors = num_points, num_anchors
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([theta.cos(), theta.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]  # (heads, 2) directions on the unit square
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)

    def project_values(self, feats: list[Tensor]) -> list[Tensor]:
        """feats per level (S, d, H_l, W_l) -> values per level (S, heads, d_head, H_l, W_l)."""
        out = []
        for f in feats:
            s, d, h, w = f.shape
            v = self.value_proj(f.flatten(2).transpose(1, 2))  # (S, H_l*W_l, d)
            out.append(v.transpose(1, 2).reshape(s, self.num_heads, d // self.num_heads, h, w))
        return out

    def sampling(self, query: Tensor, ref: Tensor, shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """query (S, K, d), ref (S, K, Z_a, 2) -> locations (S, K, heads, L, P, 2), weights (S, K, heads, L, P)."""
        s, k, _ = query.shape
        h, lv, p, za = self.num_heads, self.num_levels, self.num_points, self.num_anchors
        offsets = self.sampling_offsets(query).view(s, k, h, lv, p // za, za, 2)
        norm = query.new_tensor([[w_, h_] for h_, w_ in shapes]).view(1, 1, 1, lv, 1, 1, 2)  # (W_l, H_l)
        loc = ref[:, :, None, None, None, :, :] + offsets / norm  # anchor + offset / size
        weights = self.attention_weights(query).view(s, k, h, lv * p).softmax(-1).view(s, k, h, lv, p)
        return loc.reshape(s, k, h, lv, p, 2), weights

    def forward(self, query: Tensor, ref: Tensor, values: list[Tensor],
                valid: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """query (S, K, d), ref (S, K, Z_a, 2), values from project_values, valid (S, K) ->
        (output (S, K, d), locations, weights); padding slots get zero weights."""
        shapes = [(int(v.shape[-2]), int(v.shape[-1])) for v in values]
        loc, weights = self.sampling(query, ref, shapes)
        if valid is not None:
            weights = weights * valid[:, :, None, None, None].to(weights.dtype)
        return deformable_sample(values, loc, weights), loc, weights


class SpatialCrossAttention(nn.Module):
    """SCA: per-camera deformable attention of the hit queries, averaged over hitting cameras.

    An optional ``query_transform(q (S, K, d), valid (S, K)) -> (q_hat, aux)`` (the prototype
    Dispatch of Eq. 1b) turns the gathered queries Q' into the prototype-aware Q̂ that is "fed as
    input for deformable attention" (Sec. 3.2.1): it predicts the offsets and weights. Named
    deviation ``dispatch_to_output`` (off by default): Q̂ - Q' is also added to the camera's attention
    output before the average over hitting cameras, a shortcut the paper does not have.
    """

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_points: int, num_anchors: int,
                 dropout: float, dispatch_to_output: bool = False) -> None:
        super().__init__()
        self.dispatch_to_output = dispatch_to_output
        self.attention = MSDeformableAttention3D(embed_dims, num_heads, num_levels, num_points, num_anchors)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, query_pos: Tensor, feats: list[Tensor], cams: CameraQueries,
                query_transform=None) -> tuple[Tensor, dict[str, Tensor]]:
        """query/query_pos (B, Q, d); feats per level (B*N, d, H_l, W_l) -> (B, Q, d) with residual."""
        b, q, d = query.shape
        n, k = cams.index.shape[1:]
        x = (query + query_pos).unsqueeze(1).expand(b, n, q, d)
        q_cam = torch.gather(x, 2, cams.index[..., None].expand(b, n, k, d)).flatten(0, 1)  # Q': (B*N, K, d)
        valid = cams.valid.flatten(0, 1)  # (B*N, K)
        aux: dict[str, Tensor] = {}
        q_hat = q_cam
        if query_transform is not None:
            q_hat, aux = query_transform(q_cam, valid)  # Q̂
        values = self.attention.project_values(feats)
        out, loc, weights = self.attention(q_hat, cams.uv.flatten(0, 1), values, valid)  # (B*N, K, d)
        aux.update(locations=loc, weights=weights)
        if query_transform is not None and self.dispatch_to_output:
            out = out + (q_hat - q_cam)  # deviation: the dispatched prototype feature joins the attended one
        out = out * valid[..., None].to(out.dtype)
        slots = out.new_zeros(b, q, d)
        slots.scatter_add_(1, cams.index.reshape(b, n * k, 1).expand(b, n * k, d), out.reshape(b, n * k, d))
        slots = slots / cams.count[..., None].to(slots.dtype)  # mean over the cameras that hit each query
        return self.dropout(self.output_proj(slots)) + query, aux
