"""Shared fixtures for the model tests: small configs (helpers: model_helpers.py)."""
from __future__ import annotations

import pytest

from protoocc_ros.config import PRINTED_READING, ProtoOccConfig, load_config, reading_overrides, with_overrides


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


@pytest.fixture(scope="session", params=["printed", "default"])
def tiny_reading_cfg(request, tiny_cfg: ProtoOccConfig) -> ProtoOccConfig:
    """``tiny_cfg`` with each reading of Eqs. 1a/1b/2: the paper's equations as printed (the demo config's, that of
    the bundled checkpoint) and the schema's defaults (docs/architecture.md "Readings")."""
    if request.param == "printed":
        return tiny_cfg
    return with_overrides(tiny_cfg, reading_overrides({k: not v for k, v in PRINTED_READING.items()}))
