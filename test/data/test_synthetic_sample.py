"""Round trip generator -> files -> loaders on the session's tiny synthetic sample (both formats)."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import view_points

from protoocc_ros.classes import IGNORE_LABEL, kitti_ssc_lut
from protoocc_ros.data import build_dataset
from protoocc_ros.data.occ3d_nuscenes import Occ3DNuScenesDataset
from protoocc_ros.data.preprocessing import lidar2img_from
from protoocc_ros.data.semantic_kitti import SemanticKittiDataset
from protoocc_ros.data.synthetic import world as W
from protoocc_ros.data.synthetic.rig import KITTI_VELO_HEIGHT, kitti_camera, nuscenes_cameras
from protoocc_ros.data.synthetic.sample import kitti_scene, nuscenes_scene, render_nuscenes_frame
from protoocc_ros.geometry import invert_transform, make_transform, transform_points, voxel_centers

RANGE = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)
KITTI_RANGE = (0.0, -25.6, -2.0, 51.2, 25.6, 4.4)


def test_nuscenes_devkit_opens_the_dataroot(synthetic_dataroot, synthetic_sample_config):
    nusc = NuScenes("v1.0-mini", str(synthetic_dataroot), verbose=False)
    cfg = synthetic_sample_config
    assert [s["name"] for s in nusc.scene] == ["scene-0001", "scene-0002"]
    assert len(nusc.sample) == 2 * cfg.frames_per_scene
    for sample in nusc.sample:
        assert set(sample["data"]) == {v.name for v in nuscenes_cameras(cfg.image_size)} | {"LIDAR_TOP"}
        for token in sample["data"].values():
            assert Path(nusc.get_sample_data_path(token)).is_file()
    cloud = LidarPointCloud.from_file(nusc.get_sample_data_path(nusc.sample[0]["data"]["LIDAR_TOP"]))
    assert cloud.points.shape[0] == 4 and cloud.points.shape[1] > 1000
    assert len(nusc.sample_annotation) > 0 and all(a["num_lidar_pts"] >= 0 for a in nusc.sample_annotation)


def test_devkit_and_loader_agree_on_camera_geometry(synthetic_dataroot):
    """Annotation centres projected by the devkit (get_sample_data) land where the loader's lidar2img puts them."""
    nusc = NuScenes("v1.0-mini", str(synthetic_dataroot), verbose=False)
    ds = Occ3DNuScenesDataset(synthetic_dataroot, "v1.0-mini")
    checked = 0
    for i, frame in enumerate(ds.frames):
        sample = nusc.get("sample", frame.sample_token)
        item = ds[i]
        for c, cam in enumerate(ds.cameras):
            _, boxes, K = nusc.get_sample_data(sample["data"][cam])
            for box in boxes:
                ann = nusc.get("sample_annotation", box.token)
                uv_devkit = view_points(box.center[:, None], K, normalize=True)[:2, 0]
                ego = transform_points(invert_transform(frame.ego2global), np.asarray(ann["translation"]))
                p = item["lidar2img"][c].double().numpy() @ np.append(ego, 1.0)
                np.testing.assert_allclose(p[:2] / p[2], uv_devkit, atol=1e-3)
                checked += 1
    assert checked > 10


def test_occ3d_loader_returns_what_the_generator_rendered(synthetic_dataroot, synthetic_sample_config):
    cfg = synthetic_sample_config
    ds = Occ3DNuScenesDataset(synthetic_dataroot, "v1.0-mini", split="val")
    assert ds.scenes() == ["scene-0002"] and ds.scene_indices("scene-0002") == [0, 1, 2]
    scene = nuscenes_scene(cfg, 2)
    for f in range(cfg.frames_per_scene):
        item = ds[f]
        out = render_nuscenes_frame(cfg, scene, 2, f)
        np.testing.assert_array_equal(item["semantics"].numpy(), out.labels)
        np.testing.assert_array_equal(item["mask_camera"].numpy(), out.mask_camera)
        np.testing.assert_array_equal(item["mask_lidar"].numpy(), out.mask_lidar)
        jpeg_error = np.abs(item["raw_images"].astype(float) - np.stack(out.images).astype(float)).mean()
        assert jpeg_error < 4.0
        expected = scene.road_to_global() @ make_transform(None, scene.ego_positions[f])
        np.testing.assert_allclose(item["ego2global"].numpy(), expected, atol=1e-9)
        assert item["frame_index"] == f and item["scene"] == "scene-0002"
    views = nuscenes_cameras(cfg.image_size)
    np.testing.assert_allclose(item["lidar2img"].numpy(), np.stack([lidar2img_from(v.K, v.cam2ego) for v in views]),
                               rtol=1e-5, atol=1e-3)
    assert ds[1]["timestamp"] - ds[0]["timestamp"] == pytest.approx(0.5)
    small = Occ3DNuScenesDataset(synthetic_dataroot, "v1.0-mini", scenes=["scene-0001"], image_size=(48, 88))
    assert small[0]["images"].shape == (6, 3, 48, 88) and small[0]["raw_images"].shape == (6, 48, 88, 3)


def _nearest_class_image(item: dict, c: int, grid_shape: tuple[int, int, int]) -> np.ndarray:
    """Per pixel of camera ``c``: the class of the nearest camera-visible occupied voxel (z-buffer)."""
    sem, vis = item["semantics"].numpy(), item["mask_camera"].numpy()
    occ = vis & (sem != 17)
    pts = voxel_centers(RANGE, 0.4)[occ] + [0.0, 0.0, 0.2]
    p = np.c_[pts, np.ones(len(pts))] @ item["lidar2img"][c].double().numpy().T
    H, Wd = item["raw_images"].shape[1:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = np.round(p[:, 0] / p[:, 2]).astype(int), np.round(p[:, 1] / p[:, 2]).astype(int)
    ok = (p[:, 2] > 0.1) & (u >= 0) & (u < Wd) & (v >= 0) & (v < H)
    order = np.argsort(-p[ok, 2])                       # far first, near ones overwrite
    out = np.full((H, Wd), 255, dtype=np.int64)
    out[v[ok][order], u[ok][order]] = sem[occ][ok][order]
    return out


def assert_class_colours(mean: dict[int, np.ndarray], car: int, vegetation: int, road: int, sidewalk: int) -> None:
    """The synthetic appearance of the classes: blue cars, green vegetation, grey road, light sidewalk."""
    r, g, b = mean[car]
    assert b > r + 30 and b > g + 20, mean[car]
    r, g, b = mean[vegetation]
    assert g > r + 15 and g > b + 15, mean[vegetation]
    assert np.ptp(mean[road]) < 25 and mean[road].mean() < 120, mean[road]
    assert mean[sidewalk].mean() > mean[road].mean() + 40, (mean[sidewalk], mean[road])


def test_labels_on_disk_agree_with_images_on_disk(synthetic_dataroot):
    """Through the loader's lidar2img, voxels of a class land on pixels that look like that class."""
    ds = Occ3DNuScenesDataset(synthetic_dataroot, "v1.0-mini")
    colours: dict[int, list[np.ndarray]] = {}
    for i in range(len(ds)):
        item = ds[i]
        for c in range(len(ds.cameras)):
            cls = _nearest_class_image(item, c, ds.grid_size)
            for k in (W.CAR, W.VEGETATION, W.ROAD, W.SIDEWALK, W.MANMADE):
                colours.setdefault(k, []).append(item["raw_images"][c][cls == k].reshape(-1, 3))
    count = {k: sum(len(a) for a in v) for k, v in colours.items()}
    assert min(count.values()) > 50, count
    assert_class_colours({k: np.concatenate(v).astype(float).mean(axis=0) for k, v in colours.items()},
                         car=W.CAR, vegetation=W.VEGETATION, road=W.ROAD, sidewalk=W.SIDEWALK)


def test_kitti_loader_returns_what_the_generator_built(synthetic_kitti_root, synthetic_sample_config):
    cfg = synthetic_sample_config
    ds = SemanticKittiDataset(synthetic_kitti_root, split="val")
    assert ds.scenes() == ["08"] and len(ds) == cfg.kitti_frames
    assert SemanticKittiDataset(synthetic_kitti_root, split="train").scenes() == ["00"]
    item = ds[1]
    sem = item["semantics"].numpy()
    # the official decoding of the files (semantic-kitti-api evaluate_completion.py)
    stem = synthetic_kitti_root / "sequences" / "08" / "voxels" / "000001"
    raw = np.fromfile(f"{stem}.label", dtype=np.uint16)
    official = kitti_ssc_lut()[raw].astype(np.int64)
    official[np.unpackbits(np.fromfile(f"{stem}.invalid", dtype=np.uint8)) == 1] = IGNORE_LABEL
    np.testing.assert_array_equal(sem.reshape(-1), official)
    # valid voxels carry the labels of the generator's scene, voxelised in the velodyne frame
    scene = kitti_scene(cfg, "08")
    ego = scene.ego_positions[1] + [0.0, 0.0, KITTI_VELO_HEIGHT]
    labels, _ = W.voxelize(scene, 1, np.asarray(KITTI_RANGE[:3]) + ego, (256, 256, 32), 0.2,
                           scene.boxes.kitti_raw(), dict(W.KITTI_RAW), 0, np.uint16)
    valid = sem != IGNORE_LABEL
    assert 0.1 < valid.mean() < 0.9
    np.testing.assert_array_equal(sem[valid], kitti_ssc_lut()[labels][valid])
    view, P2, Tr = kitti_camera(cfg.kitti_image_size)
    np.testing.assert_allclose(item["lidar2img"][0].numpy(), np.vstack([P2, [0, 0, 0, 1]]) @ Tr, atol=1e-3)
    np.testing.assert_allclose(item["cam2ego"][0].numpy(), view.cam2ego, atol=1e-9)
    motion = invert_transform(ds[0]["ego2global"].numpy()) @ item["ego2global"].numpy()
    np.testing.assert_allclose(motion[:3, 3], scene.ego_positions[1] - scene.ego_positions[0], atol=1e-6)
    # through lidar2img, the nearest valid occupied voxels of the classes land on pixels of their colour
    occ = valid & (sem != 0)
    pts = voxel_centers(KITTI_RANGE, 0.2)[occ] + [0.0, 0.0, 0.1]   # top faces
    p = np.c_[pts, np.ones(len(pts))] @ item["lidar2img"][0].double().numpy().T
    H, Wd = item["raw_images"].shape[1:3]
    u, v = np.round(p[:, 0] / p[:, 2]).astype(int), np.round(p[:, 1] / p[:, 2]).astype(int)
    ok = (p[:, 2] > 0.1) & (u >= 0) & (u < Wd) & (v >= 0) & (v < H)
    order = np.argsort(-p[ok, 2])
    cls = np.full((H, Wd), 255)
    cls[v[ok][order], u[ok][order]] = sem[occ][ok][order]
    image = item["raw_images"][0]
    assert_class_colours({k: image[cls == k].astype(float).mean(axis=0) for k in (1, 15, 9, 11)},
                         car=1, vegetation=15, road=9, sidewalk=11)


def test_build_dataset_reads_the_config(synthetic_dataroot, synthetic_kitti_root):
    from protoocc_ros.config import load_config

    cfg = load_config("demo", [f"dataset.dataroot={synthetic_dataroot}"])
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert train.scenes() == ["scene-0001"] and val.scenes() == ["scene-0002"]
    assert train[0]["images"].shape == (6, 3, *cfg.dataset.image_size)
    explicit = types.SimpleNamespace(dataset=types.SimpleNamespace(
        kind="occ3d", dataroot=str(synthetic_dataroot), version="v1.0-mini", cameras=["CAM_FRONT", "CAM_BACK"],
        image_size=[32, 64], point_cloud_range=list(RANGE), voxel_size=0.4, grid_size=[200, 200, 16],
        train_split=["scene-0002"], val_split="val"))
    ds = build_dataset(explicit, "train")
    assert ds.scenes() == ["scene-0002"] and ds[0]["images"].shape == (2, 3, 32, 64)
    kitti = types.SimpleNamespace(dataset=types.SimpleNamespace(
        kind="kitti", dataroot=str(synthetic_kitti_root), image_size=[40, 128], point_cloud_range=list(KITTI_RANGE),
        voxel_size=0.2, grid_size=[256, 256, 32], train_split="train", val_split=["08"]))
    assert build_dataset(kitti, "val").scenes() == ["08"]
    assert build_dataset(kitti, "train")[0]["images"].shape == (1, 3, 40, 128)
