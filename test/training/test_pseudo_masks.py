"""SEEDS pseudo masks (paper Sec. 3.2.2, Eq. 3): labels, determinism, boundaries, the stored grid, the store."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from protoocc_ros.model.losses import prototype_contrastive_loss, resize_labels
from protoocc_ros.training.errors import TrainingError
from protoocc_ros.training.pseudo_masks import (
    PseudoMaskSpec, PseudoMaskStore, compute_pseudo_masks, masks_on_grid, pseudo_mask_grid,
)

from training_helpers import tiny_config


def _two_colour_image(h: int = 48, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 30)
    img[:, w // 2:] = (20, 40, 210)
    return np.clip(img.astype(int) + rng.integers(-5, 6, img.shape), 0, 255).astype(np.uint8)


def _spec(num: int = 10, image_size: tuple[int, int] = (32, 48), grid: tuple[int, int] = (4, 6),
          cameras: tuple[str, ...] = ("A", "B", "C")) -> PseudoMaskSpec:
    return PseudoMaskSpec(num, 0, image_size, grid, cameras)


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
    with pytest.raises(TrainingError, match="uint8"):
        compute_pseudo_masks(np.zeros((8, 8, 3), np.float32), 4)
    with pytest.raises(TrainingError, match="num_superpixels"):
        compute_pseudo_masks(np.zeros((8, 8, 3), np.uint8), 0)
    with pytest.raises(TrainingError, match=r"expected 3 images of \(32, 48\)"):
        _spec().compute(np.zeros((3, 16, 48, 3), np.uint8))


def test_grid_is_the_pixel_feature_grid_the_loss_sees() -> None:
    from protoocc_ros.model import build_model

    from training_helpers import SequenceDataset

    cfg = tiny_config()
    model = build_model(cfg).train()
    sample = SequenceDataset(cfg)[0]
    out = model(sample["images"][None], sample["lidar2img"][None], sample["ego2global"][None],
                torch.tensor([sample["timestamp"]], dtype=torch.float64))
    assert tuple(out.aux["pixel_features"].shape[-2:]) == pseudo_mask_grid(cfg)
    from protoocc_ros.config import load_config

    assert pseudo_mask_grid(load_config("occ3d_small")) == (54, 100)  # 432x800 at stride 8
    assert pseudo_mask_grid(load_config("demo")) == (18, 32)  # 144x256 at stride 8


def test_stored_masks_give_the_loss_exactly_what_full_resolution_masks_gave() -> None:
    """Today's path (SEEDS at the input size, resized inside the loss) and the stored grid agree bit for bit."""
    rng = np.random.default_rng(4)
    raw = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    spec = _spec(grid=(5, 7))  # not a divisor of the image: the nearest rule matters
    full = torch.from_numpy(np.stack([compute_pseudo_masks(im, 10, 0) for im in raw]).astype(np.int64))
    stored = spec.compute(raw)
    assert stored.dtype == np.uint16 and stored.shape == (3, 5, 7)
    assert np.array_equal(stored, resize_labels(full, (5, 7)).numpy())
    assert np.array_equal(masks_on_grid(full.numpy(), (5, 7)), stored)
    x = torch.randn(3, 8, 5, 7, generator=torch.Generator().manual_seed(0))
    cov = (torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(1)) > 0.2).float()
    old = prototype_contrastive_loss(x, cov, full, tau=0.1)
    new = prototype_contrastive_loss(x, cov, torch.from_numpy(stored.astype(np.int64)), tau=0.1)
    assert torch.equal(old, new)


def test_store_writes_each_sample_once_and_a_new_process_reuses_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    spec = _spec()
    store = PseudoMaskStore(tmp_path, spec)
    calls = []

    def load_raw() -> np.ndarray:
        calls.append(1)
        return raw

    first = store.get("abc123", load_raw)
    assert store.computed == 1 and len(calls) == 1 and store.path("abc123").is_file()
    fresh = PseudoMaskStore(tmp_path, spec)  # e.g. the next epoch's worker, or another machine
    again = fresh.get("abc123", load_raw)
    assert np.array_equal(again, first) and fresh.computed == 0 and fresh.loaded == 1 and len(calls) == 1
    assert json.loads((tmp_path / spec.digest / "spec.json").read_text())["num_superpixels"] == 10
    assert not list(tmp_path.rglob("*.tmp"))  # written under a temporary name, then renamed
    # KITTI-style keys keep their folders; odd characters are hashed, never used as paths
    assert store.path("08/000123").relative_to(store.folder) == Path("08/000123.npz")
    assert ".." not in store.path("../../etc/passwd").relative_to(store.folder).parts
    # a damaged file is recomputed and replaced, not trusted
    store.path("abc123").write_bytes(b"not a zip")
    assert np.array_equal(PseudoMaskStore(tmp_path, spec).get("abc123", load_raw), first) and len(calls) == 2


def test_store_folder_is_per_spec_and_a_foreign_spec_file_is_refused(tmp_path: Path) -> None:
    a, b = _spec(num=10), _spec(num=12)
    assert a.digest != b.digest
    PseudoMaskStore(tmp_path, a).save("t", np.zeros((3, 4, 6), np.uint16))
    (tmp_path / a.digest / "spec.json").write_text(json.dumps(b.to_json()))
    with pytest.raises(TrainingError, match="spec.json: describes other masks"):
        PseudoMaskStore(tmp_path, a).save("u", np.zeros((3, 4, 6), np.uint16))
    with pytest.raises(TrainingError, match=r"expected uint16 \(3, 4, 6\)"):
        PseudoMaskStore(tmp_path / "x", a).save("u", np.zeros((3, 4, 5), np.uint16))
