"""Shared fixtures: a tiny synthetic sample (nuScenes + Occ3D dataroot, SemanticKITTI variant) per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from protoocc_ros.data.synthetic.sample import SampleConfig, generate_sample, kitti_root

# 1 training + 1 validation scene x 3 keyframes, 90x160 JPEGs; KITTI sequences 00 / 08 x 2 frames, 60x200
TINY_SAMPLE = SampleConfig(seed=7, train_scenes=1, val_scenes=1, frames_per_scene=3, image_size=(90, 160),
                           kitti_frames=2, kitti_image_size=(60, 200), workers=2)


@pytest.fixture(scope="session")
def synthetic_sample_config() -> SampleConfig:
    """The SampleConfig that ``synthetic_dataroot`` was generated with."""
    return TINY_SAMPLE


@pytest.fixture(scope="session")
def synthetic_dataroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nuScenes-style dataroot (version v1.0-mini, splits train = scene-0001, val = scene-0002) of a tiny
    synthetic sample generated once per test session; read-only for tests (copy it before modifying)."""
    return generate_sample(tmp_path_factory.mktemp("synthetic") / "sample", TINY_SAMPLE, progress=False)


@pytest.fixture(scope="session")
def synthetic_kitti_root(synthetic_dataroot: Path) -> Path:
    """SemanticKITTI-format variant of the tiny sample (sequences 00 = train, 08 = val)."""
    return kitti_root(synthetic_dataroot)
