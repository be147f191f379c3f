"""Matplotlib (Agg) figures saved as PNG: BEV with legend, prediction vs ground truth, per-class IoU bars, mosaic."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from protoocc_ros.classes import IGNORE_LABEL, class_table
from protoocc_ros.render.bev import as_grid, bev_image
from protoocc_ros.render.errors import RenderError
from protoocc_ros.render.mosaic import camera_mosaic, save_png


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def _legend(fig: Figure, grids: Sequence[np.ndarray], names: Sequence[str], colors: np.ndarray, free: int) -> None:
    present = sorted({int(c) for g in grids for c in np.unique(g) if c != free and 0 <= c < len(names)})
    rgb = [(float(r) / 255.0, float(g) / 255.0, float(b) / 255.0) for r, g, b in colors]
    handles = [Patch(color=rgb[c], label=f"{c} {names[c]}") for c in present]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)


def _panel(fig: Figure, rect: tuple[float, float, float, float], image: np.ndarray, title: str) -> None:
    ax = fig.add_axes(rect)
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)


def _pair_grids(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pred, gt, labelled voxels: inside the mask and not ignored) of a prediction / ground-truth pair."""
    p, g = as_grid(pred, "pred"), as_grid(gt, "gt")
    if p.shape != g.shape:
        raise RenderError(f"pred has shape {p.shape} but gt has shape {g.shape}; expected equal shapes")
    valid = g != IGNORE_LABEL if mask is None else (np.asarray(mask).astype(bool) & (g != IGNORE_LABEL))
    return p, g, valid


def _finish(fig: Figure, path: str | Path, title: str | None, grids: Sequence[np.ndarray], names: Sequence[str],
            colors: np.ndarray, free: int) -> Path:
    if title:
        fig.suptitle(title)
    _legend(fig, grids, names, colors, free)
    return _save(fig, path)


def _palette(num_classes: int) -> tuple[tuple[str, ...], np.ndarray, int]:
    table = class_table(num_classes)
    return table.names, table.colors, table.free_label


def render_bev(path: str | Path, semantics: np.ndarray, mask: np.ndarray | None = None, num_classes: int = 18,
               title: str | None = None) -> Path:
    """BEV of one grid with the class colour legend (Occ3D palette for 18 classes, SemanticKITTI for 20)."""
    names, colors, free = _palette(num_classes)
    sem = as_grid(semantics)
    fig = Figure(figsize=(7.5, 6))
    _panel(fig, (0.02, 0.05, 0.7, 0.88), bev_image(sem, colors, free, mask), title or "bird's-eye view (forward = up)")
    return _finish(fig, path, None, [sem[mask.astype(bool)] if mask is not None else sem], names, colors, free)


def render_comparison(path: str | Path, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                      num_classes: int = 18, title: str | None = None) -> Path:
    """Prediction | ground truth | error map (red = wrong top class, green = right), side by side in BEV."""
    names, colors, free = _palette(num_classes)
    p, g, valid = _pair_grids(pred, gt, mask)
    pb, gb = bev_image(p, colors, free, mask), bev_image(g, colors, free, mask)
    agree = np.where(valid, p == g, True).all(axis=2)[::-1, ::-1]
    seen = valid.any(axis=2)[::-1, ::-1]
    err = np.full((*agree.shape, 3), 200, dtype=np.uint8)
    err[seen & agree] = (60, 170, 60)
    err[seen & ~agree] = (220, 40, 40)
    fig = Figure(figsize=(15, 5.4))
    for i, (img, sub) in enumerate(((pb, "prediction"), (gb, "ground truth"), (err, "column errors"))):
        _panel(fig, (0.01 + i * 0.28, 0.05, 0.27, 0.85), img, sub)
    return _finish(fig, path, title, [p[valid], g[valid]], names, colors, free)


def render_iou_bars(path: str | Path, per_class_iou: Mapping[str, float], miou: float | None = None,
                    colors: np.ndarray | Sequence | None = None, title: str | None = None) -> Path:
    """Horizontal bar chart of per-class IoU (fractions, NaN = class absent, drawn as 'n/a')."""
    if not per_class_iou:
        raise RenderError("render_iou_bars: per_class_iou is empty")
    names = list(per_class_iou)
    vals = [per_class_iou[n] for n in names]
    vals = [float("nan") if v is None else float(v) for v in vals]
    fig = Figure(figsize=(8, 0.32 * len(names) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(names))[::-1]
    bar_colors = [np.asarray(colors[i]) / 255.0 for i in range(len(names))] if colors is not None else "tab:blue"
    ax.barh(y, [0.0 if math.isnan(v) else 100 * v for v in vals], color=bar_colors, edgecolor="black")
    for yi, v in zip(y, vals):
        ax.text(1 if math.isnan(v) else 100 * v + 1, yi, "n/a" if math.isnan(v) else f"{100 * v:.1f}",
                va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 105)
    ax.set_xlabel("IoU [%]")
    if miou is not None and not math.isnan(miou):
        ax.axvline(100 * miou, color="black", linestyle="--")
    ax.set_title(title or (f"per-class IoU, mIoU {100 * miou:.2f}" if miou is not None else "per-class IoU"))
    return _save(fig, path)


def render_camera_mosaic(path: str | Path, images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> Path:
    """PNG of ``camera_mosaic``."""
    return save_png(path, camera_mosaic(images, names))


def render_cameras_and_bev(path: str | Path, images: Sequence[np.ndarray], camera_names: Sequence[str] | None,
                           pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, num_classes: int = 18,
                           title: str | None = None) -> Path:
    """What the model sees and what it predicts (the layout of the paper's Fig. 3): the camera images of a
    frame (nuScenes layout for the six nuScenes cameras) beside the BEV prediction and ground truth."""
    names, colors, free = _palette(num_classes)
    p, g, valid = _pair_grids(pred, gt, mask)
    mosaic = camera_mosaic(list(images), list(camera_names) if camera_names else None)
    mh, mw = mosaic.shape[:2]
    width = 16.0
    cam_w = width * 0.5
    fig = Figure(figsize=(width, max(4.5, cam_w * mh / mw + 1.0)))
    _panel(fig, (0.0, 0.04, 0.5, 0.86), mosaic, "camera images (input)")
    for i, (grid, sub) in enumerate(((p, "prediction (BEV, forward up)"), (g, "ground truth (BEV)"))):
        _panel(fig, (0.51 + i * 0.205, 0.04, 0.2, 0.86), bev_image(grid, colors, free, mask), sub)
    return _finish(fig, path, title, [p[valid], g[valid]], names, colors, free)

