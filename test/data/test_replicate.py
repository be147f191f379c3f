"""Replicated dataroots for scale tests: an ordinary Occ3D dataroot of copies x frames, coarsened labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from protoocc_ros.classes import OCC3D_FREE_LABEL
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset
from protoocc_ros.data.synthetic import ensure_sample
from protoocc_ros.data.synthetic.replicate import coarsen_labels, replicate_sample


def test_coarse_voxel_is_the_most_frequent_occupied_class_of_its_block() -> None:
    sem = np.full((4, 4, 2), OCC3D_FREE_LABEL, np.uint8)
    sem[0, 0, 0], sem[1, 0, 0], sem[0, 1, 1] = 3, 3, 5  # block (0, 0, 0): two 3s, one 5, free elsewhere
    sem[2:, 2:, :] = 9
    mask = np.zeros(sem.shape, bool)
    mask[3, 3, 1] = True
    coarse, masks = coarsen_labels(sem, {"mask_camera": mask}, 2)
    assert coarse.shape == (2, 2, 1) and coarse[0, 0, 0] == 3 and coarse[1, 1, 0] == 9
    assert coarse[0, 1, 0] == coarse[1, 0, 0] == OCC3D_FREE_LABEL
    assert masks["mask_camera"].tolist() == [[[False], [False]], [[False], [True]]]
    with pytest.raises(DatasetError, match="not divisible"):
        coarsen_labels(sem, {}, 3)


def test_copies_are_new_scenes_with_distinct_tokens_and_stamps(tmp_path: Path) -> None:
    src = ensure_sample()
    dst = replicate_sample(src, tmp_path / "rep", copies=3, coarsen=4)
    ds = Occ3DNuScenesDataset(dst, "v1.0-mini", split="train", image_size=(48, 88), voxel_size=1.6,
                              grid_size=(50, 50, 4))
    base = Occ3DNuScenesDataset(src, "v1.0-mini", split="train", load_gt=False, image_size=(48, 88))
    assert len(ds) == 3 * len(base) and len(ds.scenes()) == 3 * len(base.scenes())
    tokens = [f.sample_token for f in ds.frames]
    assert len(set(tokens)) == len(tokens)
    stamps = [f.timestamp for f in ds.frames]
    assert len(set(stamps)) == len(stamps) and min(stamps) > 1.5e9  # nuScenes magnitude, never repeated
    for scene in ds.scenes():
        t = [ds.frames[i].timestamp for i in ds.scene_indices(scene)]
        assert np.all(np.diff(t) == pytest.approx(0.5))
    copy = ds.scene_indices("scene-0001-r0002")[3]
    orig = ds.scene_indices("scene-0001")[3]
    a, b = ds[copy], ds[orig]
    assert a["sample_token"] != b["sample_token"] and np.array_equal(a["raw_images"], b["raw_images"])
    assert np.array_equal(a["semantics"], b["semantics"]) and tuple(a["semantics"].shape) == (50, 50, 4)
    with pytest.raises(DatasetError, match="exists"):
        replicate_sample(src, dst, copies=1)
