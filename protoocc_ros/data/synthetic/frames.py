"""One synthetic frame: camera images, ground-truth grid, camera/lidar visibility masks and lidar points.

The ground truth is the scene voxelised in the ego frame of the frame; ``mask_camera`` / ``mask_lidar`` mark
the voxels that a camera / the roof lidar sees up to and including the first surface (Occ3D's rule), so the
labels are exactly what the images show (docs/architecture.md "Data").
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protoocc_ros.data.synthetic import world as W
from protoocc_ros.data.synthetic.appearance import Hits, Noise, class_image, shade
from protoocc_ros.data.synthetic.raycast import (
    PinholeView,
    VisibilityTable,
    beam_hits,
    ground_hit,
    inverse,
    render_boxes,
)
from protoocc_ros.data.synthetic.rig import lidar_beams, lidar_views
from protoocc_ros.geometry import grid_shape, voxel_centers


@dataclass
class FrameOutput:
    images: list[np.ndarray]        # uint8 (H, W, 3) RGB per camera
    classes: list[np.ndarray]       # uint8 (H, W) Occ3D class seen by each pixel, 255 = sky
    labels: np.ndarray              # (X, Y, Z) ground truth (Occ3D uint8 or raw KITTI uint16)
    mask_camera: np.ndarray         # bool (X, Y, Z)
    mask_lidar: np.ndarray          # bool (X, Y, Z)
    lidar_points: np.ndarray        # float64 (P, 3) ego frame
    lidar_rings: np.ndarray         # int64 (P,)
    lidar_boxes: np.ndarray         # int64 (P,) box hit by each point, -1 = ground


class FrameRenderer:
    """Renders frames of any scene for a fixed rig and grid (visibility tables are built once)."""

    def __init__(self, cameras: list[PinholeView], point_cloud_range: Sequence[float], voxel_size: float,
                 ego_height: float, lidar_origin: tuple[float, float, float],
                 lidar_elevation: tuple[float, float], lidar_rings: int = 32, lidar_azimuths: int = 256) -> None:
        """``ego_height``: road-frame z of the ego origin (0 for nuScenes' base_link, 1.8 for KITTI's velodyne);
        ``lidar_rings`` x ``lidar_azimuths`` beams give the lidar points (0 rings: no points)."""
        self.cameras = cameras
        self.range = np.asarray(point_cloud_range, dtype=np.float64)
        self.voxel = voxel_size
        self.shape = grid_shape(point_cloud_range, voxel_size)
        self.ego_height = ego_height
        self.ground_z = W.GROUND_TOP - ego_height
        self.cam_dirs = [v.pixel_dirs().astype(np.float32) for v in cameras]
        self.cam_inv = [inverse(d) for d in self.cam_dirs]
        self.cam_ground = [ground_hit(v.origin, d, self.ground_z).astype(np.float32)
                           for v, d in zip(cameras, self.cam_dirs)]
        centres = voxel_centers(point_cloud_range, voxel_size).reshape(-1, 3)
        self.cam_tables = [VisibilityTable.build(v, centres, self.shape, voxel_size, self.ground_z)
                           for v in cameras]
        self.lidar = lidar_views(lidar_origin, lidar_elevation)
        self.lidar_inv = [inverse(v.pixel_dirs()) for v in self.lidar]
        self.lidar_tables = [VisibilityTable.build(v, centres, self.shape, voxel_size, self.ground_z, lidar_elevation)
                             for v in self.lidar]
        self.beams = lidar_beams(lidar_elevation, lidar_rings, lidar_azimuths)
        self.rings = np.repeat(np.arange(lidar_rings), lidar_azimuths)
        az = np.degrees(np.arctan2(self.beams[:, 1], self.beams[:, 0]))
        self.beam_view = np.round(np.mod(az, 360.0) / 90.0).astype(np.int64) % 4   # lidar views at 0/90/180/270

    def ego_position(self, scene: W.Scene, frame: int) -> np.ndarray:
        """Road-frame position of this renderer's ego origin at ``frame``."""
        return scene.ego_positions[frame] + np.array([0.0, 0.0, self.ego_height])

    def render(self, scene: W.Scene, frame: int, box_labels: np.ndarray, ground_labels: dict[int, int] | None,
               free: int, noise: Noise, rng: np.random.Generator, label_dtype: type = np.uint8,
               images: bool = True) -> FrameOutput:
        ego = self.ego_position(scene, frame)
        lo_road, hi_road = scene.boxes.at_frame(frame)
        lo, hi = lo_road - ego, hi_road - ego
        labels, inst = W.voxelize(scene, frame, self.range[:3] + ego, self.shape, self.voxel, box_labels,
                                  ground_labels, free, label_dtype)
        inst = inst.reshape(-1)
        occupied = labels.reshape(-1) != free
        mask_camera = np.zeros(labels.size, dtype=bool)
        imgs, classes = [], []
        for view, dirs, inv, t_ground, table in zip(self.cameras, self.cam_dirs, self.cam_inv, self.cam_ground,
                                                    self.cam_tables):
            depth, index, axis = render_boxes(view, inv, lo, hi, with_axis=images)
            mask_camera[table.visible(index, inst, occupied, lo, hi)] = True
            if images:
                hits = _hits(view, dirs, depth, index, axis, t_ground, ego, lo_road)
                classes.append(class_image(hits, scene))
                imgs.append(shade(hits, scene, noise, rng))
        mask_lidar = np.zeros(labels.size, dtype=bool)
        t_beam = np.full(len(self.beams), np.inf)
        box_beam = np.full(len(self.beams), -1, dtype=np.int64)
        for i, (view, inv, table) in enumerate(zip(self.lidar, self.lidar_inv, self.lidar_tables)):
            _, index, _ = render_boxes(view, inv, lo, hi, with_axis=False)
            mask_lidar[table.visible(index, inst, occupied, lo, hi)] = True
            sel = self.beam_view == i
            if sel.any():
                t_beam[sel], box_beam[sel] = beam_hits(view, self.beams[sel], index, lo, hi, self.ground_z)
        ok = t_beam < 70.0
        points = self.lidar[0].origin + self.beams[ok] * t_beam[ok, None]
        return FrameOutput(images=imgs, classes=classes, labels=labels, mask_camera=mask_camera.reshape(self.shape),
                           mask_lidar=mask_lidar.reshape(self.shape), lidar_points=points,
                           lidar_rings=self.rings[ok], lidar_boxes=box_beam[ok])


def _hits(view: PinholeView, dirs: np.ndarray, depth: np.ndarray, index: np.ndarray, axis: np.ndarray,
          t_ground: np.ndarray, ego: np.ndarray, box_lo: np.ndarray) -> Hits:
    box_first = depth <= t_ground
    t = np.minimum(depth, t_ground)
    finite = np.isfinite(t)
    world = np.where(finite[..., None], view.origin + dirs * np.where(finite, t, 0.0)[..., None], 0.0) + ego
    return Hits(dirs=dirs, t=t, box=np.where(box_first & finite, index, -1), axis=axis, world=world,
                ground=finite & ~box_first, box_lo=box_lo)
