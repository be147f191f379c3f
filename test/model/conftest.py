"""Shared fixtures for the model tests: small configs (helpers: model_helpers.py)."""
from __future__ import annotations

import pytest

from protoocc_ros.config import ProtoOccConfig, load_config


@pytest.fixture(scope="session")
def demo_cfg() -> ProtoOccConfig:
    return load_config("demo")


@pytest.fixture(scope="session")
def tiny_cfg() -> ProtoOccConfig:
    """A very small full ProtoOcc (all parts on) for fast gradient and behaviour checks."""
    return load_config("demo", overrides=[
        "dataset.image_size=[64,112]", "dataset.cameras=[CAM_FRONT,CAM_BACK_LEFT]",
        "model.query_size=[20,20,4]", "dataset.grid_size=[40,40,8]", "dataset.voxel_size=2.0",
        "dataset.point_cloud_range=[-40.0,-40.0,-1.0,40.0,40.0,15.0]",
        "model.prototypes.num_prototypes=28", "model.embed_dims=16", "model.neck.channels=16",
        "model.decoder.channels=8", "model.decoder.augmentations=[dropout+transpose,noise+flip]",
        "model.backbone.width=8", "model.encoder.num_layers=2",
    ])
