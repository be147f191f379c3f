"""SEEDS pseudo masks (paper Sec. 3.2.2): labels, determinism, boundaries, caching."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protoocc_ros.model.errors import ModelError
from protoocc_ros.model.pseudo_masks import PseudoMaskCache, compute_pseudo_masks, compute_pseudo_masks_batched


def _two_colour_image(h: int = 48, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 30)
    img[:, w // 2:] = (20, 40, 210)
    return np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)


def test_masks_are_consecutive_int32_and_about_the_requested_count() -> None:
    img = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    masks = compute_pseudo_masks(img, 24, seed=0)
    assert masks.dtype == np.int32 and masks.shape == (48, 80)
    labels = np.unique(masks)
    assert labels.tolist() == list(range(len(labels))) and 4 <= len(labels) <= 24


def test_superpixels_do_not_cross_a_strong_colour_edge() -> None:
    img = _two_colour_image()
    masks = compute_pseudo_masks(img, 16, seed=0)
    left, right = set(np.unique(masks[:, :38])), set(np.unique(masks[:, 42:]))
    assert not left & right


def test_deterministic_for_a_seed() -> None:
    img = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert np.array_equal(compute_pseudo_masks(img, 12, 3), compute_pseudo_masks(img, 12, 3))


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ModelError, match="uint8"):
        compute_pseudo_masks(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(ModelError, match="num_superpixels"):
        compute_pseudo_masks(np.zeros((8, 8, 3), np.uint8), 0)


def test_batched_uses_the_cache_in_memory_and_on_disk(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 3, 32, 48, 3), dtype=np.uint8)  # (B, N, H, W, 3)
    cache = PseudoMaskCache(10, seed=0, cache_dir=tmp_path)
    out = compute_pseudo_masks_batched(images, 10, 0, cache)
    assert out.shape == (2, 3, 32, 48) and out.dtype == np.int32
    assert np.array_equal(out[1, 2], compute_pseudo_masks(images[1, 2], 10, 0))
    assert len(cache) == 6 and len(list(tmp_path.glob("*.npy"))) == 6
    fresh = PseudoMaskCache(10, seed=0, cache_dir=tmp_path)  # a new process reads the files
    (tmp_path / "marker").write_text("")
    again = compute_pseudo_masks_batched(images, 10, 0, fresh)
    assert np.array_equal(again, out) and len(list(tmp_path.glob("*.npy"))) == 6
    keys = [f"tok{i}" for i in range(6)]
    by_key = compute_pseudo_masks_batched(images, 10, 0, cache, keys=keys)
    assert np.array_equal(by_key, out)
    # with keys, a cached entry is returned even for other bytes (masks are per sample and camera)
    assert np.array_equal(cache.get(np.zeros((32, 48, 3), np.uint8), key="tok0"), out[0, 0])
