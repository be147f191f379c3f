"""``build_dataset(cfg, split)``: the dataset named by a config's ``dataset`` section (docs/architecture.md "Data").

Reads ``cfg.dataset.kind`` ('occ3d' | 'kitti'), ``dataroot`` ('synthetic' = the embedded sample, generated
on first use), ``version``, ``cameras``, ``image_size``, ``point_cloud_range``, ``voxel_size``, ``grid_size``
and ``train_split`` / ``val_split`` (a split name or an explicit list of scene / sequence names).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from protoocc_ros.classes import KITTI_NUM_CLASSES, OCC3D_NUM_CLASSES, ClassTable, class_table
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.layouts import KITTI, NUSCENES_CAMERAS, OCC3D, GridLayout

SYNTHETIC = "synthetic"


def benchmark_layout(kind: str) -> GridLayout:
    """The label grid of a dataset kind ('occ3d' | 'kitti'): range, voxel size, shape."""
    layouts = {"occ3d": OCC3D, "kitti": KITTI}
    if kind not in layouts:
        raise DatasetError(f"dataset kind {kind!r} is unknown; expected 'occ3d' or 'kitti'")
    return layouts[kind]


def benchmark_classes(kind: str) -> ClassTable:
    """The label set of a dataset kind: Occ3D (18 classes, 17 = free) or SemanticKITTI (20, 0 = empty)."""
    return class_table(OCC3D_NUM_CLASSES if kind == "occ3d" else KITTI_NUM_CLASSES)


def resolve_dataroot(dataroot: str | Path, kind: str) -> Path:
    """Expand ``synthetic`` to the cached synthetic sample (its KITTI variant for kind 'kitti')."""
    if str(dataroot) != SYNTHETIC:
        return Path(dataroot).expanduser()
    from protoocc_ros.data.synthetic import ensure_sample, kitti_root

    root = ensure_sample()
    return kitti_root(root) if kind == "kitti" else root


def build_dataset(cfg: Any, split: str):
    """Dataset of ``split`` ('train' | 'val' | any split name) for the config object ``cfg``."""
    d = getattr(cfg, "dataset", cfg)
    kind = getattr(d, "kind", "occ3d")
    which = {"train": getattr(d, "train_split", "train"), "val": getattr(d, "val_split", "val")}.get(split, split)
    names = None if isinstance(which, str) else list(which)
    split_name = which if isinstance(which, str) else None
    image_size = (int(d.image_size[0]), int(d.image_size[1])) if getattr(d, "image_size", None) else None
    pc_range = tuple(float(v) for v in d.point_cloud_range)
    voxel_size = float(d.voxel_size)
    grid_size = tuple(int(v) for v in getattr(d, "grid_size", None) or ()) or None
    root = resolve_dataroot(getattr(d, "dataroot", SYNTHETIC), kind)
    if kind == "occ3d":
        from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset

        return Occ3DNuScenesDataset(root, version=getattr(d, "version", "v1.0-trainval"), split=split_name,
                                    scenes=names, cameras=tuple(getattr(d, "cameras", NUSCENES_CAMERAS)),
                                    num_classes=int(getattr(d, "num_classes", 18)), image_size=image_size,
                                    point_cloud_range=pc_range, voxel_size=voxel_size, grid_size=grid_size)
    if kind == "kitti":
        from protoocc_ros.data.semantic_kitti import SemanticKittiDataset

        return SemanticKittiDataset(root, split=split_name, sequences=names, image_size=image_size,
                                    point_cloud_range=pc_range, voxel_size=voxel_size, grid_size=grid_size)
    raise DatasetError(f"dataset.kind {kind!r} is unknown; expected 'occ3d' or 'kitti'")
