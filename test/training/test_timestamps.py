"""Timestamps stay float64 from the sample to the temporal memory (issue 17.5): real magnitudes, 0.5 s apart."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from protoocc_ros.training.batching import collate_inputs
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.evaluation.evaluate import evaluate_model
from protoocc_ros.training.trainer import Trainer

from training_helpers import NUSCENES_STAMP, SequenceDataset, frame_stamp, ros_now_stamp, tiny_config


@pytest.mark.parametrize("base", [NUSCENES_STAMP, ros_now_stamp()], ids=["nuscenes", "ros_now"])
def test_collated_stamps_keep_half_second_steps_at_real_magnitudes(base: float) -> None:
    dataset = SequenceDataset(tiny_config(), num_scenes=1, frames_per_scene=4, stamp_base=base)
    stamps = [frame_stamp(0, f, base) for f in range(4)]  # straddle a float32 rounding boundary (+64 s)
    assert len({float(np.float32(s)) for s in stamps}) == 2  # float32 would merge and split these frames
    for as_type in (float, np.float64, lambda s: torch.tensor(s, dtype=torch.float64)):
        samples = [dict(dataset[i], timestamp=as_type(s)) for i, s in enumerate(stamps)]
        t = collate_inputs(samples, torch.device("cpu"))["timestamp"]
        assert t.dtype == torch.float64
        assert torch.diff(t).tolist() == [0.5, 0.5, 0.5] and t[0].item() == stamps[0]


def test_float32_stamps_are_refused_not_rounded() -> None:
    sample = SequenceDataset(tiny_config(), num_scenes=1)[0]
    for bad in (torch.tensor(sample["timestamp"], dtype=torch.float32), np.float32(sample["timestamp"])):
        with pytest.raises(TrainingError, match="timestamp.*float32.*float64"):
            collate_inputs([dict(sample, timestamp=bad)], torch.device("cpu"))


@pytest.mark.parametrize("base", [NUSCENES_STAMP, ros_now_stamp()], ids=["nuscenes", "ros_now"])
def test_training_and_evaluation_carry_the_memory_across_real_magnitude_stamps(tmp_path: Path, base: float) -> None:
    cfg = tiny_config()
    dataset = SequenceDataset(cfg, num_scenes=2, frames_per_scene=4, stamp_base=base)
    trainer = Trainer(cfg, dataset=dataset, output_dir=tmp_path, progress=False, tensorboard=False)
    trainer.accumulate_gradients([[trainer.samples.sample(i)] for i in range(4)])
    assert trainer.reset_reasons == [["first_frame"], [None], [None], [None]]  # no 'gap' at the +64 s boundary
    _, info = evaluate_model(trainer.module, cfg, dataset, progress=False)
    assert info["memory_resets"] == {"first_frame": 2}  # one per scene, nothing else
