"""Temporal memory: ego-motion warping, reset rules, temporal self-attention, memory through the model."""
from __future__ import annotations

import math

import pytest
import torch
from model_helpers import make_inputs

from protoocc_ros.model import TemporalMemory, build_model
from protoocc_ros.model.temporal_attention import TemporalSelfAttention
from protoocc_ros.model.temporal_memory import warp_features

PCR = [-40.0, -40.0, -1.0, 40.0, 40.0, 5.4]


def _pose(x: float = 0.0, y: float = 0.0, yaw_deg: float = 0.0, batch: int = 1) -> torch.Tensor:
    yaw = math.radians(yaw_deg)
    t = torch.eye(4, dtype=torch.float64)
    t[:2, :2] = torch.tensor([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]], dtype=torch.float64)
    t[0, 3], t[1, 3] = x, y
    return t.repeat(batch, 1, 1)


def test_ego_shift_of_one_voxel_shifts_features_by_one_voxel() -> None:
    feats = torch.randn(2, 3, 10, 8, 4)
    vx, vy = 80.0 / 10, 80.0 / 8  # query voxel size
    prev = _pose(100.0, -20.0, 30.0, batch=2)  # arbitrary world pose of the previous frame
    step = torch.eye(4, dtype=torch.float64)
    step[0, 3] = vx  # drove one voxel forward (ego x)
    warped, valid = warp_features(feats, prev, prev @ step, PCR)
    torch.testing.assert_close(warped[:, :, :-1], feats[:, :, 1:], rtol=1e-5, atol=1e-5)
    assert (warped[:, :, -1] == 0).all() and not valid[:, :, -1].any() and valid[:, :, :-1].all()
    step = torch.eye(4, dtype=torch.float64)
    step[1, 3] = -vy  # one voxel to the right
    warped, _ = warp_features(feats, prev, prev @ step, PCR)
    torch.testing.assert_close(warped[:, :, :, 1:], feats[:, :, :, :-1], rtol=1e-5, atol=1e-5)


def test_half_turn_flips_the_grid_and_identity_keeps_it() -> None:
    feats = torch.randn(1, 2, 6, 6, 3)
    same, valid = warp_features(feats, _pose(5, 5, 10), _pose(5, 5, 10), PCR)
    torch.testing.assert_close(same, feats, rtol=1e-5, atol=1e-5)
    assert valid.all()
    turned, _ = warp_features(feats, _pose(), _pose(yaw_deg=180.0), PCR)
    torch.testing.assert_close(turned, feats.flip(2, 3), rtol=1e-5, atol=1e-5)


def _memory(t: float = 10.0, x: float = 0.0) -> TemporalMemory:
    return TemporalMemory(torch.zeros(1, 4, 2, 2, 2), _pose(x), torch.tensor([t], dtype=torch.float64), [None])


@pytest.mark.parametrize("memory, t, x, reason", [
    (None, 10.5, 0.0, "first_frame"),
    (TemporalMemory(), 10.5, 0.0, "first_frame"),
    (_memory(), 9.9, 0.0, "time_backwards"),
    (_memory(), 12.0, 0.0, "gap"),
    (_memory(), 10.5, 30.0, "pose_jump"),
    (_memory(), 10.5, 5.0, None),
    (_memory(), 10.0, 0.0, None),
])
def test_reset_rules(memory: TemporalMemory | None, t: float, x: float, reason: str | None) -> None:
    memory = memory if memory is not None else TemporalMemory()
    reasons = memory.reset_reasons(_pose(x), torch.tensor([t], dtype=torch.float64), (4, 2, 2, 2),
                                   max_gap_s=1.5, max_pose_jump_m=20.0)
    assert reasons == [reason]
    assert memory.should_reset(_pose(x), torch.tensor([t], dtype=torch.float64), (4, 2, 2, 2), 1.5, 20.0) == \
        [reason is not None]


def test_memory_of_another_shape_or_batch_resets() -> None:
    mem = _memory()
    ts = torch.tensor([10.5, 10.5], dtype=torch.float64)
    assert mem.reset_reasons(_pose(batch=2), ts, (4, 2, 2, 2), 1.5, 20.0) == ["first_frame"] * 2
    assert mem.reset_reasons(_pose(), ts[:1], (8, 2, 2, 2), 1.5, 20.0) == ["first_frame"]


def test_temporal_attention_uses_the_previous_volume() -> None:
    torch.manual_seed(0)
    tsa = TemporalSelfAttention(8, num_heads=2, num_points=3, dropout=0.0)
    size = (4, 4, 2)
    q = 32
    ref = torch.rand(q, 3)
    query, pos = torch.randn(1, q, 8), torch.randn(1, q, 8)
    out_a = tsa(query, pos, torch.randn(1, q, 8), ref, size)
    out_b = tsa(query, pos, torch.randn(1, q, 8), ref, size)
    assert out_a.shape == (1, q, 8) and not torch.allclose(out_a, out_b)
    out_a.sum().backward()
    assert tsa.sampling_offsets.weight.grad is not None and tsa.sampling_offsets.weight.grad.abs().sum() > 0


def test_model_carries_memory_and_reports_resets(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    inp = make_inputs(tiny_cfg)
    out1 = model(**inp)
    assert out1.memory.reset_reason == ["first_frame"] and not out1.memory.features.requires_grad
    assert out1.memory.features.shape == (1, 16, 20, 20, 4)
    inp2 = dict(inp, timestamp=inp["timestamp"] + 0.5)
    out2 = model(**inp2, memory=out1.memory)
    assert out2.memory.reset_reason == [None]
    assert not torch.allclose(out2.logits, out1.logits)  # history changes the prediction
    again = model(**inp2)  # the same frame without memory equals the first frame's prediction
    torch.testing.assert_close(again.logits, out1.logits)
    back = model(**dict(inp, timestamp=inp["timestamp"] - 1.0), memory=out2.memory)
    assert back.memory.reset_reason == ["time_backwards"]
    torch.testing.assert_close(back.logits, out1.logits)  # a reset frame ignores the stale memory
