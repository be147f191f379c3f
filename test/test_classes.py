"""Class tables against the references they come from (nuscenes-devkit palette, semantic-kitti.yaml)."""
from __future__ import annotations

import types

import numpy as np
from nuscenes.eval.lidarseg.utils import LidarsegClassMapper

from protoocc_ros.classes import (KITTI_CLASS_NAMES, KITTI_COLORS, KITTI_LEARNING_MAP, KITTI_LEARNING_MAP_INV,
                                  OCC3D_CLASS_NAMES, OCC3D_COLORS, kitti_ssc_lut)


def test_occ3d_names_and_colours_follow_the_lidarseg_challenge_classes():
    fake = types.SimpleNamespace(ignore_class={"name": "ignore", "index": 0})
    coarse = LidarsegClassMapper.get_coarse2idx(fake)
    colours = LidarsegClassMapper.get_coarse2color(fake)
    for name, idx in coarse.items():
        if idx:
            assert OCC3D_CLASS_NAMES[idx] == name
            assert tuple(OCC3D_COLORS[idx]) == colours[name]
    assert OCC3D_CLASS_NAMES[17] == "free" and OCC3D_COLORS.shape == (18, 3)


def test_kitti_maps_are_consistent():
    assert len(KITTI_CLASS_NAMES) == 20 and KITTI_COLORS.shape == (20, 3)
    for learn, raw in KITTI_LEARNING_MAP_INV.items():
        assert KITTI_LEARNING_MAP[raw] == learn
    lut = kitti_ssc_lut()
    assert lut[0] == 0          # empty stays empty
    assert lut[1] == 255        # outlier -> unlabeled -> ignored in completion
    assert lut[52] == 255 and lut[99] == 255
    assert lut[10] == 1 and lut[252] == 1 and lut[81] == 19
    assert lut[1000] == 255     # unknown raw id
    assert lut.dtype == np.uint8
