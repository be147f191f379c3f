"""Prototype-aware view transformation (paper Sec. 3.2): clustering, Aggregate (Eq. 1a), Dispatch (Eq. 1b),
prototype-aware pixel features (Eq. 2).

Everything is batched over cameras (S = B*N camera images) and prototypes; no Python loops over
either. Shapes: M prototypes, K hit-query slots of one camera (padding marked by ``valid``),
D = h_f * w_f cells of the clustered feature map, d channels.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PrototypeRecorder(Protocol):
    """What the prototype modules hand to a recorder (prototype_health.HealthRecorder) while one is attached."""

    def clustering(self, assign: Tensor, feat_size: tuple[int, int]) -> None: ...

    def mapping(self, module: nn.Module, q: Tensor, dispatched: Tensor, p_vox: Tensor, affinity: Tensor,
                sim: Tensor, valid: Tensor) -> None: ...

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
        self.grid: tuple[int, int] = (int(grid[0]), int(grid[1]))
        self.iterations, self.temperature = iterations, temperature
        self.recorder: PrototypeRecorder | None = None  # set by prototype_health.recording

    def forward(self, feat: Tensor) -> Tensor:
        """feat (S, d, h_f, w_f) -> P_img (S, M, d). With ``self.recorder`` set (prototype_health.recording), the
        last iteration's assignment is handed to it (entropy, and the per-pixel prototype for the picture)."""
        protos = F.adaptive_avg_pool2d(feat, self.grid).flatten(2).transpose(1, 2)  # (S, M, d)
        pix = feat.flatten(2).transpose(1, 2)  # (S, D, d)
        pix_n = F.normalize(pix, dim=-1)
        assign = None
        for _ in range(self.iterations):
            sim = pix_n @ F.normalize(protos, dim=-1).transpose(1, 2)  # (S, D, M)
            assign = (sim / self.temperature).softmax(-1)
            protos = assign.transpose(1, 2) @ pix / (assign.sum(1)[..., None] + EPS)  # (S, M, d)
        if self.recorder is not None and assign is not None:
            self.recorder.clustering(assign.detach(), (int(feat.shape[-2]), int(feat.shape[-1])))
        return protos


def _mlp(dims: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dims, dims), nn.ReLU(inplace=True), nn.Linear(dims, dims))


class PrototypeMapping(nn.Module):
    """Lift 2D prototypes onto the hit voxel queries of each camera (Feature Aggregation & Dispatch [23, 31]).

    Per camera image: P̂_img = MLP(P_img) (M, d); A = cos(P̂_img, Q') (M, K); a similarity S = σ(·) of A;
    Aggregate, Eq. 1a: P_vox = (P̂_img + S · Q') / R; Dispatch, Eq. 1b: Q̂ = Q' + MLP(Sᵀ · P_vox). Padding slots
    have S = 0. Both MLPs are Linear-ReLU-Linear of width d.

    The paper leaves the form of σ, the assignment and R open ("R is the total sum of the similarities"). The
    default reading is the one of the cited Feature Aggregation & Dispatch code (Context Clusters [31]), chosen
    on the mapping's health figures and validation mIoU (docs/architecture.md "Readings"):

    - ``learned_affinity_scale``: S = σ(α·A + β), α, β learned (init 1, 0); off: σ(A).
    - ``hard_assignment``: each hit query keeps S only at its most similar prototype (one centre per point);
      off: every query is spread over all M prototypes, which makes P_vox one vector per camera (collapse).
    - ``per_prototype_norm``: R_m = 1 + Σ_k S_mk, the residual-weighted mean of each prototype's own queries;
      off: one R = Σ_{m,k} S per camera, which shrinks the query term by the ~M·K terms it sums.
    - ``dispatch_mlp_on_prototypes``: Q̂ = Q' + Sᵀ · MLP(P_vox) / Σ_m S (the MLP on M rows; named variant).

    All off is the paper as printed (the ``printed`` reading of benchmarks/ablation.py).
    """

    def __init__(self, embed_dims: int, learned_affinity_scale: bool = False, per_prototype_norm: bool = False,
                 dispatch_mlp_on_prototypes: bool = False, hard_assignment: bool = False,
                 detach_queries_for_pixels: bool = False) -> None:
        super().__init__()
        self.detach_queries_for_pixels = detach_queries_for_pixels
        self.per_prototype_norm = per_prototype_norm
        self.dispatch_mlp_on_prototypes = dispatch_mlp_on_prototypes
        self.hard_assignment = hard_assignment
        self.img_mlp = _mlp(embed_dims)
        self.dispatch_mlp = _mlp(embed_dims)
        self.alpha = nn.Parameter(torch.ones(())) if learned_affinity_scale else None
        self.beta = nn.Parameter(torch.zeros(())) if learned_affinity_scale else None
        self.recorder: PrototypeRecorder | None = None  # set by prototype_health.recording

    def similarity(self, affinity: Tensor, valid: Tensor) -> Tensor:
        """S (S, M, K) of the affinities A: σ(A) or σ(α·A + β), kept at each query's best prototype only with
        ``hard_assignment``; 0 on padding slots."""
        logits = affinity if self.alpha is None or self.beta is None else self.alpha * affinity + self.beta
        sig = torch.sigmoid(logits) * valid[:, None, :].to(affinity.dtype)
        if self.hard_assignment:
            best = affinity.argmax(1, keepdim=True)  # (S, 1, K): one prototype per query (Context Clusters)
            sig = sig * torch.zeros_like(sig).scatter_(1, best, 1.0)
        return sig

    def aggregate(self, p_hat: Tensor, q: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. 1a: P̂_img (S, M, d), Q' (S, K, d) -> (A (S, M, K), S (S, M, K), P_vox (S, M, d))."""
        q_unit = F.normalize(q, dim=-1) * valid[..., None].to(q.dtype)  # padding slots -> 0
        affinity = F.normalize(p_hat, dim=-1) @ q_unit.transpose(1, 2)  # A, cosine: (S, M, K)
        sig = self.similarity(affinity, valid)
        if self.per_prototype_norm:
            r = 1.0 + sig.sum(-1, keepdim=True)  # (S, M, 1)
        else:
            r = sig.sum((1, 2)).clamp(min=EPS)[:, None, None]  # (S, 1, 1): Σ_{m,k} S
        return affinity, sig, (p_hat + sig @ q) / r

    def forward(self, p_img: Tensor, q: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """p_img (S, M, d), q = Q' (S, K, d), valid (S, K) -> (Q̂ (S, K, d), A (S, M, K), P_vox (S, M, d)).

        With ``detach_queries_for_pixels`` (training only) the returned A and P_vox, which Eq. 2 and L_cls read,
        are computed from Q' without its gradient: L_cls then trains the prototypes (the image MLP, the clustered
        features and the backbone), not the voxel queries; Q̂ is the same either way."""
        p_hat = self.img_mlp(p_img)  # P̂_img (S, M, d)
        affinity, sig, p_vox = self.aggregate(p_hat, q, valid)
        if self.dispatch_mlp_on_prototypes:
            dispatched = sig.transpose(1, 2) @ self.dispatch_mlp(p_vox) / (sig.sum(1)[..., None] + EPS)
        else:
            dispatched = self.dispatch_mlp(sig.transpose(1, 2) @ p_vox)  # MLP(Sᵀ · P_vox): (S, K, d)
        if self.recorder is not None:
            self.recorder.mapping(self, q, dispatched, p_vox, affinity, sig, valid)
        if self.detach_queries_for_pixels and self.training:
            affinity, _, p_vox = self.aggregate(p_hat, q.detach(), valid)
        return q + dispatched, affinity, p_vox  # Eq. 1b


def attention_map(locations: Tensor, weights: Tensor, valid: Tensor, feat_size: tuple[int, int],
                  detach: bool = False) -> Tensor:
    """G of Eq. 2 as a sparse (S*D, S*K) matrix: the deformable-attention mass of query k on cell D.

    locations (S, K, heads, P, 2) in [0, 1] and weights (S, K, heads, P) of the clustered level;
    each sample adds weight / heads to the cell containing it (nearest cell: the locations carry no
    gradient, the weights do unless ``detach``). Transposed so that ``G @ Z`` gives per-cell features.
    """
    s, k, heads, _p, _ = locations.shape
    hf, wf = feat_size
    loc = locations.detach()
    col = (loc[..., 0] * wf).floor().long()
    row = (loc[..., 1] * hf).floor().long()
    inside = (col >= 0) & (col < wf) & (row >= 0) & (row < hf) & valid[:, :, None, None]
    cam = torch.arange(s, device=loc.device).view(s, 1, 1, 1)
    cell = cam * (hf * wf) + row.clamp(0, hf - 1) * wf + col.clamp(0, wf - 1)  # (S, K, heads, P)
    slot = (cam * k + torch.arange(k, device=loc.device).view(1, k, 1, 1)).expand_as(cell)
    dtype = torch.promote_types(weights.dtype, torch.float32)  # sparse products in >= float32 (AMP safe)
    w = weights.detach() if detach else weights
    vals = w.to(dtype) / heads * inside
    keep = inside.flatten()
    g = torch.sparse_coo_tensor(torch.stack([cell.flatten()[keep], slot.flatten()[keep]]), vals.flatten()[keep],
                                (s * hf * wf, s * k), check_invariants=False)
    return g  # uncoalesced: sparse.mm sums duplicate (cell, query) entries itself


H_SOFTMAX_INIT_SCALE = 10.0  # pixel_softmax: H starts as 10 * identity, a softmax temperature of 0.1


class PrototypePixelFeatures(nn.Module):
    """Prototype-aware pixel features, Eq. 2: X = {G ⊙ H(A)} · P_vox (S, d, h_f, w_f).

    G (K, D): each hit query's deformable-attention mass on the cells of the clustered feature map;
    H: a linear map over the prototype axis of A (M -> M, per query), initialised to the identity.
    Reading chosen (the printed shapes leave it open): ``G ⊙ H(A)`` pairs, for every query k, its cell
    weights G[k, ·] with its prototype weights H(A)[·, k], accumulated over the hit queries:
    W[cell, m] = Σ_k G[k, cell] · H(A)[m, k], "the probability of each grid cell being assigned with a
    certain prototype"; X[cell] = Σ_m W[cell, m] · P_vox[m]. No normalisation (L_cls compares cosines).
    Also returns the attention mass Σ_k G[k, cell] per cell: cells no query attends carry no feature.

    Named deviation ``pixel_softmax`` (off by default): W normalised by the cell's mass and passed
    through a softmax over m, G detached, H initialised to 10·I.
    """

    def __init__(self, num_prototypes: int, pixel_softmax: bool = False) -> None:
        super().__init__()
        self.pixel_softmax = pixel_softmax
        self.h = nn.Linear(num_prototypes, num_prototypes)
        scale = H_SOFTMAX_INIT_SCALE if pixel_softmax else 1.0
        with torch.no_grad():  # a random H would mix all prototypes alike and start L_cls at its symmetric point
            self.h.weight.copy_(torch.eye(num_prototypes) * scale)
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
            assign = mixed[:, :m]  # W (S*D, M)
            if self.pixel_softmax:
                assign = (assign / coverage.clamp(min=1e-12)).softmax(-1)
            x = assign.view(s, hf * wf, m) @ p_vox.to(g.dtype)  # (S, D, d)
        return x.transpose(1, 2).reshape(s, -1, hf, wf), coverage.view(s, hf, wf)
