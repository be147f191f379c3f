"""(X, Y) int8 navigation cells <-> nav_msgs/OccupancyGrid (~/occupancy_2d; the cells: inference/occupancy_2d.py).

nav_msgs/OccupancyGrid is row-major with rows along y: data[iy * width + ix] = cells[ix, iy], width = X cells along
x, height = Y cells along y; info.origin = the outer corner of cell (0, 0) = (x_min, y_min) of the 3D grid's
point_cloud_range at the ground's z, identity orientation; info.resolution = the voxel size.
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nav_msgs.msg import OccupancyGrid
from std_msgs.msg import Header

__all__ = ["NavigationGridError", "Cells", "cells_to_msg", "msg_to_cells"]


class NavigationGridError(ValueError):
    """Cells or a message that break the layout above; the message names the field."""


@dataclass
class Cells:
    """A decoded nav_msgs/OccupancyGrid."""

    cells: np.ndarray       # int8 (X, Y): 100 occupied, 0 free, -1 unknown
    origin: np.ndarray      # float64 (3,): corner of cell (0, 0), metres
    resolution: float       # metres
    frame_id: str


def cells_to_msg(cells: np.ndarray, point_cloud_range: Sequence[float], voxel_size: float, ground_z_m: float,
                 header: Header) -> OccupancyGrid:
    """cells (X, Y) int8 -> OccupancyGrid in header.frame_id (the grid's ego frame), stamped like the header."""
    if cells.ndim != 2 or cells.dtype != np.int8:
        raise NavigationGridError(f"cells: expected an (X, Y) int8 array, got {cells.dtype} {cells.shape}")
    msg = OccupancyGrid(header=header)
    info = msg.info
    info.map_load_time = header.stamp
    info.resolution = float(voxel_size)
    info.width, info.height = int(cells.shape[0]), int(cells.shape[1])
    info.origin.position.x, info.origin.position.y = float(point_cloud_range[0]), float(point_cloud_range[1])
    info.origin.position.z = float(ground_z_m)
    info.origin.orientation.w = 1.0
    msg.data = array("b", np.ascontiguousarray(cells.T).tobytes())  # rows along y
    return msg


def msg_to_cells(msg: OccupancyGrid) -> Cells:
    """OccupancyGrid -> (X, Y) int8 cells (the inverse of cells_to_msg)."""
    info = msg.info
    data = np.asarray(msg.data, dtype=np.int8)
    if data.size != info.width * info.height:
        raise NavigationGridError(f"data: {data.size} cells, info says {info.width} x {info.height}")
    q = info.origin.orientation
    if (q.x, q.y, q.z, q.w) != (0.0, 0.0, 0.0, 1.0):
        raise NavigationGridError(f"info.origin.orientation: expected identity, got {(q.x, q.y, q.z, q.w)}")
    origin = np.array([info.origin.position.x, info.origin.position.y, info.origin.position.z])
    return Cells(data.reshape(info.height, info.width).T.copy(), origin, float(info.resolution), msg.header.frame_id)
