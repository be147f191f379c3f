"""Sequential clip sampling (scene-bounded, ordered, sharded) and the warm-up + cosine/step LR schedule."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from protoocc_ros.config import load_config
from protoocc_ros.training.clips import ClipSampler, scene_sequences
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.schedule import MIN_LR_RATIO, LrFactor, build_optimizer, build_scheduler

# three scenes listed out of order: 7, 5 and 2 frames
KEYS = [("b", i) for i in (3, 0, 1, 2, 6, 5, 4)] + [("a", i) for i in range(5)] + [("c", 1), ("c", 0)]


def _frame(i: int) -> tuple[str, int]:
    return KEYS[i]


def test_clips_are_consecutive_frames_of_one_scene() -> None:
    sampler = ClipSampler(KEYS, clip_length=3, batch_size=1, seed=4)
    for epoch in range(6):
        clips = sampler.clips(epoch)
        assert len(clips) == 2 + 1 + 1  # 7 // 3, 5 // 3, and the short scene c as one clip
        for clip in clips:
            scenes = {_frame(i)[0] for i in clip}
            frames = [_frame(i)[1] for i in clip]
            assert len(scenes) == 1
            assert frames == list(range(frames[0], frames[0] + len(frames)))
    offsets = {tuple(sampler.clips(e)[0]) for e in range(12)}
    assert len(offsets) > 1  # windows move between epochs
    assert scene_sequences(KEYS)["c"] == [13, 12]


def test_batches_are_deterministic_and_sharded_evenly() -> None:
    ranks = [ClipSampler(KEYS, 2, 1, seed=1, rank=r, world_size=2) for r in range(2)]
    b0, b1 = ranks[0].batches(3), ranks[1].batches(3)
    assert len(b0) == len(b1) == len(ranks[0]) == 3  # 3 + 2 + 1 clips dealt to two ranks
    flat = [tuple(c) for b in b0 + b1 for c in b]
    assert len(set(flat)) == len(flat)
    assert ranks[0].batches(3) == b0 and ranks[0].batches(4) != b0
    batched = ClipSampler(KEYS, 2, 2, seed=1)
    for batch in batched.batches(0):
        assert len({len(c) for c in batch}) == 1  # equal clip lengths inside a batch


def test_sampler_rejects_too_little_data() -> None:
    with pytest.raises(TrainingError, match="fewer than one batch per rank"):
        ClipSampler(KEYS[:2], 2, 4, world_size=2)
    with pytest.raises(TrainingError, match="empty"):
        ClipSampler([], 2, 1)


def test_schedule_warms_up_then_decays() -> None:
    cos = LrFactor("cosine", warmup_steps=10, total_steps=110)
    assert cos(0) == pytest.approx(1 / 3) and cos(5) == pytest.approx(2 / 3) and cos(10) == pytest.approx(1.0)
    assert cos(60) == pytest.approx((1 + MIN_LR_RATIO) / 2)
    assert cos(110) == pytest.approx(MIN_LR_RATIO)
    values = [cos(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    step = LrFactor("step", warmup_steps=0, total_steps=100)
    assert [step(s) for s in (0, 66, 67, 91, 92)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    with pytest.raises(TrainingError, match="unknown schedule"):
        LrFactor("linear", 0, 10)


def test_optimizer_groups_scale_backbone_lr_and_skip_decay_on_biases() -> None:
    cfg = load_config("demo", ["train.lr=1e-3", "train.backbone_lr_mult=0.1", "train.weight_decay=0.05",
                               "train.warmup_steps=0", "train.schedule=constant"])
    model = nn.ModuleDict({"backbone": nn.Linear(3, 3), "head": nn.Linear(3, 2)})
    opt = build_optimizer(model, cfg.train)
    sched = build_scheduler(opt, cfg.train, total_steps=10)
    found = {(g["lr"], g["weight_decay"], tuple(p.shape)) for g in opt.param_groups for p in g["params"]}
    assert found == {(1e-4, 0.05, (3, 3)), (1e-4, 0.0, (3,)), (1e-3, 0.05, (2, 3)), (1e-3, 0.0, (2,))}
    model["head"](torch.ones(3)).sum().backward()
    opt.step()
    sched.step()
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3])  # constant
