"""Synthetic driving scenes written in the real dataset formats (docs/architecture.md "Data"): the embedded
demo/test sample.

Default sample (``SampleConfig()``, ``protoocc-make-sample``, ``dataset.dataroot: synthetic``): 8 training +
2 validation scenes x 10 keyframes at 2 Hz, six nuScenes-like cameras stored as 180x320 JPEGs, a roof lidar
sweep per keyframe, Occ3D ground truth 200x200x16 at 0.4 m, plus SemanticKITTI sequences 00 (train) and
08 (val) with 4 frames each (120x400 PNG, 256x256x32 voxels). About 70 MB on disk (SemanticKITTI's
uncompressed .label files are 39 MB of it); generated in about 35 s on two busy CPU cores. The cache lives in
``$PROTOOCC_DATA_DIR`` or ``~/.cache/protoocc_ros`` as ``synthetic-v1-seed<seed>``.
"""
from __future__ import annotations

from protoocc_ros.data.synthetic.sample import SampleConfig, ensure_sample, generate_sample, kitti_root

__all__ = ["SampleConfig", "ensure_sample", "generate_sample", "kitti_root"]
