"""3D view of occupied voxels (the scene RViz/Foxglove show from the markers), rendered to PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from protoocc_ros.render.errors import RenderError


def render_voxels_3d(path: str | Path, centers: np.ndarray, colors: np.ndarray, title: str = "",
                     elevation_deg: float = 35.0, azimuth_deg: float = -150.0, max_points: int = 60000,
                     seed: int = 0) -> Path:
    """Scatter voxel centres (K, 3) metres in the ego frame with RGB colours (K, 3) uint8 as square markers.

    The camera looks at the ego origin from behind and above (like RViz's orbit view). At most
    ``max_points`` voxels are drawn (a fixed random subset) to keep the figure readable.
    """
    centers = np.asarray(centers, dtype=np.float32)
    colors = np.asarray(colors)
    if centers.ndim != 2 or centers.shape[1] != 3 or colors.shape != centers.shape:
        raise RenderError(f"voxel view {path}: centers {centers.shape} and colors {colors.shape} must both be (K, 3)")
    if len(centers) > max_points:
        keep = np.random.default_rng(seed).choice(len(centers), max_points, replace=False)
        centers, colors = centers[keep], colors[keep]
    order = np.argsort(centers[:, 2])  # draw low voxels first so the tops stay visible
    centers, colors = centers[order], colors[order]
    fig = plt.figure(figsize=(10, 7), dpi=110)
    ax: Any = fig.add_subplot(projection="3d")  # mpl_toolkits Axes3D (untyped)
    ax.scatter(centers[:, 0], centers[:, 1], centers[:, 2], c=colors / 255.0, marker="s", s=3, depthshade=False,
               linewidths=0)
    ax.scatter([0], [0], [0], c="black", marker="^", s=60)
    ax.view_init(elev=elevation_deg, azim=azimuth_deg)
    if len(centers):
        lo, hi = centers.min(0), centers.max(0)
        ax.set_box_aspect((hi[0] - lo[0] + 1e-3, hi[1] - lo[1] + 1e-3, 4 * (hi[2] - lo[2] + 1e-3)))
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
