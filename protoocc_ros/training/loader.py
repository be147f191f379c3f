"""Training samples built in DataLoader workers: pseudo masks from disk, image augmentation (paper Sec. 4.1, Eq. 3).

:class:`TrainingSamples` wraps a dataset (docs/architecture.md "Sample dict") for the training loop. For
dataset index i and epoch e it returns the sample dict the loss needs, and does all per-sample CPU work
there, i.e. inside the DataLoader worker processes, never in the training loop:

- ``pseudo_masks`` int32 (N, h, w): the SEEDS masks of the un-augmented network-input images on the
  pixel-feature grid (training/pseudo_masks.py), read from the :class:`PseudoMaskStore` or computed once
  and written there when missing; nothing is cached in memory, so memory does not grow with the dataset;
- image augmentation (data/augmentation.py) when ``train.augmentation`` enables it, drawn from
  ``(train.seed, e, i)`` only (so an interrupted run resumes with the same draws whatever the worker
  count), with lidar2img and the pseudo masks warped consistently;
- only the keys the loss uses travel to the training process (no ``raw_images``, ``intrinsics``,
  ``cam2ego``, ``mask_lidar``: ~6 MB less per 6 x 432x800 sample through shared memory).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from protoocc_ros.config import ProtoOccConfig
from protoocc_ros.data.augmentation import augment_camera_set, draw_camera_augmentation, is_enabled, warp_label_grid
from protoocc_ros.data.preprocessing import normalize_images
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.pseudo_masks import PseudoMaskSpec, PseudoMaskStore, sample_key

PSEUDO_MASK_DIR = "pseudo_masks"  # default store folder inside the run directory
TRAINING_KEYS = ("images", "lidar2img", "ego2global", "timestamp", "scene", "frame_index", "sample_token",
                 "semantics", "mask_camera")
AUGMENTATION_STREAM = 7  # separates the augmentation draws from any other (seed, epoch, index) stream


def needs_pseudo_masks(cfg: ProtoOccConfig) -> bool:
    """L_cls (Eq. 3) is on: prototypes with prototype optimization."""
    p = cfg.model.prototypes
    return bool(p.enabled and p.optimization)


def pseudo_mask_store(cfg: ProtoOccConfig, output_dir: str | Path | None = None) -> PseudoMaskStore | None:
    """The store of ``train.pseudo_mask_dir`` (default ``<output_dir>/pseudo_masks``); None when L_cls is off."""
    if not needs_pseudo_masks(cfg):
        return None
    configured = cfg.train.pseudo_mask_dir
    root = (Path(configured) if configured is not None
            else Path(output_dir if output_dir is not None else cfg.train.output_dir) / PSEUDO_MASK_DIR)
    return PseudoMaskStore(root, PseudoMaskSpec.from_config(cfg))


def single_threaded_cv2_before_fork() -> None:
    """Call in the parent before forking loader workers: they inherit one OpenCV thread each (torch already
    uses one there). Never call ``cv2.setNumThreads`` in a forked child: once the parent has used OpenCV's
    thread pool, the child waits forever on the pool's inherited condition variable (seen in the test run)."""
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


def worker_init(worker_id: int) -> None:
    """DataLoader worker start (forked): nothing to set up; see :func:`single_threaded_cv2_before_fork`."""


class TrainingSamples(Dataset):
    """``dataset`` as training samples (see the module docstring); ``sample(i, epoch)`` is the whole job."""

    def __init__(self, dataset: Any, cfg: ProtoOccConfig, store: PseudoMaskStore | None,
                 keep_raw: bool = False) -> None:
        self.dataset, self.cfg, self.store, self.keep_raw = dataset, cfg, store, keep_raw
        self.augment = is_enabled(cfg.train.augmentation)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.sample(index, self.epoch)

    def _raw(self, sample: dict[str, Any], index: int) -> np.ndarray:
        raw = sample.get("raw_images")
        if raw is None:
            if not hasattr(self.dataset, "raw_images"):
                raise TrainingError(f"{type(self.dataset).__name__}[{index}]: no 'raw_images' for the pseudo masks")
            raw = self.dataset.raw_images(index)
        return np.asarray(raw)

    def sample(self, index: int, epoch: int = 0) -> dict[str, Any]:
        s = self.dataset[index]
        out = {k: s[k] for k in TRAINING_KEYS if k in s}
        masks = None
        if self.store is not None:
            masks = self.store.get(sample_key(s), lambda: self._raw(s, index))  # (N, h, w) uint16
        if self.augment:
            rng = np.random.default_rng([self.cfg.train.seed, epoch, index, AUGMENTATION_STREAM])
            raw = self._raw(s, index)
            hw = (raw.shape[1], raw.shape[2])
            params = [draw_camera_augmentation(self.cfg.train.augmentation, hw, rng)
                      for _ in range(raw.shape[0])]
            raw, l2i = augment_camera_set(raw, np.asarray(s["lidar2img"]), params)
            out["images"] = normalize_images(raw)
            out["lidar2img"] = torch.from_numpy(l2i.astype(np.float32))
            if masks is not None:
                masks = np.stack([warp_label_grid(m, p.affine, hw) for m, p in zip(masks, params)])
            if self.keep_raw:
                out["raw_images"] = raw
        elif self.keep_raw and "raw_images" in s:
            out["raw_images"] = s["raw_images"]
        if masks is not None:
            out["pseudo_masks"] = torch.from_numpy(masks.astype(np.int32))
        return out
