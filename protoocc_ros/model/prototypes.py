"""Prototype-aware view transformation (paper Sec. 3.2): clustering, Aggregate (Eq. 1a), Dispatch (Eq. 1b),
prototype-aware pixel features (Eq. 2).

Everything is batched over cameras (S = B*N camera images) and prototypes; no Python loops over
either. Shapes: M prototypes, K hit-query slots of one camera (padding marked by ``valid``),
D = h_f * w_f cells of the clustered feature map, d channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


class PrototypeClustering(nn.Module):
    """Iterative grouping (SLIC/SSN style [1, 13]): grid-cell means, then K soft-assignment updates.

    Initial prototypes are the means of a regular grid of cells of about r x r feature pixels
    (``rows x cols = ceil(h_f/r) x ceil(w_f/r)`` = M); each iteration assigns every pixel softly to
    all prototypes (softmax of cosine similarity / temperature) and sets each prototype to the
    assignment-weighted mean of the pixels.
    """

    def __init__(self, grid: tuple[int, int], iterations: int, temperature: float) -> None:
        super().__init__()
        self.grid, self.iterations, self.temperature = tuple(grid), iterations, temperature

    def forward(self, feat: Tensor) -> Tensor:
        """feat (S, d, h_f, w_f) -> P_img (S, M, d)."""
        protos = F.adaptive_avg_pool2d(feat, self.grid).flatten(2).transpose(1, 2)  # (S, M, d)
        pix = feat.flatten(2).transpose(1, 2)  # (S, D, d)
        pix_n = F.normalize(pix, dim=-1)
        for _ in range(self.iterations):
            sim = pix_n @ F.normalize(protos, dim=-1).transpose(1, 2)  # (S, D, M)
            assign = (sim / self.temperature).softmax(-1)
            protos = assign.transpose(1, 2) @ pix / (assign.sum(1)[..., None] + EPS)  # (S, M, d)
        return protos


def _mlp(dims: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dims, dims), nn.ReLU(inplace=True), nn.Linear(dims, dims))


class PrototypeMapping(nn.Module):
    """Lift 2D prototypes onto the hit voxel queries of each camera (Feature Aggregation & Dispatch [23, 31]).

    P̂_img = MLP(P_img); A = cos(P̂_img, Q') (S, M, K); σ(A) is sigmoid(α·A + β) with learned α, β
    (as Context Clusters [31]); A and σ(A) are zero on padding slots.
    Aggregate, Eq. 1a: P_vox = (P̂_img + σ(A) · Q') / R, R = 1 + Σ_k σ(A) (the 1 counts the P̂_img term).
    Dispatch,  Eq. 1b: Q̂ = Q' + σ(A)ᵀ · MLP(P_vox) / Σ_m σ(A).
    Two choices the paper leaves open: the per-query division by Σ_m σ(A) keeps the scale
    independent of M, and the MLP runs on the M prototypes before they are dispatched instead of on
    the K dispatched features (equal for the MLP's affine part, since the weights sum to 1; it costs
    M instead of N*K rows, which keeps the prototype view transformation close to the baseline's time).
    """

    def __init__(self, embed_dims: int) -> None:
        super().__init__()
        self.img_mlp = _mlp(embed_dims)
        self.dispatch_mlp = _mlp(embed_dims)
        self.alpha = nn.Parameter(torch.ones(()))
        self.beta = nn.Parameter(torch.zeros(()))

    def forward(self, p_img: Tensor, q: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """p_img (S, M, d), q = Q' (S, K, d), valid (S, K) -> (Q̂ (S, K, d), A (S, M, K), P_vox (S, M, d))."""
        p_hat = self.img_mlp(p_img)
        q_unit = F.normalize(q, dim=-1) * valid[..., None].to(q.dtype)  # padding slots -> 0
        affinity = F.normalize(p_hat, dim=-1) @ q_unit.transpose(1, 2)  # A, cosine: (S, M, K)
        off = torch.zeros_like(valid, dtype=affinity.dtype).masked_fill(~valid, float("-inf"))  # (S, K)
        sig = torch.sigmoid(torch.addcmul((off + self.beta)[:, None, :], affinity, self.alpha))  # σ(A), 0 on padding
        p_vox = (p_hat + sig @ q) / (1.0 + sig.sum(-1, keepdim=True))  # Eq. 1a
        dispatched = sig.transpose(1, 2) @ self.dispatch_mlp(p_vox) / (sig.sum(1)[..., None] + EPS)  # (S, K, d)
        q_hat = q + dispatched  # Eq. 1b
        return q_hat, affinity, p_vox


def attention_map(locations: Tensor, weights: Tensor, valid: Tensor, feat_size: tuple[int, int]) -> Tensor:
    """G of Eq. 2 as a sparse (S*D, S*K) matrix: the deformable-attention mass of query k on cell D.

    locations (S, K, heads, P, 2) in [0, 1] and weights (S, K, heads, P) of the clustered level;
    each sample adds weight / heads to the cell containing it. G carries no gradient (it is the
    bridge from the voxel to the image grid; the loss trains the prototypes through P_vox and H).
    Transposed so that ``G @ Z`` gives per-cell features.
    """
    s, k, heads, p, _ = locations.shape
    hf, wf = feat_size
    loc = locations.detach()
    col = (loc[..., 0] * wf).floor().long()
    row = (loc[..., 1] * hf).floor().long()
    inside = (col >= 0) & (col < wf) & (row >= 0) & (row < hf) & valid[:, :, None, None]
    cam = torch.arange(s, device=loc.device).view(s, 1, 1, 1)
    cell = cam * (hf * wf) + row.clamp(0, hf - 1) * wf + col.clamp(0, wf - 1)  # (S, K, heads, P)
    slot = (cam * k + torch.arange(k, device=loc.device).view(1, k, 1, 1)).expand_as(cell)
    dtype = torch.promote_types(weights.dtype, torch.float32)  # sparse products in >= float32 (AMP safe)
    vals = weights.detach().to(dtype) / heads * inside
    keep = inside.flatten()
    g = torch.sparse_coo_tensor(torch.stack([cell.flatten()[keep], slot.flatten()[keep]]), vals.flatten()[keep],
                                (s * hf * wf, s * k), check_invariants=False)
    return g  # uncoalesced: sparse.mm sums duplicate (cell, query) entries itself


H_INIT_SCALE = 10.0  # H starts as 10 * identity: a softmax temperature of 0.1 over cosine affinities


class PrototypePixelFeatures(nn.Module):
    """Prototype-aware pixel features, Eq. 2: X = {G ⊙ H(A)} · P_vox.

    H is a learned linear map over the prototype axis of the affinity A (M -> M, per query). The
    product of G (query -> cell) and H(A) (prototype -> query) is taken over the hit queries and
    normalised by the cell's attention mass, Ā[cell, m] = Σ_k G[k, cell] H(A)[m, k] / Σ_k G[k, cell];
    its softmax over m is "the probability of each grid cell being assigned with a certain
    prototype" (Sec. 3.2.2), and X[cell] = Σ_m softmax(Ā[cell])_m · P_vox[m] (S, d, h_f, w_f).
    """

    def __init__(self, num_prototypes: int) -> None:
        super().__init__()
        self.h = nn.Linear(num_prototypes, num_prototypes)
        # A scaled identity at the start: a random H mixes all prototypes alike, every cell would get
        # the same mixture and L_cls would sit at its symmetric point (all cosines equal).
        with torch.no_grad():
            self.h.weight.copy_(torch.eye(num_prototypes) * H_INIT_SCALE)
        nn.init.zeros_(self.h.bias)

    def forward(self, affinity: Tensor, p_vox: Tensor, g: Tensor, valid: Tensor,
                feat_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """affinity A (S, M, K), p_vox (S, M, d), g sparse (S*D, S*K), valid (S, K) ->
        (X (S, d, h_f, w_f), coverage (S, h_f, w_f) = attention mass per cell)."""
        s, m, k = affinity.shape
        hf, wf = feat_size
        with torch.autocast(affinity.device.type, enabled=False):  # sparse products in g's dtype (>= f32)
            ha = self.h(affinity.transpose(1, 2).to(g.dtype))  # H(A)ᵀ: (S, K, M)
            ha = (ha * valid[..., None].to(g.dtype)).reshape(s * k, m)
            ones = torch.ones(s * k, 1, device=ha.device, dtype=ha.dtype)
            mixed = torch.sparse.mm(g, torch.cat([ha, ones], 1))  # (S*D, M + 1): Σ_k G·H(A) and Σ_k G
            coverage = mixed[:, m:]
            assign = (mixed[:, :m] / coverage.clamp(min=1e-12)).softmax(-1)  # (S*D, M)
            x = assign.view(s, hf * wf, m) @ p_vox.to(g.dtype)  # (S, D, d)
        return x.transpose(1, 2).reshape(s, -1, hf, wf), coverage.view(s, hf, wf)
