"""Pseudo ground-truth masks for prototype optimization (paper Sec. 3.2.2, Eq. 3): SEEDS superpixels [41].

``compute_pseudo_masks`` runs OpenCV-contrib's SEEDS (``cv2.ximgproc.createSuperpixelSEEDS``) on
one RGB image and returns consecutive int32 labels 0..S-1. :class:`PseudoMaskCache` computes
them once per image (S ≈ M prototypes) and keeps them in memory and, optionally, as ``.npy``
files (read with ``allow_pickle=False``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from protoocc_ros.model.errors import ModelError

SEEDS_MAX_LEVELS = 5  # more block levels follow edges better but allow fewer superpixels
SEEDS_MIN_FRACTION = 0.75  # use the most levels that still give >= 75 % of the requested count
SEEDS_PRIOR = 2
SEEDS_BINS = 5
SEEDS_ITERATIONS = 10


def compute_pseudo_masks(image_rgb_uint8: np.ndarray, num_superpixels: int, seed: int = 0) -> np.ndarray:
    """SEEDS superpixels of an (H, W, 3) uint8 RGB image -> (H, W) int32 labels 0..S-1 (S <= num_superpixels)."""
    img = np.asarray(image_rgb_uint8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ModelError(f"pseudo masks: expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    if num_superpixels < 1:
        raise ModelError(f"pseudo masks: num_superpixels must be >= 1, got {num_superpixels}")
    h, w = img.shape[:2]
    cv2.setRNGSeed(int(seed))
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)  # colour space of OpenCV's SEEDS sample
    for levels in range(SEEDS_MAX_LEVELS, 1, -1):
        seeds = cv2.ximgproc.createSuperpixelSEEDS(w, h, 3, int(num_superpixels), levels, SEEDS_PRIOR,
                                                   SEEDS_BINS, False)
        if seeds.getNumberOfSuperpixels() >= SEEDS_MIN_FRACTION * num_superpixels:
            break
    seeds.iterate(hsv, SEEDS_ITERATIONS)
    labels = seeds.getLabels()
    _, consecutive = np.unique(labels, return_inverse=True)
    return consecutive.reshape(h, w).astype(np.int32)


class PseudoMaskCache:
    """Compute-once SEEDS masks, keyed by a caller key (e.g. ``sample_token/CAM_FRONT``) or the image bytes."""

    def __init__(self, num_superpixels: int, seed: int = 0, cache_dir: str | Path | None = None) -> None:
        self.num_superpixels, self.seed = num_superpixels, seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, np.ndarray] = {}

    def _key(self, image: np.ndarray, key: str | None) -> str:
        base = key if key is not None else hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
        digest = hashlib.sha1(f"{base}|{image.shape}|{self.num_superpixels}|{self.seed}".encode()).hexdigest()
        return digest[:24]

    def get(self, image: np.ndarray, key: str | None = None) -> np.ndarray:
        k = self._key(image, key)
        if k in self._memory:
            return self._memory[k]
        path = None if self.cache_dir is None else self.cache_dir / f"{k}.npy"
        if path is not None and path.is_file():
            masks = np.load(path, allow_pickle=False)
        else:
            masks = compute_pseudo_masks(image, self.num_superpixels, self.seed)
            if path is not None:
                np.save(path, masks, allow_pickle=False)
        self._memory[k] = masks
        return masks

    def __len__(self) -> int:
        return len(self._memory)


def compute_pseudo_masks_batched(images: np.ndarray, num_superpixels: int, seed: int = 0,
                                 cache: PseudoMaskCache | None = None, keys: list[str] | None = None,
                                 progress: bool = False) -> np.ndarray:
    """Masks for a stack of images (..., H, W, 3) uint8 -> (..., H, W) int32; uses `cache` when given.

    `keys` (one per image, flattened order) make cache hits independent of the image bytes.
    """
    arr = np.asarray(images)
    if arr.ndim < 3 or arr.shape[-1] != 3:
        raise ModelError(f"pseudo masks: expected (..., H, W, 3) images, got {arr.shape}")
    flat = arr.reshape(-1, *arr.shape[-3:])
    if keys is not None and len(keys) != len(flat):
        raise ModelError(f"pseudo masks: {len(keys)} keys for {len(flat)} images")
    cache = cache if cache is not None else PseudoMaskCache(num_superpixels, seed)
    out = [cache.get(img, None if keys is None else keys[i])
           for i, img in enumerate(tqdm(flat, desc="SEEDS pseudo masks", disable=not progress))]
    return np.stack(out).reshape(*arr.shape[:-1])
