"""The paper's recipe config (occ3d_small_recipe): PanoOcc/BEVFormer optimiser, schedule, augmentation, 12 epochs."""
from __future__ import annotations

from pathlib import Path

import pytest

from protoocc_ros.checkpoints.format import architecture_differences
from protoocc_ros.config import load_config
from protoocc_ros.data.augmentation import is_enabled
from protoocc_ros.model.backbone import build_backbone
from protoocc_ros.model.errors import ModelError
from protoocc_ros.training.schedule import LrFactor


def test_recipe_is_occ3d_small_with_the_panoocc_training_settings() -> None:
    recipe, small = load_config("occ3d_small_recipe"), load_config("occ3d_small")
    assert architecture_differences(small, recipe) == []  # same network: checkpoints are interchangeable
    t = recipe.train
    assert (t.epochs, t.lr, t.weight_decay, t.backbone_lr_mult, t.grad_clip) == (12, 2e-4, 0.01, 0.1, 35.0)
    assert (t.warmup_steps, t.schedule, t.batch_size) == (500, "cosine", 1)
    factor = LrFactor(t.schedule, t.warmup_steps, 14_000)
    assert factor(0) == pytest.approx(1 / 3) and factor(500) == pytest.approx(1.0)  # PanoOcc warmup_ratio 1/3
    assert factor(14_000) == pytest.approx(1e-3)  # min_lr_ratio 1e-3
    a = t.augmentation
    assert is_enabled(a) and a.photometric and a.flip_prob == 0.5 and a.resize_range == [0.94, 1.11]
    assert recipe.dataset.image_size == [432, 800] and recipe.model.prototypes.num_prototypes == 350
    b = recipe.model.backbone
    assert b.type == "resnet50" and b.pretrained.endswith("resnet50-0676ba61.pth")
    assert b.frozen_stages == 1 and b.norm_eval  # allowed: ImageNet weights are given
    assert not is_enabled(load_config("demo").train.augmentation)  # the demo keeps today's behaviour


def test_recipe_without_the_local_imagenet_file_stops_with_its_path(tmp_path: Path) -> None:
    cfg = load_config("occ3d_small_recipe", [f"model.backbone.pretrained={tmp_path / 'resnet50-0676ba61.pth'}"])
    with pytest.raises(ModelError, match="resnet50-0676ba61.pth: backbone checkpoint not found.*never downloaded"):
        build_backbone(cfg.model.backbone)
