"""BEV of a grid: forward up, left left, the top class per column, free and unknown columns, bad grids."""
from __future__ import annotations

import numpy as np
import pytest

from protoocc_ros.classes import KITTI_COLORS, OCC3D_COLORS
from protoocc_ros.render import RenderError, bev_image
from protoocc_ros.render.bev import FREE_COLOR, UNKNOWN_COLOR


def grid() -> np.ndarray:
    g = np.full((200, 200, 16), 17, dtype=np.uint8)
    g[:, :, 2] = 11                    # road everywhere
    g[199, 199, 3:6] = 4               # a car at the front-left corner (max x, max y)
    g[0, 0, 3] = 7                     # a pedestrian at the back-right corner
    return g


def test_bev_puts_forward_up_and_left_left_with_the_top_class():
    img = bev_image(grid())
    assert img.shape == (200, 200, 3)
    front_left, back_right, middle = img[0, 0].astype(int), img[199, 199].astype(int), img[100, 100].astype(int)
    assert np.argmax(front_left) == np.argmax(OCC3D_COLORS[4]) and front_left[0] > 200      # car orange, on top
    assert front_left[2] < 60
    assert np.argmax(back_right) == 2                                                        # pedestrian blue
    assert middle[1] > middle[0] + 100                                                       # road (turquoise)


def test_bev_shows_free_and_unknown_columns():
    g = np.full((4, 4, 3), 17, dtype=np.uint8)
    g[0, 0, 0] = 4
    mask = np.ones_like(g, dtype=bool)
    mask[3, 3] = False
    img = bev_image(g, mask=mask)
    assert (img[0, 0] == UNKNOWN_COLOR).all()          # column (3, 3) unobserved
    assert (img[1, 1] == FREE_COLOR).all()             # observed and free
    assert not (img[3, 3] == FREE_COLOR).all()         # column (0, 0) holds the car
    kitti = bev_image(np.where(g == 17, 0, 1), KITTI_COLORS, free_label=0)
    assert (kitti[1, 1] == FREE_COLOR).all()


def test_bev_rejects_bad_grids():
    with pytest.raises(RenderError, match="3-D"):
        bev_image(np.zeros((4, 4), np.uint8))
    with pytest.raises(RenderError, match="label 30"):
        bev_image(np.full((2, 2, 2), 30, np.uint8))
    with pytest.raises(RenderError, match="dtype float"):
        bev_image(np.zeros((2, 2, 2), np.float32))
