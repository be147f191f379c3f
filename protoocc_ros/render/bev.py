"""Bird's-eye view of a semantic voxel grid: the top-most occupied class per column, shaded by height.

Image rows run along -x (forward is up) and columns along -y (the ego's left is on the left), one pixel per
voxel column. Free columns are white, columns with no observed voxel (mask) light grey.
"""
from __future__ import annotations

import numpy as np

from protoocc_ros.classes import IGNORE_LABEL, OCC3D_COLORS, OCC3D_FREE_LABEL
from protoocc_ros.render.errors import RenderError

FREE_COLOR = np.array([255, 255, 255], dtype=np.uint8)
UNKNOWN_COLOR = np.array([200, 200, 200], dtype=np.uint8)


def as_grid(semantics: np.ndarray, name: str = "semantics") -> np.ndarray:
    """Integer (X, Y, Z) labels from a numpy array or tensor."""
    if hasattr(semantics, "detach"):
        semantics = semantics.detach().cpu().numpy()
    arr = np.asarray(semantics)
    if arr.ndim != 3:
        raise RenderError(f"{name} has shape {arr.shape}; expected a 3-D (X, Y, Z) grid")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise RenderError(f"{name} has dtype {arr.dtype}; expected integer labels")
    return arr.astype(np.int64)


def bev_image(semantics: np.ndarray, colors: np.ndarray = OCC3D_COLORS, free_label: int = OCC3D_FREE_LABEL,
              mask: np.ndarray | None = None, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """uint8 (X, Y, 3) RGB top view. Voxels outside ``mask`` and ``ignore_label`` voxels count as unknown."""
    sem = as_grid(semantics)
    _X, _Y, Z = sem.shape
    known = sem != ignore_label
    if mask is not None:
        m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask).astype(bool)
        if m.shape != sem.shape:
            raise RenderError(f"mask has shape {m.shape}; expected the grid shape {sem.shape}")
        known &= m
    bad = known & ((sem < 0) | (sem >= len(colors)))
    if bad.any():
        raise RenderError(f"semantics holds label {int(sem[bad][0])}; expected [0, {len(colors)}) or "
                          f"{ignore_label}")
    occupied = known & (sem != free_label)
    has = occupied.any(axis=2)
    top = Z - 1 - np.argmax(occupied[:, :, ::-1], axis=2)           # highest occupied index per column
    cls = np.take_along_axis(sem, top[..., None], 2)[..., 0]
    shade = 0.7 + 0.3 * (top + 1) / Z
    img = np.where(has[..., None], np.asarray(colors, dtype=np.float64)[np.clip(cls, 0, len(colors) - 1)]
                   * shade[..., None], 0.0)
    img[~has & known.any(axis=2)] = FREE_COLOR
    img[~known.any(axis=2)] = UNKNOWN_COLOR
    return np.clip(img, 0, 255).astype(np.uint8)[::-1, ::-1]
