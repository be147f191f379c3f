"""Training loader: pseudo masks read or computed in DataLoader workers, lean samples, deterministic augmentation."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from protoocc_ros.model import build_model
from protoocc_ros.training.batching import collate_frame
from protoocc_ros.training.loader import TRAINING_KEYS, TrainingSamples, pseudo_mask_store
from protoocc_ros.training.pseudo_masks import compute_pseudo_masks
from protoocc_ros.training.trainer import Trainer

from training_helpers import SequenceDataset, tiny_config

AUGMENT = ["train.augmentation.photometric=true", "train.augmentation.flip_prob=0.5",
           "train.augmentation.resize_range=[0.9,1.1]", "train.augmentation.rotate_deg=5.0"]


def test_samples_carry_the_stored_masks_and_only_what_the_loss_reads(tmp_path: Path) -> None:
    cfg = tiny_config()
    dataset = SequenceDataset(cfg)
    store = pseudo_mask_store(cfg, tmp_path)
    sample = TrainingSamples(dataset, cfg, store).sample(3)
    assert set(sample) == set(TRAINING_KEYS) | {"pseudo_masks"}  # no raw_images / intrinsics through IPC
    raw = dataset[3]["raw_images"]
    assert sample["pseudo_masks"].dtype == torch.int32
    assert np.array_equal(sample["pseudo_masks"].numpy(), store.spec.compute(raw).astype(np.int32))
    assert store.computed == 1 and store.path(dataset[3]["sample_token"]).is_file()
    assert torch.equal(sample["images"], dataset[3]["images"])  # augmentation is off by default


def test_loss_equals_the_loss_on_full_resolution_masks_computed_in_the_loop(tmp_path: Path) -> None:
    """What the loss received before (SEEDS at the input size, resized in the loss) is what it receives now."""
    cfg = tiny_config()
    dataset = SequenceDataset(cfg)
    samples = TrainingSamples(dataset, cfg, pseudo_mask_store(cfg, tmp_path))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inputs, targets = collate_frame([samples.sample(0), samples.sample(5)], torch.device("cpu"), True)
    out = model(**inputs)
    raw = np.stack([dataset[0]["raw_images"], dataset[5]["raw_images"]])  # (B, N, H, W, 3)
    full = np.stack([[compute_pseudo_masks(im, cfg.model.prototypes.num_prototypes, cfg.train.seed) for im in cams]
                     for cams in raw])
    before = dict(targets, pseudo_masks=torch.from_numpy(full.astype(np.int64)))
    loss_now, terms_now = model.loss(out, targets)
    loss_before, terms_before = model.loss(out, before)
    assert "cls" in terms_now and torch.equal(loss_now, loss_before) and terms_now == terms_before


def test_masks_are_made_in_the_workers_and_reused_by_the_next_epoch(tmp_path: Path) -> None:
    cfg = tiny_config("train.num_workers=2")
    dataset = SequenceDataset(cfg, num_scenes=2, frames_per_scene=4)
    trainer = Trainer(cfg, dataset=dataset, output_dir=tmp_path, progress=False, tensorboard=False)
    seen = [s["sample_token"] for frames in trainer.epoch_loader(0) for samples in frames for s in samples]
    assert sorted(seen) == sorted(dataset[i]["sample_token"] for i in range(len(dataset)))
    assert trainer.mask_store.computed == 0  # nothing computed in the training process
    files = sorted(trainer.mask_store.folder.rglob("*.npz"))
    assert len(files) == len(dataset)
    stamps = {f: os.stat(f).st_mtime_ns for f in files}
    for frames in trainer.epoch_loader(1):
        assert all("pseudo_masks" in s for samples in frames for s in samples)
    assert {f: os.stat(f).st_mtime_ns for f in files} == stamps  # read, not rewritten
    assert trainer.mask_store.computed == 0


def test_augmentation_draws_depend_on_seed_epoch_and_index_only(tmp_path: Path) -> None:
    cfg = tiny_config(*AUGMENT)
    dataset = SequenceDataset(cfg)
    a = TrainingSamples(dataset, cfg, pseudo_mask_store(cfg, tmp_path))
    b = TrainingSamples(dataset, cfg, pseudo_mask_store(cfg, tmp_path / "other"))
    s1, s2, s3 = a.sample(2, epoch=1), b.sample(2, epoch=1), a.sample(2, epoch=2)
    for key in ("images", "lidar2img", "pseudo_masks"):
        assert torch.equal(s1[key], s2[key]), key
    assert not torch.equal(s1["images"], s3["images"]) and not torch.equal(s1["lidar2img"], s3["lidar2img"])
    plain = dataset[2]
    assert not torch.equal(s1["images"], plain["images"])
    assert torch.equal(s1["semantics"], plain["semantics"])  # image-space augmentation: 3D targets unchanged


def test_workers_start_after_the_training_process_used_opencv_threads(tmp_path: Path) -> None:
    """A forked worker that touched cv2.setNumThreads hung forever once the parent had used OpenCV's pool."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    big = np.zeros((900, 1600, 3), np.uint8)
    for _ in range(3):
        cv2.resize(big, (800, 432), interpolation=cv2.INTER_AREA)  # the pool's threads exist now
    try:
        cfg = tiny_config("train.num_workers=2")
        trainer = Trainer(cfg, dataset=SequenceDataset(cfg), output_dir=tmp_path, progress=False, tensorboard=False)
        loader = trainer.epoch_loader(0)
        loader.timeout = 120  # a hang becomes a RuntimeError instead of a stuck test run
        assert sum(1 for _ in loader) == trainer.steps_per_epoch
    finally:
        cv2.setNumThreads(before)
