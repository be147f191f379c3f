"""Occ3D-nuScenes loader (docs/architecture.md "Data"): nuScenes tables via nuscenes-devkit +
``gts/<scene>/<token>/labels.npz``.

Each item is one keyframe: the N camera images (resized + normalised by ``preprocess_camera_set``),
``lidar2img`` mapping points of the keyframe's ego frame (the LIDAR_TOP ego pose, as Occ3D) to pixels --
a camera captured at another instant is chained cam -> ego(t_cam) -> global -> ego(t_ref) -- the ego pose,
the timestamp, the scene and position in it (memory reset at scene boundaries) and the Occ3D targets.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from protoocc_ros.classes import OCC3D_NUM_CLASSES
from protoocc_ros.data.errors import DatasetError
from protoocc_ros.data.io import check_array, check_labels, load_npz, read_json, read_rgb
from protoocc_ros.data.preprocessing import preprocess_camera_set, resize_images
from protoocc_ros.data.sequences import SceneDataset
from protoocc_ros.geometry import grid_shape, invert_transform, transform_from_pose
from protoocc_ros.layouts import NUSCENES_CAMERAS, OCC3D, OCC3D_RANGE

REFERENCE_CHANNEL = "LIDAR_TOP"


NUSCENES_VERSIONS = ("v1.0-trainval", "v1.0-mini", "v1.0-test")


def nuscenes_version(root: str | Path) -> str:
    """The nuScenes table directory present in ``root`` (v1.0-trainval, v1.0-mini or v1.0-test)."""
    for version in NUSCENES_VERSIONS:
        if (Path(root) / version).is_dir():
            return version
    raise DatasetError(f"{root}: no nuScenes table directory ({', '.join(NUSCENES_VERSIONS)})")


@dataclass
class Frame:
    """Everything needed to load one keyframe without the devkit object (keeps the dataset picklable)."""

    sample_token: str
    scene: str
    frame_index: int
    timestamp: float                 # seconds
    ego2global: np.ndarray           # (4, 4)
    image_paths: list[str]
    intrinsics: list[np.ndarray]     # (3, 3) each, of the stored images
    cam2ego: list[np.ndarray]        # (4, 4) each, optical frame -> reference ego frame
    gt_path: str


def open_nuscenes(dataroot: str | Path, version: str, verbose: bool = False):
    """``nuscenes.NuScenes(version, dataroot)`` with its failures turned into DatasetError."""
    from nuscenes import NuScenes

    table_dir = Path(dataroot) / version
    if not table_dir.is_dir():
        raise DatasetError(f"{table_dir}: nuScenes table directory is missing (dataroot {dataroot}, "
                           f"version {version!r})")
    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=verbose)
    except FileNotFoundError as exc:
        raise DatasetError(f"{exc.filename}: nuScenes file is missing") from exc
    except (AssertionError, KeyError, ValueError) as exc:
        raise DatasetError(f"{table_dir}: nuScenes tables are inconsistent ({type(exc).__name__}: {exc})") from exc


def split_scenes(dataroot: str | Path, version: str, split: str) -> list[str]:
    """Scene names of ``split``: from ``<dataroot>/<version>/splits.json`` when present (the synthetic sample),
    else the official nuScenes splits (train / val / test / mini_train / mini_val ...)."""
    local = Path(dataroot) / version / "splits.json"
    if local.is_file():
        splits = read_json(local)
        if split not in splits:
            raise DatasetError(f"{local}: no split {split!r}; available: {sorted(splits)}")
        return list(splits[split])
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    if split not in splits:
        raise DatasetError(f"nuScenes split {split!r} is unknown; expected one of {sorted(splits)}")
    return list(splits[split])


class Occ3DNuScenesDataset(SceneDataset):
    """Occ3D-nuScenes keyframes as sample dicts (docs/architecture.md, "Sample dict")."""

    def __init__(self, dataroot: str | Path, version: str = "v1.0-trainval", split: str | None = None,
                 scenes: Sequence[str] | None = None, cameras: Sequence[str] = NUSCENES_CAMERAS,
                 image_size: tuple[int, int] | None = None, point_cloud_range: Sequence[float] = OCC3D_RANGE,
                 voxel_size: float = OCC3D.voxel_size, grid_size: Sequence[int] | None = None,
                 num_classes: int = OCC3D_NUM_CLASSES, gts_dir: str = "gts", load_gt: bool = True) -> None:
        """``scenes`` (explicit names) wins over ``split``; neither = every scene of the dataroot.
        ``image_size`` (H, W) of the network input; None keeps the stored size."""
        super().__init__()
        self.dataroot = Path(dataroot)
        self.version = version
        self.cameras = tuple(cameras)
        self.image_size: tuple[int, int] | None = (
            (int(image_size[0]), int(image_size[1])) if image_size is not None else None)
        self.grid_size = tuple(grid_size) if grid_size is not None else grid_shape(point_cloud_range, voxel_size)
        if tuple(self.grid_size) != grid_shape(point_cloud_range, voxel_size):
            raise DatasetError(f"grid_size {self.grid_size} does not match point_cloud_range {point_cloud_range} "
                               f"at voxel_size {voxel_size}")
        self.num_classes = num_classes
        self.load_gt = load_gt
        nusc = open_nuscenes(self.dataroot, version)
        by_name = {s["name"]: s for s in nusc.scene}
        if scenes is not None:
            names = list(scenes)
            missing = [n for n in names if n not in by_name]
            if missing:
                raise DatasetError(f"{self.dataroot / version}: scenes {missing} are not in scene.json")
        elif split is not None:
            names = [n for n in split_scenes(self.dataroot, version, split) if n in by_name]
            if not names:
                raise DatasetError(f"{self.dataroot / version}: split {split!r} has no scene in this dataroot")
        else:
            names = sorted(by_name)
        for name in names:
            token = by_name[name]["first_sample_token"]
            while token:
                sample = nusc.get("sample", token)
                self._add_frame(name, self._frame(nusc, sample, name, len(self._by_scene.get(name, [])), gts_dir))
                token = sample["next"]

    def _frame(self, nusc, sample: dict, scene: str, index: int, gts_dir: str) -> Frame:
        missing = [c for c in self.cameras if c not in sample["data"]]
        if missing:
            raise DatasetError(f"{self.dataroot / self.version}/sample.json: sample {sample['token']} has no "
                               f"sample_data for cameras {missing}")
        ref_channel = REFERENCE_CHANNEL if REFERENCE_CHANNEL in sample["data"] else self.cameras[0]
        ref = nusc.get("sample_data", sample["data"][ref_channel])
        ref_pose = nusc.get("ego_pose", ref["ego_pose_token"])
        ego2global = transform_from_pose(ref_pose["translation"], ref_pose["rotation"])
        global2ego = invert_transform(ego2global)
        paths, Ks, c2e = [], [], []
        for cam in self.cameras:
            sd = nusc.get("sample_data", sample["data"][cam])
            cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            pose = nusc.get("ego_pose", sd["ego_pose_token"])
            K = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
            if K.shape != (3, 3):
                raise DatasetError(f"{self.dataroot / self.version}/calibrated_sensor.json: {cam} record "
                                   f"{cs['token']} has camera_intrinsic of shape {K.shape}; expected (3, 3)")
            cam_ego2global = transform_from_pose(pose["translation"], pose["rotation"])
            c2e.append(global2ego @ cam_ego2global @ transform_from_pose(cs["translation"], cs["rotation"]))
            paths.append(str(self.dataroot / sd["filename"]))
            Ks.append(K)
        return Frame(sample_token=sample["token"], scene=scene, frame_index=index,
                     timestamp=sample["timestamp"] * 1e-6, ego2global=ego2global, image_paths=paths,
                     intrinsics=Ks, cam2ego=c2e,
                     gt_path=str(self.dataroot / gts_dir / scene / sample["token"] / "labels.npz"))

    # ------------------------------------------------------------------------------------ items
    def load_targets(self, index: int) -> dict[str, np.ndarray]:
        """``semantics`` int64, ``mask_camera`` / ``mask_lidar`` bool, all (X, Y, Z), checked."""
        path = self.frames[index].gt_path
        arrays = load_npz(path, ("semantics", "mask_camera", "mask_lidar"))
        sem = check_array(arrays["semantics"], path, "semantics", self.grid_size, "int")
        check_labels(sem, path, "semantics", self.num_classes)
        return {"semantics": sem.astype(np.int64),
                "mask_camera": check_array(arrays["mask_camera"], path, "mask_camera", self.grid_size, "mask"),
                "mask_lidar": check_array(arrays["mask_lidar"], path, "mask_lidar", self.grid_size, "mask")}

    def raw_images(self, index: int) -> np.ndarray:
        """uint8 (N, H, W, 3) camera images at the network input size: ``sample["raw_images"]`` without the
        normalisation, lidar2img and targets (for pseudo-mask precomputation)."""
        images = [read_rgb(p) for p in self.frames[index].image_paths]
        return resize_images(images, self.image_size or (images[0].shape[0], images[0].shape[1]))

    def sample_token(self, index: int) -> str:
        return self.frames[index].sample_token

    def __getitem__(self, index: int) -> dict:
        f = self.frames[index]
        images = [read_rgb(p) for p in f.image_paths]
        size = self.image_size or (images[0].shape[0], images[0].shape[1])
        pre = preprocess_camera_set(images, f.intrinsics, f.cam2ego, size)
        scale = [np.diag([size[1] / im.shape[1], size[0] / im.shape[0], 1.0]) for im in images]
        item = {
            "images": pre.images, "lidar2img": pre.lidar2img,
            "ego2global": torch.from_numpy(f.ego2global.copy()), "timestamp": f.timestamp,
            "scene": f.scene, "frame_index": f.frame_index, "sample_token": f.sample_token,
            "raw_images": pre.raw,
            "intrinsics": torch.from_numpy(np.stack([S @ K for S, K in zip(scale, f.intrinsics)]).astype(np.float32)),
            "cam2ego": torch.from_numpy(np.stack(f.cam2ego)),
        }
        if self.load_gt:
            item.update({k: torch.from_numpy(v) for k, v in self.load_targets(index).items()})
        return item
