"""The prototypes of a frame (paper Fig. 2/4 style): each camera image coloured by the prototype its pixels are
clustered into, and below it the bird's-eye view of the voxel queries that camera's prototypes dispatch to, in
the same colours (the same colour in an image and in its BEV panel is one prototype)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from protoocc_ros.render.errors import RenderError
from protoocc_ros.render.figures import _save

BLEND = 0.55  # weight of the prototype colour over the camera image


def prototype_palette(num: int, seed: int = 0) -> np.ndarray:
    """(num, 3) uint8 colours, well spread in hue and shuffled so neighbouring prototypes differ."""
    hue = (np.arange(num) * 179.0 / max(num, 1)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    hsv = np.stack([rng.permutation(hue), rng.integers(150, 256, num), rng.integers(170, 256, num)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]


def overlay_prototypes(image: np.ndarray, pixel_prototype: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image blended with the colours of its (h_f, w_f) prototype map (nearest upsampling)."""
    h, w = image.shape[:2]
    up = cv2.resize(pixel_prototype.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    colour = palette[np.clip(up, 0, len(palette) - 1)]
    return (BLEND * colour + (1.0 - BLEND) * image).astype(np.uint8)


def bev_prototypes(query_prototype: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(h, w, z) prototype per voxel query (-1: not hit by this camera) -> (w, h, 3) uint8 BEV, x up, y left.

    A pillar shows the prototype of most of its hit queries; pillars no query of the camera hits are dark."""
    h, w, z = query_prototype.shape
    flat = query_prototype.reshape(h * w, z)
    out = np.full((h * w, 3), 30, dtype=np.uint8)
    for cell in np.nonzero((flat >= 0).any(1))[0]:
        values, counts = np.unique(flat[cell][flat[cell] >= 0], return_counts=True)
        out[cell] = palette[values[counts.argmax()] % len(palette)]
    bev = out.reshape(h, w, 3)  # [ix, iy]: x forward, y left
    return bev[::-1, ::-1]  # rows: x from far to near (forward up), columns: y from left to right


def render_prototypes(path: str | Path, images: Sequence[np.ndarray], pixel_prototype: np.ndarray,
                      query_prototype: np.ndarray, names: Sequence[str], num_prototypes: int,
                      title: str | None = None) -> Path:
    """Two rows: camera images coloured by their pixel prototypes (N, h_f, w_f); BEV of the voxel queries each
    camera's prototypes are dispatched to (N, h, w, z, -1 where not hit). Returns the PNG path."""
    n = len(images)
    if pixel_prototype.shape[0] != n or query_prototype.shape[0] != n or len(names) != n:
        raise RenderError(f"render_prototypes: {n} images, {pixel_prototype.shape[0]} prototype maps, "
                          f"{query_prototype.shape[0]} query maps and {len(names)} names must agree")
    palette = prototype_palette(num_prototypes)
    fig = Figure(figsize=(3.2 * n, 6.4))
    for i in range(n):
        ax = fig.add_subplot(2, n, i + 1)
        ax.imshow(overlay_prototypes(images[i], pixel_prototype[i], palette))
        ax.set_title(names[i], fontsize=9)
        ax.set_axis_off()
        bev = fig.add_subplot(2, n, n + i + 1)
        bev.imshow(bev_prototypes(query_prototype[i], palette), interpolation="nearest")
        bev.set_title("queries by prototype (BEV, forward up)", fontsize=7)
        bev.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
