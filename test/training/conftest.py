"""Fixtures of the training tests (see training_helpers.py)."""
from __future__ import annotations

import pytest

from protoocc_ros.config import ProtoOccConfig

from training_helpers import SequenceDataset, tiny_config


@pytest.fixture()
def tiny_cfg() -> ProtoOccConfig:
    return tiny_config()


@pytest.fixture()
def sequence_dataset(tiny_cfg: ProtoOccConfig) -> SequenceDataset:
    return SequenceDataset(tiny_cfg)
