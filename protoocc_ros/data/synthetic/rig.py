"""Sensor rigs of the synthetic sample: a nuScenes-like 6-camera rig + roof lidar, and a KITTI-like front camera.

Camera poses follow the nuScenes layout (CAM_FRONT 0 deg, FRONT_RIGHT -55, FRONT_LEFT +55, BACK 180 with a
wider lens, BACK_LEFT +110, BACK_RIGHT -110; ~1.5 m high); focal lengths scale with the image width so any
image size keeps the nuScenes fields of view. Optical frames: x right, y down, z forward.
"""
from __future__ import annotations

import numpy as np

from protoocc_ros.data.synthetic.raycast import PinholeView
from protoocc_ros.geometry import make_transform, optical_rotation

# name, x, y, z (ego, metres), yaw (deg), focal length / image width
NUSCENES_RIG: list[tuple[str, float, float, float, float, float]] = [
    ("CAM_FRONT", 1.70, 0.02, 1.51, 0.0, 0.79),
    ("CAM_FRONT_RIGHT", 1.55, -0.49, 1.50, -55.0, 0.79),
    ("CAM_FRONT_LEFT", 1.52, 0.49, 1.51, 55.0, 0.79),
    ("CAM_BACK", 0.03, 0.0, 1.57, 180.0, 0.506),
    ("CAM_BACK_LEFT", 1.04, 0.48, 1.56, 110.0, 0.79),
    ("CAM_BACK_RIGHT", 1.03, -0.48, 1.55, -110.0, 0.79),
]
LIDAR_TRANSLATION = (0.94, 0.0, 1.84)     # LIDAR_TOP in the ego frame
LIDAR_YAW_DEG = -90.0                      # nuScenes' LIDAR_TOP x axis points to the ego's right
NUSCENES_LIDAR_ELEVATION = (-30.67, 10.67)  # HDL-32E vertical field of view (deg)
KITTI_LIDAR_ELEVATION = (-24.9, 2.0)       # HDL-64E
# KITTI: velodyne = ego origin, 1.8 m above the road frame; cam0 0.27 m ahead, 0.08 m lower; cam2 6 cm left
KITTI_VELO_HEIGHT = 1.8
KITTI_CAM0_IN_VELO = (0.27, 0.0, -0.08)
KITTI_CAM2_BASELINE = 0.06
KITTI_FOCAL_REL = 0.577                    # 707 px / 1226 px


def intrinsics(focal: float, height: int, width: int) -> np.ndarray:
    """Pinhole K with the principal point at the image centre (pixel centres at integer coordinates)."""
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def nuscenes_cameras(image_size: tuple[int, int]) -> list[PinholeView]:
    """The six nuScenes-like cameras for images of ``image_size`` (H, W)."""
    H, W = image_size
    return [PinholeView(name, intrinsics(f * W, H, W), make_transform(optical_rotation(np.radians(yaw)), (x, y, z)),
                        H, W)
            for name, x, y, z, yaw, f in NUSCENES_RIG]


def lidar_views(origin: tuple[float, float, float], elevation_deg: tuple[float, float],
                width: int = 256) -> list[PinholeView]:
    """Four 90-degree pinhole depth views around ``origin`` covering a lidar's vertical field of view."""
    f = width / 2.0
    half = np.tan(np.radians(max(abs(elevation_deg[0]), abs(elevation_deg[1])))) * np.sqrt(2.0) * f
    height = 2 * int(np.ceil(half)) + 2
    return [PinholeView(f"lidar_{yaw}", intrinsics(f, height, width),
                        make_transform(optical_rotation(np.radians(yaw)), origin), height, width)
            for yaw in (0, 90, 180, 270)]


def lidar_beams(elevation_deg: tuple[float, float], rings: int = 32, azimuths: int = 1084) -> np.ndarray:
    """Unit beam directions (rings * azimuths, 3) in the ego frame, ring-major."""
    el = np.radians(np.linspace(elevation_deg[1], elevation_deg[0], rings))
    az = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)
    E, A = np.meshgrid(el, az, indexing="ij")
    return np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)


def kitti_camera(image_size: tuple[int, int]) -> tuple[PinholeView, np.ndarray, np.ndarray]:
    """The KITTI-like colour camera (image_2) in the velodyne (= ego) frame.

    Returns (view, P2 (3, 4) in the rectified cam0 frame, Tr (4, 4) velodyne -> cam0)."""
    H, W = image_size
    K = intrinsics(KITTI_FOCAL_REL * W, H, W)
    R = optical_rotation(0.0)                               # cam0 -> velo rotation
    cam0_to_velo = make_transform(R, KITTI_CAM0_IN_VELO)
    Tr = np.linalg.inv(cam0_to_velo)
    # cam2 sits KITTI_CAM2_BASELINE to the left of cam0 (optical -x): x_cam2 = x_cam0 + baseline
    P2 = K @ np.hstack([np.eye(3), np.array([[KITTI_CAM2_BASELINE], [0.0], [0.0]])])
    cam2_to_velo = cam0_to_velo @ make_transform(None, (-KITTI_CAM2_BASELINE, 0.0, 0.0))
    return PinholeView("image_2", K, cam2_to_velo, H, W), P2, Tr
