"""Fixtures of the training tests (see training_helpers.py)."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch

from protoocc_ros.config import ProtoOccConfig

from training_helpers import SequenceDataset, tiny_config


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: the tiny models gain nothing from more, and the shared CI cores thrash with them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tiny_cfg() -> ProtoOccConfig:
    return tiny_config()


@pytest.fixture()
def sequence_dataset(tiny_cfg: ProtoOccConfig) -> SequenceDataset:
    return SequenceDataset(tiny_cfg)
