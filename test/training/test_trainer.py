"""Training loop: learning on a fixed batch, memory carried inside clips, checkpoints + tensorboard, exact resume."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from protoocc_ros.checkpoints.format import read_metadata
from protoocc_ros.checkpoints.errors import CheckpointError
from protoocc_ros.training.trainer import Trainer, latest_checkpoint

from training_helpers import SequenceDataset, tiny_config


def _trainer(cfg, dataset, out: Path, **kw) -> Trainer:
    return Trainer(cfg, dataset=dataset, output_dir=out, progress=False, command="pytest", **kw)


def test_few_steps_reduce_the_loss_on_a_fixed_batch(tmp_path: Path, tiny_cfg, sequence_dataset) -> None:
    trainer = _trainer(tiny_cfg, sequence_dataset, tmp_path, tensorboard=False)
    frames = [[trainer.samples.sample(0)], [trainer.samples.sample(1)]]
    losses = [trainer.train_step(frames)["total"] for _ in range(12)]
    assert losses[-1] < 0.95 * losses[0], losses
    assert min(losses[-3:]) < min(losses[:3])
    assert trainer.step == 12


def test_memory_is_carried_inside_a_clip_and_reset_at_its_start(tmp_path: Path, tiny_cfg, sequence_dataset) -> None:
    trainer = _trainer(tiny_cfg, sequence_dataset, tmp_path, tensorboard=False)
    clip = [[trainer.samples.sample(i)] for i in range(4)]  # four consecutive frames of scene 0, 0.5 s apart
    trainer.accumulate_gradients(clip)
    assert trainer.reset_reasons == [["first_frame"], [None], [None], [None]]
    trainer.accumulate_gradients(clip[2:])
    assert trainer.reset_reasons == [["first_frame"], [None]]
    params = [p for p in trainer.module.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def test_fit_writes_checkpoints_and_tensorboard_scalars(tmp_path: Path, sequence_dataset) -> None:
    cfg = tiny_config("train.max_steps=5", "train.checkpoint_every=2")
    result = _trainer(cfg, sequence_dataset, tmp_path).fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*[0-9].safetensors"))
    assert names == ["step_0000002.safetensors", "step_0000004.safetensors", "step_0000005.safetensors"]
    meta = read_metadata(tmp_path / "checkpoints" / names[-1])
    assert (meta["step"], meta["epoch"], meta["command"]) == (5, 1, "pytest")  # 4 clips per epoch
    assert meta["extra"]["batch_in_epoch"] == 1 and meta["training_state"] == "step_0000005.state.safetensors"
    assert result["step"] == 5 and latest_checkpoint(tmp_path).name == names[-1]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/total", "train/ce", "train/lovasz", "train/cls", "train/lr", "train/grad_norm"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/total")] == [1, 2, 3, 4, 5]


def test_resume_continues_with_identical_state(tmp_path: Path, sequence_dataset) -> None:
    cfg = tiny_config("train.max_steps=6", "train.checkpoint_every=3", "train.warmup_steps=2")
    full = _trainer(cfg, sequence_dataset, tmp_path / "full", tensorboard=False)
    full.fit()
    resumed = _trainer(cfg, sequence_dataset, tmp_path / "resumed", tensorboard=False)
    resumed.resume(tmp_path / "full" / "checkpoints" / "step_0000003.safetensors")
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (3, 0, 3)
    assert resumed.scheduler.last_epoch == 3
    resumed.fit()
    assert [h["total"] for h in resumed.history] == [h["total"] for h in full.history[3:]]
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history[3:]]
    for (name, a), b in zip(full.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_refuses_a_different_architecture(tmp_path: Path, sequence_dataset) -> None:
    cfg = tiny_config("train.max_steps=1")
    _trainer(cfg, sequence_dataset, tmp_path, tensorboard=False).fit()
    other = tiny_config("model.decoder.channels=4")
    with pytest.raises(CheckpointError, match=r"model\.decoder\.channels: checkpoint 8, given 4"):
        _trainer(other, SequenceDataset(other), tmp_path / "b", tensorboard=False).resume(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision runs on CUDA only")
def test_mixed_precision_step_on_cuda(tmp_path: Path, sequence_dataset) -> None:
    cfg = tiny_config("train.amp=true")
    trainer = _trainer(cfg, sequence_dataset, tmp_path, device="cuda", tensorboard=False)
    assert trainer.use_amp and trainer.scaler.is_enabled()
    frames = [[trainer.samples.sample(0)], [trainer.samples.sample(1)]]
    losses = [trainer.train_step(frames)["total"] for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


class _FrontCameraOnly:
    """The sequence dataset seen by a one-camera rig: camera 0 of every sample (images, lidar2img, raw)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def frame_keys(self):
        return self.dataset.frame_keys()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        s = dict(self.dataset[index])
        for key in ("images", "lidar2img", "raw_images"):
            s[key] = s[key][:1]
        return s


def test_load_from_fine_tunes_the_weights_on_another_rig_with_a_fresh_optimizer(tmp_path: Path,
                                                                                  sequence_dataset) -> None:
    from safetensors.torch import load_file

    cfg = tiny_config("train.max_steps=3")
    _trainer(cfg, sequence_dataset, tmp_path / "pretrain", tensorboard=False).fit()
    ckpt = latest_checkpoint(tmp_path / "pretrain")
    stored = load_file(str(ckpt))
    fine_cfg = tiny_config("train.max_steps=2", f"train.load_from={tmp_path / 'pretrain'}",
                           "dataset.cameras=[CAM_FRONT]")
    fine = _trainer(fine_cfg, _FrontCameraOnly(sequence_dataset), tmp_path / "fine", tensorboard=False)
    assert fine.init_checkpoint == ckpt
    state = fine.module.state_dict()
    assert set(state) == set(stored) and all(torch.equal(state[k], stored[k]) for k in stored)
    assert fine.step == 0 and not fine.optimizer.state  # the optimizer and schedule start fresh
    result = fine.fit()
    assert result["step"] == 2 and read_metadata(latest_checkpoint(tmp_path / "fine"))["step"] == 2


def test_load_from_refuses_another_architecture_by_key(tmp_path: Path, sequence_dataset) -> None:
    _trainer(tiny_config("train.max_steps=1"), sequence_dataset, tmp_path / "pretrain", tensorboard=False).fit()
    cfg = tiny_config(f"train.load_from={tmp_path / 'pretrain'}", "model.embed_dims=24", "model.neck.channels=24")
    with pytest.raises(CheckpointError, match=r"cannot fine-tune \(train.load_from\).*model.embed_dims"):
        _trainer(cfg, sequence_dataset, tmp_path / "fine", tensorboard=False)
    with pytest.raises(CheckpointError, match="no_such"):
        _trainer(tiny_config(f"train.load_from={tmp_path / 'no_such.safetensors'}"), sequence_dataset,
                 tmp_path / "fine2", tensorboard=False)
