"""Synthetic driving scenes written in the real dataset formats (design §4): the embedded demo/test sample."""
from __future__ import annotations

from protoocc_ros.data.synthetic.sample import SampleConfig, ensure_sample, generate_sample, kitti_root

__all__ = ["SampleConfig", "ensure_sample", "generate_sample", "kitti_root"]
