"""protoocc-render: PNG renders of Occ3D / SemanticKITTI grids, predictions, metrics and camera images.

  protoocc-render labels.npz -o bev.png                       BEV of a ground-truth or prediction grid
  protoocc-render pred.npz --gt labels.npz -o cmp.png         prediction | ground truth | errors, prints mIoU
  protoocc-render --metrics metrics.json -o iou.png           per-class IoU bars (OccupancyMetric/SSCMetric JSON)
  protoocc-render --images a.jpg b.jpg ... -o mosaic.png      camera mosaic (nuScenes layout with --names)

Grid files: .npz (Occ3D labels.npz, or a prediction with 'semantics' / 'pred' / 'prediction' / 'labels', or
a single array), .npy, SemanticKITTI .label (raw ids, learning map applied; a .invalid beside it -> 255).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from protoocc_ros.classes import IGNORE_LABEL, KITTI_NUM_CLASSES, OCC3D_NUM_CLASSES, class_table, kitti_ssc_lut
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.io import read_rgb, require_file
from protoocc_ros.metrics import MetricError, build_metric
from protoocc_ros.render import RenderError, render_bev, render_camera_mosaic, render_comparison, render_iou_bars

GRID_KEYS = ("semantics", "pred", "prediction", "labels", "occupancy")
KITTI_SHAPE = (256, 256, 32)


def load_grid(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels (X, Y, Z), masks {'mask_camera', 'mask_lidar'} when the file has them) from a grid file."""
    p = require_file(path, "grid file")
    if p.suffix == ".label":
        raw = np.fromfile(p, dtype=np.uint16)
        if raw.size != np.prod(KITTI_SHAPE):
            raise RenderError(f"{p}: {raw.size} labels; expected {int(np.prod(KITTI_SHAPE))} (256x256x32)")
        labels = kitti_ssc_lut()[raw].astype(np.int64)
        invalid = p.with_suffix(".invalid")
        if invalid.is_file():
            labels[np.unpackbits(np.fromfile(invalid, dtype=np.uint8))[:raw.size] == 1] = IGNORE_LABEL
        return labels.reshape(KITTI_SHAPE), {}
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise RenderError(f"{p}: not a readable .npz/.npy file ({exc})") from exc
    if isinstance(data, np.ndarray):
        return data, {}
    with data:
        keys = [k for k in GRID_KEYS if k in data.files] or (data.files if len(data.files) == 1 else [])
        if not keys:
            raise RenderError(f"{p}: no grid array; expected one of {GRID_KEYS}, found {sorted(data.files)}")
        masks = {k: data[k].astype(bool) for k in ("mask_camera", "mask_lidar") if k in data.files}
        return data[keys[0]], masks


def _num_classes(grid: np.ndarray, given: int | None) -> int:
    if given:
        return given
    return KITTI_NUM_CLASSES if tuple(grid.shape) == KITTI_SHAPE else OCC3D_NUM_CLASSES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="protoocc-render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", nargs="?", help="labels.npz / prediction file / .label to draw")
    p.add_argument("--gt", help="ground truth to compare the grid with (side by side + mIoU)")
    p.add_argument("--mask", choices=("camera", "lidar", "none"), default="camera",
                   help="visibility mask of the ground truth file to apply (default %(default)s)")
    p.add_argument("--num-classes", type=int, choices=(OCC3D_NUM_CLASSES, KITTI_NUM_CLASSES),
                   help="18 (Occ3D) or 20 (SemanticKITTI); default from the grid shape")
    p.add_argument("--metrics", help="metrics JSON (OccupancyMetric / SSCMetric .to_json()) for IoU bars")
    p.add_argument("--images", nargs="+", help="camera images for a mosaic")
    p.add_argument("--names", nargs="+", help="camera names of --images (nuScenes names give its layout)")
    p.add_argument("--title", help="figure title")
    p.add_argument("-o", "--out", required=True, help="output PNG")
    return p


def _render(args: argparse.Namespace) -> str:
    if args.images:
        render_camera_mosaic(args.out, [read_rgb(p) for p in args.images], args.names)
        return f"mosaic of {len(args.images)} images"
    if args.metrics:
        data = json.loads(require_file(args.metrics, "metrics JSON").read_text())
        results = data.get("results", data)
        if "per_class_iou" not in results:
            raise RenderError(f"{args.metrics}: no 'per_class_iou'; expected OccupancyMetric/SSCMetric JSON")
        per_class = results["per_class_iou"]
        table = class_table(len(per_class) + 1)
        names, colors = table.names, table.colors
        idx = [names.index(n) for n in per_class] if set(per_class) <= set(names) else None
        render_iou_bars(args.out, per_class, results.get("miou"), colors[idx] if idx else None, args.title)
        return f"IoU bars of {len(per_class)} classes"
    if not args.grid:
        raise RenderError("nothing to render: give a grid file, --metrics or --images")
    grid, masks = load_grid(args.grid)
    n = _num_classes(grid, args.num_classes)
    if not args.gt:
        mask = masks.get(f"mask_{args.mask}") if args.mask != "none" else None
        render_bev(args.out, grid, mask, n, args.title or Path(args.grid).name)
        return f"BEV of {args.grid}"
    gt, gt_masks = load_grid(args.gt)
    mask = gt_masks.get(f"mask_{args.mask}") if args.mask != "none" else None
    if args.mask != "none" and mask is None and n == OCC3D_NUM_CLASSES:
        raise RenderError(f"{args.gt}: has no mask_{args.mask}; pass --mask none")
    render_comparison(args.out, grid, gt, mask, n, args.title)
    metric = build_metric(n, class_table(n).free_label, use_mask=args.mask if mask is not None else "none")
    metric.update(grid.astype(np.int64), gt.astype(np.int64), mask)
    print(metric.table())
    return f"comparison of {args.grid} with {args.gt}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        what = _render(args)
    except (RenderError, DatasetError, MetricError, json.JSONDecodeError) as exc:
        print(f"protoocc-render: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({what})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
