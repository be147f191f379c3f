"""Pseudo ground-truth masks for prototype optimization (paper Sec. 3.2.2, Eq. 3): SEEDS superpixels [41].

``compute_pseudo_masks`` runs OpenCV-contrib's SEEDS (``cv2.ximgproc.createSuperpixelSEEDS``) on one RGB
image at the network input size and returns consecutive int32 labels 0..S-1 (S <= M prototypes).
L_cls (Eq. 3) reads the masks on the pixel-feature grid X of Eq. 2 (the FPN level that is clustered):
``prototype_contrastive_loss`` nearest-resizes them with ``model.losses.resize_labels``. The masks are
therefore stored already resized with that same function (:func:`masks_on_grid`), so the loss receives
exactly the labels it would compute itself, and resizing again inside the loss is the identity.

Storage (:class:`PseudoMaskStore`): one compressed ``.npz`` per sample (``masks`` uint16 (N, h, w), N
cameras in config order) under ``<root>/<spec digest>/``, next to ``spec.json`` naming everything the
masks depend on (S, seed, SEEDS parameters, network input size, grid, cameras). Files are written to a
temporary name and renamed, so a killed run leaves no partial file, several processes or machines can fill
the same folder (disjoint shards: ``protoocc-precompute-masks --shard K/N``), and a rerun skips what
exists. Nothing is kept in memory: the store is safe inside DataLoader workers and bounded by the disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from protoocc_ros.config import ProtoOccConfig, feature_size, level_strides
from protoocc_ros.model.losses import resize_labels
from protoocc_ros.training.errors import TrainingError

SEEDS_MAX_LEVELS = 5  # more block levels follow edges better but allow fewer superpixels
SEEDS_MIN_FRACTION = 0.75  # use the most levels that still give >= 75 % of the requested count
SEEDS_PRIOR = 2
SEEDS_BINS = 5
SEEDS_ITERATIONS = 10
STORE_FORMAT = "protoocc-pseudo-masks-v1"
SPEC_FILE = "spec.json"
_SAFE_PART = re.compile(r"^[A-Za-z0-9._-]+$")


def compute_pseudo_masks(image_rgb_uint8: np.ndarray, num_superpixels: int, seed: int = 0) -> np.ndarray:
    """SEEDS superpixels of an (H, W, 3) uint8 RGB image -> (H, W) int32 labels 0..S-1 (S <= num_superpixels)."""
    img = np.asarray(image_rgb_uint8)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise TrainingError(f"pseudo masks: expected an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
    if num_superpixels < 1:
        raise TrainingError(f"pseudo masks: num_superpixels must be >= 1, got {num_superpixels}")
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


def pseudo_mask_grid(cfg: ProtoOccConfig) -> tuple[int, int]:
    """(h, w) of the pixel-feature grid X (Eq. 2): the clustered FPN level at the network input size."""
    stride = level_strides(cfg.model)[cfg.model.prototypes.feature_level]
    return feature_size(cfg.dataset.image_size, stride)


def masks_on_grid(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(..., H, W) integer labels -> (..., h, w) with the loss's own nearest rule (``losses.resize_labels``)."""
    arr = np.asarray(masks)
    flat = torch.from_numpy(arr.reshape(-1, *arr.shape[-2:]).astype(np.int64))
    return resize_labels(flat, (int(grid[0]), int(grid[1]))).numpy().reshape(*arr.shape[:-2], *grid)


@dataclass(frozen=True)
class PseudoMaskSpec:
    """Everything a stored mask depends on; its digest names the store folder."""

    num_superpixels: int
    seed: int
    image_size: tuple[int, int]  # (H, W) SEEDS runs at: the network input
    grid: tuple[int, int]        # (h, w) stored: the pixel-feature grid of L_cls
    cameras: tuple[str, ...]
    seeds: tuple[int, int, int, int, float] = (SEEDS_MAX_LEVELS, SEEDS_PRIOR, SEEDS_BINS, SEEDS_ITERATIONS,
                                               SEEDS_MIN_FRACTION)

    @classmethod
    def from_config(cls, cfg: ProtoOccConfig) -> PseudoMaskSpec:
        """S = M prototypes, seed = train.seed (as the masks were always computed), grid of Eq. 2."""
        return cls(int(cfg.model.prototypes.num_prototypes), int(cfg.train.seed), cfg.image_size,
                   pseudo_mask_grid(cfg), tuple(cfg.dataset.cameras))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": STORE_FORMAT, **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}

    @property
    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def compute(self, raw_images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 images at ``image_size`` -> (N, h, w) uint16 masks on ``grid``."""
        raw = np.asarray(raw_images)
        if raw.ndim != 4 or tuple(raw.shape[1:3]) != tuple(self.image_size) or raw.shape[0] != len(self.cameras):
            raise TrainingError(f"pseudo masks: expected {len(self.cameras)} images of {tuple(self.image_size)} "
                                f"(cameras {list(self.cameras)}), got an array of shape {raw.shape}")
        full = np.stack([compute_pseudo_masks(img, self.num_superpixels, self.seed) for img in raw])  # (N, H, W)
        if int(full.max(initial=0)) > np.iinfo(np.uint16).max:
            raise TrainingError(f"pseudo masks: {int(full.max()) + 1} superpixels do not fit uint16")
        return masks_on_grid(full, self.grid).astype(np.uint16)


def _relative_path(key: str) -> Path:
    """Sample key -> relative file path; '/'-separated safe parts are kept, anything else is hashed."""
    parts = key.split("/")
    if not key or not all(_SAFE_PART.match(p) and p not in (".", "..") for p in parts):
        digest = hashlib.sha1(key.encode()).hexdigest()
        parts = [digest[:2], digest]
    elif len(parts) == 1:  # flat tokens (nuScenes): 256 buckets keep the folders small
        parts = [hashlib.sha1(key.encode()).hexdigest()[:2], parts[0]]
    return Path(*parts[:-1], parts[-1] + ".npz")


class PseudoMaskStore:
    """Per-sample masks on disk (see the module docstring); ``get`` computes and writes what is missing."""

    def __init__(self, root: str | Path, spec: PseudoMaskSpec) -> None:
        self.root = Path(root).expanduser()
        self.spec = spec
        self.folder = self.root / spec.digest
        self.computed = 0  # masks computed by this object (per process)
        self.loaded = 0
        self._spec_checked = False

    def ensure_folder(self) -> None:
        """Create the folder and write ``spec.json``, or check that the one there describes these masks."""
        if self._spec_checked:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        spec_path = self.folder / SPEC_FILE
        expected = self.spec.to_json()
        if spec_path.is_file():
            try:
                stored = json.loads(spec_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TrainingError(f"{spec_path}: not valid JSON ({exc})") from exc
            if stored != expected:
                raise TrainingError(f"{spec_path}: describes other masks ({stored}); expected {expected}")
        else:
            _atomic_write(spec_path, (json.dumps(expected, indent=2) + "\n").encode())
        self._spec_checked = True

    def path(self, key: str) -> Path:
        return self.folder / _relative_path(key)

    def load(self, key: str) -> np.ndarray | None:
        """The stored (N, h, w) uint16 masks of ``key``; None when missing, unreadable or of another shape."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as data:
                masks = data["masks"]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError):
            return None
        if masks.dtype != np.uint16 or masks.shape != (len(self.spec.cameras), *self.spec.grid):
            return None
        return masks

    def save(self, key: str, masks: np.ndarray) -> Path:
        self.ensure_folder()
        expected = (len(self.spec.cameras), *self.spec.grid)
        if masks.dtype != np.uint16 or masks.shape != expected:
            raise TrainingError(f"pseudo masks for {key!r}: expected uint16 {expected}, got {masks.dtype} "
                                f"{masks.shape}")
        buf = io.BytesIO()
        np.savez_compressed(buf, masks=masks)
        p = self.path(key)
        _atomic_write(p, buf.getvalue())
        return p

    def get(self, key: str, raw_images: Callable[[], np.ndarray] | np.ndarray) -> np.ndarray:
        """Stored masks of ``key``, else computed from ``raw_images`` (array or loader), written and returned."""
        masks = self.load(key)
        if masks is not None:
            self.loaded += 1
            return masks
        raw = raw_images() if callable(raw_images) else raw_images
        masks = self.spec.compute(raw)
        self.save(key, masks)
        self.computed += 1
        return masks


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a unique temporary name in the same folder, then rename (readers never see a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sample_key(sample: dict[str, Any]) -> str:
    """The store key of a sample dict: its ``sample_token`` (unique per keyframe / KITTI frame)."""
    token = sample.get("sample_token")
    if not isinstance(token, str) or not token:
        raise TrainingError(f"sample of scene {sample.get('scene')!r} frame {sample.get('frame_index')!r} has no "
                            "'sample_token' string: pseudo masks are stored per token")
    return token
