"""Spatial cross-attention: projection, per-camera gathering, deformable sampling vs a naive loop."""
from __future__ import annotations

import math

import torch
from model_helpers import camera_rig

from protoocc_ros.model.spatial_cross_attention import (
    MSDeformableAttention3D,
    SpatialCrossAttention,
    deformable_sample,
    gather_hit_queries,
    project_points,
)


def _bilinear(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img (C, H, W); x, y in [0, 1] with pixel centres at (i + 0.5) / size; zeros outside."""
    c, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(c, dtype=img.dtype)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        wx = 1.0 - abs(px - xi)
        wy = 1.0 - abs(py - yi)
        if 0 <= xi < w and 0 <= yi < h:
            out += wx * wy * img[:, yi, xi]
    return out


def test_deformable_sample_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    s, k, heads, d_head, points = 2, 5, 2, 3, 3
    shapes = [(6, 7), (3, 4)]
    values = [torch.randn(s, heads, d_head, h, w, generator=g, dtype=torch.float64) for h, w in shapes]
    loc = torch.rand(s, k, heads, len(shapes), points, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(s, k, heads, len(shapes), points, generator=g, dtype=torch.float64)
    out = deformable_sample(values, loc, weights)
    ref = torch.zeros(s, k, heads * d_head, dtype=torch.float64)
    for si in range(s):
        for ki in range(k):
            for hi in range(heads):
                acc = torch.zeros(d_head, dtype=torch.float64)
                for lv in range(len(shapes)):
                    for p in range(points):
                        x, y = loc[si, ki, hi, lv, p].tolist()
                        acc += weights[si, ki, hi, lv, p] * _bilinear(values[lv][si, hi], x, y)
                ref[si, ki, hi * d_head:(hi + 1) * d_head] = acc
    torch.testing.assert_close(out, ref)


def test_project_points_lands_where_the_pinhole_model_says() -> None:
    rig = camera_rig(["CAM_FRONT", "CAM_BACK"], (64, 112), height=1.6)  # f = 0.8 * 112
    pts = torch.tensor([[[10.0, 0.0, 1.6]], [[10.0, 2.0, 0.6]], [[-10.0, 0.0, 1.6]]])  # (Q=3, Z_a=1, 3)
    uv, vis = project_points(pts, rig[None], (64, 112))
    f, cx, cy = 0.8 * 112, 55.5, 31.5
    # front camera: point straight ahead at camera height -> principal point; 2 m left, 1 m lower
    torch.testing.assert_close(uv[0, 0, 0, 0], torch.tensor([(cx + 0.5) / 112, (cy + 0.5) / 64]))
    torch.testing.assert_close(uv[0, 0, 1, 0], torch.tensor([(cx - f * 0.2 + 0.5) / 112, (cy + f * 0.1 + 0.5) / 64]))
    assert vis[0, 0, :, 0].tolist() == [True, True, False]  # behind the front camera
    assert vis[0, 1, :, 0].tolist() == [False, False, True]


def test_gather_hit_queries_lists_each_cameras_queries() -> None:
    visible = torch.tensor([[[[True, False], [False, False], [False, True], [True, True]],
                             [[False, False], [True, False], [False, False], [False, False]]]])  # (1, 2, 4, 2)
    uv = torch.arange(1 * 2 * 4 * 2 * 2, dtype=torch.float32).view(1, 2, 4, 2, 2)
    cams = gather_hit_queries(uv, visible)
    assert cams.index.shape == (1, 2, 3)
    assert cams.index[0, 0].tolist() == [0, 2, 3] and cams.valid[0, 0].tolist() == [True, True, True]
    assert cams.index[0, 1, 0].item() == 1 and cams.valid[0, 1].tolist() == [True, False, False]
    assert cams.count[0].tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(cams.uv[0, 0, 1], uv[0, 0, 2])


def _sca_setup(seed: int = 0):
    torch.manual_seed(seed)
    d, heads = 8, 2
    sca = SpatialCrossAttention(d, heads, num_levels=2, num_points=4, num_anchors=2, dropout=0.0).eval()
    with torch.no_grad():  # non-trivial offsets and weights
        sca.attention.sampling_offsets.weight.normal_(0, 0.5)
        sca.attention.attention_weights.weight.normal_(0, 0.5)
    image_size = (32, 48)
    rig = camera_rig(["CAM_FRONT", "CAM_BACK", "CAM_FRONT_LEFT"], image_size)[None]  # (1, 3, 4, 4)
    yaws = [math.radians(a) for a in (-10.0, 180.0, 27.5)]  # front only, back only, front + front-left
    pillars = torch.tensor([[[12 * math.cos(a), 12 * math.sin(a), zz] for zz in (0.5, 2.0)] for a in yaws])
    uv, vis = project_points(pillars, rig, image_size)
    cams = gather_hit_queries(uv, vis)
    feats = [torch.randn(3, d, 8, 12), torch.randn(3, d, 4, 6)]  # (B*N, d, H_l, W_l)
    query, pos = torch.randn(1, 3, d), torch.randn(1, 3, d)
    return sca, query, pos, feats, cams


def test_camera_that_does_not_see_a_query_contributes_nothing() -> None:
    sca, query, pos, feats, cams = _sca_setup()
    assert cams.count[0].tolist() == [1, 1, 2]  # query 0: front camera, 1: back, 2: front and front-left
    out, _ = sca(query, pos, feats, cams)
    changed = [f.clone() for f in feats]
    for f in changed:
        f[1] = torch.randn_like(f[1])  # replace the back camera's features
    out2, _ = sca(query, pos, changed, cams)
    torch.testing.assert_close(out2[0, 0], out[0, 0])  # front query unaffected
    torch.testing.assert_close(out2[0, 2], out[0, 2])
    assert not torch.allclose(out2[0, 1], out[0, 1])  # back query does depend on its camera


def test_sca_matches_per_camera_reference() -> None:
    """The batched gather/scatter equals attending each hit camera separately and averaging."""
    sca, query, pos, feats, cams = _sca_setup(1)
    both = cams.valid.clone()
    out, _ = sca(query, pos, feats, cams)
    attn = sca.attention
    values = attn.project_values(feats)
    ref = torch.zeros_like(query)
    for n in range(3):
        for slot in range(cams.index.shape[2]):
            if not both[0, n, slot]:
                continue
            qi = cams.index[0, n, slot]
            q = (query + pos)[:, qi][None]  # (1, 1, d)
            o, _, _ = attn(q, cams.uv[0, n, slot][None, None], [v[n:n + 1] for v in values])
            ref[0, qi] += o[0, 0]
    ref = sca.output_proj(ref / cams.count[..., None]) + query
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_initial_offsets_spread_around_the_anchor() -> None:
    attn = MSDeformableAttention3D(16, num_heads=4, num_levels=1, num_points=4, num_anchors=2)
    loc, weights = attn.sampling(torch.zeros(1, 1, 16), torch.full((1, 1, 2, 2), 0.5), [(10, 10)])
    assert loc.shape == (1, 1, 4, 1, 4, 2)
    torch.testing.assert_close(weights.sum(dim=(-1, -2)), torch.ones(1, 1, 4))
    assert (loc - 0.5).abs().amax() > 0.05  # heads look in different directions


def test_dispatched_query_only_steers_the_attention_unless_flagged() -> None:
    """Sec. 3.2.1: Q̂ "is fed as input for deformable attention"; only the dispatch_to_output deviation
    also adds Q̂ - Q' to the attention output."""
    sca, query, pos, feats, cams = _sca_setup(2)
    with torch.no_grad():  # let the query move the sampling (zero-initialised projections ignore it)
        sca.attention.sampling_offsets.weight.normal_(0.0, 0.05)
        sca.attention.attention_weights.weight.normal_(0.0, 0.05)
    shift = torch.randn(query.shape[-1])

    def transform(q: torch.Tensor, valid: torch.Tensor):
        return q + shift, {}

    plain, _ = sca(query, pos, feats, cams)
    steered, _ = sca(query, pos, feats, cams, transform)
    # Reference: the attention driven by Q' + shift, output averaged over hitting cameras, no shortcut
    values = sca.attention.project_values(feats)
    ref = torch.zeros_like(query)
    for n in range(cams.index.shape[1]):
        for slot in range(cams.index.shape[2]):
            if cams.valid[0, n, slot]:
                qi = cams.index[0, n, slot]
                o, _, _ = sca.attention((query + pos)[:, qi][None] + shift, cams.uv[0, n, slot][None, None],
                                        [v[n:n + 1] for v in values])
                ref[0, qi] += o[0, 0]
    torch.testing.assert_close(steered, sca.output_proj(ref / cams.count[..., None]) + query, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(steered, plain)
    sca.dispatch_to_output = True
    shortcut, _ = sca(query, pos, feats, cams, transform)
    ref_short = ref.clone()
    for n in range(cams.index.shape[1]):
        for slot in range(cams.index.shape[2]):
            if cams.valid[0, n, slot]:
                ref_short[0, cams.index[0, n, slot]] += shift
    torch.testing.assert_close(shortcut, sca.output_proj(ref_short / cams.count[..., None]) + query,
                               rtol=1e-5, atol=1e-5)
