"""Camera mosaic in the nuScenes layout."""
from __future__ import annotations

import numpy as np
import pytest

from protoocc_ros.render import RenderError, camera_mosaic


def test_mosaic_follows_the_nuscenes_layout():
    names = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"]
    images = [np.full((10, 20, 3), 40 * i, np.uint8) for i in range(6)]
    m = camera_mosaic(images, names, label=False)
    assert m.shape == (20, 60, 3)
    assert m[0, 20, 0] == 0 and m[0, 0, 0] == 80 and m[0, 40, 0] == 40     # FRONT_LEFT | FRONT | FRONT_RIGHT
    assert m[10, 0, 0] == 160 and m[10, 20, 0] == 120 and m[10, 40, 0] == 200
    with pytest.raises(RenderError, match="image 1"):
        camera_mosaic([images[0], np.zeros((4, 4), np.uint8)])
