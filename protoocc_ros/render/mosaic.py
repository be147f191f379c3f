"""Camera mosaic (nuScenes layout: front row FRONT_LEFT, FRONT, FRONT_RIGHT; back row BACK_LEFT, BACK, BACK_RIGHT)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from protoocc_ros.render.errors import RenderError

NUSCENES_LAYOUT = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")


def camera_mosaic(images: Sequence[np.ndarray], names: Sequence[str] | None = None, columns: int = 3,
                  label: bool = True) -> np.ndarray:
    """uint8 RGB mosaic of uint8 (H, W, 3) RGB images (resized to the first image's size). With the six
    nuScenes camera ``names`` the tiles follow the nuScenes layout, otherwise the given order."""
    if len(images) == 0:
        raise RenderError("camera_mosaic: got no images")
    for i, im in enumerate(images):
        if not (isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3):
            raise RenderError(f"camera_mosaic: image {i} has dtype {getattr(im, 'dtype', type(im))} and shape "
                              f"{getattr(im, 'shape', None)}; expected uint8 (H, W, 3)")
    names = list(names) if names is not None else [""] * len(images)
    if len(names) != len(images):
        raise RenderError(f"camera_mosaic: {len(names)} names for {len(images)} images")
    order = list(range(len(images)))
    if set(names) == set(NUSCENES_LAYOUT) and len(names) == 6:
        order = [names.index(n) for n in NUSCENES_LAYOUT]
    H, W = images[0].shape[:2]
    rows = -(-len(images) // columns)
    out = np.zeros((rows * H, columns * W, 3), dtype=np.uint8)
    for slot, i in enumerate(order):
        tile = images[i] if images[i].shape[:2] == (H, W) else cv2.resize(images[i], (W, H))
        tile = tile.copy()
        if label and names[i]:
            scale = max(H / 400.0, 0.35)
            cv2.putText(tile, names[i], (4, int(16 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                        1, cv2.LINE_AA)
        r, c = divmod(slot, columns)
        out[r * H:(r + 1) * H, c * W:(c + 1) * W] = tile
    return out


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise RenderError(f"{path}: could not write the PNG")
    return path
