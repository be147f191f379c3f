"""Datasets in their real on-disk formats (docs/architecture.md "Data"): Occ3D-nuScenes, SemanticKITTI SSC, the
synthetic sample.

``build_dataset(cfg, split)`` is the config-driven factory; the loaders themselves live in
``occ3d_nuscenes.py`` and ``semantic_kitti.py``, the shared image preprocessing in ``preprocessing.py``.
"""
from __future__ import annotations

from protoocc_ros.data.errors import DatasetError

__all__ = ["DatasetError", "build_dataset"]


def build_dataset(cfg, split: str):
    """Build the dataset of ``cfg.dataset`` for ``split`` (see ``protoocc_ros.data.build``)."""
    from protoocc_ros.data.build import build_dataset as _build

    return _build(cfg, split)
