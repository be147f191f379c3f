"""Prototype clustering, Aggregate (Eq. 1a), Dispatch (Eq. 1b) and pixel features (Eq. 2) vs direct loops."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from protoocc_ros.model.prototypes import (
    PrototypeClustering,
    PrototypeMapping,
    PrototypePixelFeatures,
    attention_map,
)


@pytest.fixture(autouse=True)
def _float64():
    """Exact comparisons against the loops."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b / (a.norm() * b.norm())).detach())


def test_clustering_matches_loop() -> None:
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 4, 5, 7, generator=g)
    rows, cols = math.ceil(5 / 2), math.ceil(7 / 2)
    out = PrototypeClustering((rows, cols), iterations=2, temperature=0.5)(feat)
    for s in range(2):
        pix = [feat[s, :, i, j] for i in range(5) for j in range(7)]
        protos = []
        for r in range(rows):  # adaptive pooling cells: [floor(r*5/rows), ceil((r+1)*5/rows))
            for c in range(cols):
                cell = [feat[s, :, i, j] for i in range(r * 5 // rows, math.ceil((r + 1) * 5 / rows))
                        for j in range(c * 7 // cols, math.ceil((c + 1) * 7 / cols))]
                protos.append(sum(cell) / len(cell))
        for _ in range(2):
            assign = [torch.tensor([_cos(p, q) / 0.5 for q in protos]).softmax(0) for p in pix]
            protos = [sum(a[m] * p for a, p in zip(assign, pix)) / (sum(a[m] for a in assign) + 1e-6)
                      for m in range(len(protos))]
        torch.testing.assert_close(out[s], torch.stack(protos))


def _mlp_rows(mlp: torch.nn.Module, rows: list[torch.Tensor]) -> list[torch.Tensor]:
    return [mlp(r) for r in rows]


def test_aggregate_and_dispatch_match_the_paper_as_printed() -> None:
    """Sec. 3.2.1 as printed, one camera at a time, loops over prototypes m and hit queries k:

    P̂_img = MLP(P_img); A_mk = cos(P̂_img[m], Q'[k]); σ = sigmoid;
    Eq. 1a  P_vox[m] = (P̂_img[m] + Σ_k σ(A_mk) Q'[k]) / R,  R = "the total sum of the similarities σ(A)";
    Eq. 1b  Q̂[k] = Q'[k] + MLP(Σ_m σ(A_mk) P_vox[m]).
    """
    torch.manual_seed(0)
    s, m, k, d = 3, 4, 5, 6
    mapping = PrototypeMapping(d)
    p_img, q = torch.randn(s, m, d), torch.randn(s, k, d)
    valid = torch.ones(s, k, dtype=torch.bool)
    valid[1, 3:] = False  # camera 1 has only 3 hit queries: the rest are padding, not queries
    q_hat, affinity, p_vox = mapping(p_img, q, valid)
    for si in range(s):
        hits = [kk for kk in range(k) if valid[si, kk]]
        p_hat = _mlp_rows(mapping.img_mlp, [p_img[si, mm] for mm in range(m)])
        sig = {(mm, kk): torch.sigmoid(torch.tensor(_cos(p_hat[mm], q[si, kk]))) for mm in range(m) for kk in hits}
        r = sum(sig.values())
        ref_vox = [(p_hat[mm] + sum(sig[mm, kk] * q[si, kk] for kk in hits)) / r for mm in range(m)]
        for mm in range(m):
            torch.testing.assert_close(p_vox[si, mm], ref_vox[mm])
            for kk in hits:
                torch.testing.assert_close(affinity[si, mm, kk].item(), _cos(p_hat[mm], q[si, kk]))
        for kk in hits:
            dispatched = mapping.dispatch_mlp(sum(sig[mm, kk] * ref_vox[mm] for mm in range(m)))
            torch.testing.assert_close(q_hat[si, kk], q[si, kk] + dispatched)


def test_mapping_deviation_flags_match_their_loops() -> None:
    """learned_affinity_scale + per_prototype_norm + dispatch_mlp_on_prototypes (the pre-paper-default code)."""
    torch.manual_seed(0)
    s, m, k, d = 3, 4, 5, 6
    mapping = PrototypeMapping(d, learned_affinity_scale=True, per_prototype_norm=True,
                               dispatch_mlp_on_prototypes=True)
    with torch.no_grad():
        mapping.alpha.fill_(3.0)
        mapping.beta.fill_(-0.5)
    p_img, q = torch.randn(s, m, d), torch.randn(s, k, d)
    valid = torch.ones(s, k, dtype=torch.bool)
    valid[1, 3:] = False
    q_hat, _, p_vox = mapping(p_img, q, valid)
    for si in range(s):
        p_hat = mapping.img_mlp(p_img[si])
        hits = [kk for kk in range(k) if valid[si, kk]]
        sig = {(mm, kk): torch.sigmoid(3.0 * torch.tensor(_cos(p_hat[mm], q[si, kk])) - 0.5)
               for mm in range(m) for kk in hits}
        for mm in range(m):
            r = 1.0 + sum(sig[mm, kk] for kk in hits)
            ref = (p_hat[mm] + sum(sig[mm, kk] * q[si, kk] for kk in hits)) / r
            torch.testing.assert_close(p_vox[si, mm], ref)
        for kk in hits:
            mix = sum(sig[mm, kk] * mapping.dispatch_mlp(p_vox[si, mm]) for mm in range(m))
            torch.testing.assert_close(q_hat[si, kk], q[si, kk] + mix / (sum(sig[mm, kk] for mm in range(m)) + 1e-6))


def test_context_cluster_reading_matches_its_loop() -> None:
    """The default reading (Context Clusters [31]): S = σ(α·A + β) kept only at each query's most similar
    prototype, R_m = 1 + Σ_k S_mk per prototype, Q̂ = Q' + MLP(Σ_m S_mk P_vox[m])."""
    torch.manual_seed(1)
    s, m, k, d = 2, 4, 6, 5
    mapping = PrototypeMapping(d, learned_affinity_scale=True, per_prototype_norm=True, hard_assignment=True)
    with torch.no_grad():
        mapping.alpha.fill_(2.0)
        mapping.beta.fill_(0.3)
    p_img, q = torch.randn(s, m, d), torch.randn(s, k, d)
    valid = torch.ones(s, k, dtype=torch.bool)
    valid[0, 4:] = False
    q_hat, _, p_vox = mapping(p_img, q, valid)
    for si in range(s):
        p_hat = mapping.img_mlp(p_img[si])
        hits = [kk for kk in range(k) if valid[si, kk]]
        best = {kk: max(range(m), key=lambda mm: _cos(p_hat[mm], q[si, kk])) for kk in hits}
        sim = {(mm, kk): (torch.sigmoid(2.0 * torch.tensor(_cos(p_hat[mm], q[si, kk])) + 0.3)
                          if best[kk] == mm else torch.tensor(0.0)) for mm in range(m) for kk in hits}
        for mm in range(m):
            ref = (p_hat[mm] + sum(sim[mm, kk] * q[si, kk] for kk in hits)) / (1.0 + sum(sim[mm, kk] for kk in hits))
            torch.testing.assert_close(p_vox[si, mm], ref)
        for kk in hits:
            dispatched = mapping.dispatch_mlp(sim[best[kk], kk] * p_vox[si, best[kk]])
            torch.testing.assert_close(q_hat[si, kk], q[si, kk] + dispatched)


def _dense_attention_map(loc: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor, si: int,
                         hf: int, wf: int) -> torch.Tensor:
    """G (K, D) by loops: each sampling point adds its attention weight / heads to the cell it falls in."""
    k, heads, pts = weights.shape[1:]
    dense_g = torch.zeros(k, hf * wf)
    for kk in range(k):
        for h in range(heads):
            for p in range(pts):
                cx, cy = loc[si, kk, h, p].tolist()
                col, row = math.floor(cx * wf), math.floor(cy * hf)
                if valid[si, kk] and 0 <= col < wf and 0 <= row < hf:
                    dense_g[kk, row * wf + col] += weights[si, kk, h, p] / heads
    return dense_g


def _pixel_case(seed: int):
    torch.manual_seed(seed)
    s, m, k, d, heads, pts, hf, wf = 2, 3, 4, 5, 2, 3, 3, 4
    affinity, p_vox = torch.rand(s, m, k) * 2 - 1, torch.randn(s, m, d)
    valid = torch.ones(s, k, dtype=torch.bool)
    valid[0, -1] = False
    affinity = affinity * valid[:, None]
    loc = torch.rand(s, k, heads, pts, 2) * 1.2 - 0.1  # some samples fall outside the image
    weights = torch.rand(s, k, heads, pts)
    return affinity, p_vox, valid, loc, weights, (hf, wf)


def test_pixel_features_match_the_paper_as_printed() -> None:
    """Eq. 2 as printed, X = {G ⊙ H(A)} · P_vox, by loops: for every cell and prototype the element-wise
    products G[k, cell] · H(A)[m, k] of the hit queries, then the matrix product with P_vox."""
    affinity, p_vox, valid, loc, weights, (hf, wf) = _pixel_case(1)
    s, m, k = affinity.shape
    pix = PrototypePixelFeatures(m)
    with torch.no_grad():
        pix.h.weight.add_(torch.randn(m, m))
        pix.h.bias.normal_()
    g = attention_map(loc, weights, valid, (hf, wf))
    x, coverage = pix(affinity, p_vox, g, valid, (hf, wf))
    assert x.shape == (s, p_vox.shape[2], hf, wf)
    for si in range(s):
        dense_g = _dense_attention_map(loc, weights, valid, si, hf, wf)
        ha = [pix.h(affinity[si, :, kk]) for kk in range(k)]  # H maps query k's affinities over the M prototypes
        for cell in range(hf * wf):
            torch.testing.assert_close(coverage[si, cell // wf, cell % wf].item(), dense_g[:, cell].sum().item(),
                                       rtol=1e-5, atol=1e-6)
            assign = [sum(dense_g[kk, cell] * ha[kk][mm] for kk in range(k) if valid[si, kk]) for mm in range(m)]
            ref = sum(assign[mm] * p_vox[si, mm] for mm in range(m))
            torch.testing.assert_close(x[si, :, cell // wf, cell % wf], torch.as_tensor(ref).expand(p_vox.shape[2]),
                                       rtol=1e-5, atol=1e-5)


def test_pixel_softmax_deviation_matches_its_loop() -> None:
    """pixel_softmax: X[cell] = Σ_m softmax_m(Σ_k G[k, cell] H(A)[m, k] / Σ_k G[k, cell]) P_vox[m]."""
    affinity, p_vox, valid, loc, weights, (hf, wf) = _pixel_case(1)
    s, m, k = affinity.shape
    pix = PrototypePixelFeatures(m, pixel_softmax=True)
    with torch.no_grad():
        pix.h.weight.add_(torch.randn(m, m))
        pix.h.bias.normal_()
    g = attention_map(loc, weights, valid, (hf, wf), detach=True)
    x, _ = pix(affinity, p_vox, g, valid, (hf, wf))
    for si in range(s):
        dense_g = _dense_attention_map(loc, weights, valid, si, hf, wf)
        ha = pix.h(affinity[si].t()).t()  # (M, K)
        for cell in range(hf * wf):
            mass = dense_g[:, cell].sum()
            if mass == 0:
                continue
            score = torch.stack([sum(dense_g[kk, cell] * ha[mm, kk] for kk in range(k) if valid[si, kk]) / mass
                                 for mm in range(m)])
            ref = sum(pr * p_vox[si, mm] for mm, pr in enumerate(score.softmax(0)))
            torch.testing.assert_close(x[si, :, cell // wf, cell % wf], ref, rtol=1e-5, atol=1e-5)


def test_attention_map_carries_gradient_to_the_attention_weights_unless_detached() -> None:
    affinity, p_vox, valid, loc, weights, size = _pixel_case(4)
    weights.requires_grad_()
    pix = PrototypePixelFeatures(affinity.shape[1])
    x, _ = pix(affinity, p_vox, attention_map(loc, weights, valid, size), valid, size)
    x.square().sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    assert not attention_map(loc, weights, valid, size, detach=True).requires_grad


def test_pixel_features_pass_gradients_to_prototypes_and_h() -> None:
    torch.manual_seed(2)
    s, m, k, d = 2, 3, 4, 5
    affinity = (torch.rand(s, m, k) * 2 - 1).requires_grad_()
    p_vox = torch.randn(s, m, d, requires_grad=True)
    valid = torch.ones(s, k, dtype=torch.bool)
    pix = PrototypePixelFeatures(m)
    g = attention_map(torch.rand(s, k, 2, 3, 2), torch.rand(s, k, 2, 3), valid, (2, 3))
    x, _ = pix(affinity, p_vox, g, valid, (2, 3))
    x.square().sum().backward()
    for t in (affinity.grad, p_vox.grad, pix.h.weight.grad):
        assert t is not None and t.abs().sum() > 0


def test_batching_over_cameras_is_independent() -> None:
    """Camera i's prototypes and queries do not leak into camera j (no cross-camera mixing)."""
    torch.manual_seed(3)
    mapping = PrototypeMapping(16)
    p_img, q = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    valid = torch.ones(2, 5, dtype=torch.bool)
    q_hat, _, _ = mapping(p_img, q, valid)
    p_img2 = p_img.clone()
    p_img2[1] = torch.randn(3, 16)
    q_hat2, _, _ = mapping(p_img2, q, valid)
    torch.testing.assert_close(q_hat2[0], q_hat[0])
    assert not torch.allclose(q_hat2[1], q_hat[1])
    clusters = PrototypeClustering((2, 2), 3, 0.1)
    feat = torch.randn(2, 4, 4, 6)
    feat2 = feat.clone()
    feat2[1] = F.pad(torch.randn(4, 4, 5), (0, 1))
    torch.testing.assert_close(clusters(feat2)[0], clusters(feat)[0])
