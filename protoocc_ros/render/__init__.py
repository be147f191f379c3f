"""PNG renders (docs/architecture.md "Data"): camera mosaics, bird's-eye views of grids, prediction vs ground truth,
IoU bars."""
from __future__ import annotations

from protoocc_ros.render.bev import bev_image
from protoocc_ros.render.errors import RenderError
from protoocc_ros.render.figures import (
    render_bev,
    render_camera_mosaic,
    render_cameras_and_bev,
    render_comparison,
    render_iou_bars,
)
from protoocc_ros.render.mosaic import camera_mosaic, save_png
from protoocc_ros.render.prototypes import render_prototypes
from protoocc_ros.render.voxels3d import render_voxels_3d

__all__ = ["RenderError", "bev_image", "camera_mosaic", "render_bev", "render_camera_mosaic", "render_cameras_and_bev",
           "render_comparison", "render_iou_bars", "render_prototypes", "render_voxels_3d", "save_png"]
