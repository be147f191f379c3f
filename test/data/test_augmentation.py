"""Image augmentation: labelled voxels still project onto their class in augmented images (lidar2img consistent)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from protoocc_ros.classes import OCC3D_FREE_LABEL
from protoocc_ros.config import AugmentationConfig, ConfigError, load_config
from protoocc_ros.data.augmentation import (
    CameraAugmentation,
    affine_matrix,
    augment_camera_set,
    draw_camera_augmentation,
    is_enabled,
    photometric_distortion,
    warp_image,
    warp_label_grid,
)
from protoocc_ros.data.preprocessing import lidar2img_from, normalize_images
from protoocc_ros.data.synthetic.rig import nuscenes_cameras
from protoocc_ros.data.synthetic.sample import SampleConfig, nuscenes_scene, render_nuscenes_frame
from protoocc_ros.geometry import voxel_centers
from protoocc_ros.layouts import OCC3D_RANGE
from protoocc_ros.training.loader import TrainingSamples
from protoocc_ros.training.pseudo_masks import masks_on_grid

SIZE = (96, 176)  # (H, W) of the rendered cameras = network input


@pytest.fixture(scope="module")
def labelled_frame() -> dict:
    """A synthetic frame whose 'images' are its per-pixel class maps (class id in every channel)."""
    cfg = SampleConfig(image_size=SIZE)
    out = render_nuscenes_frame(cfg, nuscenes_scene(cfg, 1), 1, 3)
    classes = np.stack([np.repeat(c[..., None], 3, -1) for c in out.classes])  # (6, H, W, 3) uint8
    l2i = np.stack([lidar2img_from(v.K, v.cam2ego) for v in nuscenes_cameras(SIZE)]).astype(np.float32)
    return {"images": normalize_images(classes), "lidar2img": torch.from_numpy(l2i), "raw_images": classes,
            "ego2global": torch.eye(4, dtype=torch.float64), "timestamp": 1.53e9, "scene": "scene-0001",
            "frame_index": 3, "sample_token": "tok", "semantics": torch.from_numpy(out.labels.astype(np.int64)),
            "mask_camera": torch.from_numpy(out.mask_camera)}


class _One:
    def __init__(self, sample: dict) -> None:
        self.item = sample

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        return dict(self.item)


def _agreement(class_images: np.ndarray, valid: np.ndarray, lidar2img: np.ndarray, semantics: np.ndarray,
               mask_camera: np.ndarray) -> tuple[float, int]:
    """Fraction of occupied, camera-visible voxels whose centre projects onto a pixel of their own class."""
    sel = (semantics != OCC3D_FREE_LABEL) & mask_camera
    pts = np.c_[voxel_centers(OCC3D_RANGE, 0.4)[sel], np.ones(int(sel.sum()))].T  # (4, P)
    labels = semantics[sel]
    hits = total = 0
    h, w = class_images.shape[1:3]
    for img, ok_img, m in zip(class_images, valid, lidar2img):
        p = m.astype(np.float64) @ pts
        front = p[2] > 0.1
        u = np.rint(p[0, front] / p[2, front]).astype(int)
        v = np.rint(p[1, front] / p[2, front]).astype(int)
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        u, v, lab = u[inside], v[inside], labels[front][inside]
        keep = ok_img[v, u] > 0  # not in the black border a crop or rotation brings in
        hits += int((img[v[keep], u[keep], 0] == lab[keep]).sum())
        total += int(keep.sum())
    return hits / max(total, 1), total


@pytest.mark.parametrize("aug", [
    "train.augmentation.flip_prob=1.0",
    "train.augmentation.resize_range=[1.05,1.11]",
    "train.augmentation.resize_range=[0.9,0.94]",
    "train.augmentation.resize_range=[1.0,1.1]|train.augmentation.bottom_crop_range=[0.0,0.2]"
    "|train.augmentation.flip_prob=1.0|train.augmentation.rotate_deg=5.4",
])
def test_labelled_voxels_project_onto_their_class_in_augmented_images(labelled_frame: dict, aug: str) -> None:
    """Through the training loader: images warped, lidar2img updated, 3D targets unchanged, still consistent."""
    cfg = load_config("demo", ["dataset.image_size=[96,176]", "model.prototypes.num_prototypes=66",
                               "model.prototypes.optimization=false",
                               *aug.split("|")])
    out = TrainingSamples(_One(labelled_frame), cfg, store=None, keep_raw=True).sample(0, epoch=0)
    sem, mask = out["semantics"].numpy(), out["mask_camera"].numpy()
    assert torch.equal(out["semantics"], labelled_frame["semantics"])  # targets untouched
    ones = np.full(labelled_frame["raw_images"].shape[:3], 255, np.uint8)
    before, n = _agreement(labelled_frame["raw_images"], ones, labelled_frame["lidar2img"].numpy(), sem, mask)
    assert before > 0.9 and n > 3000  # the renderer's own consistency: the reference
    valid = np.stack([warp_image(o, _affine(labelled_frame, out, i)) for i, o in enumerate(ones)])
    after, _ = _agreement(out["raw_images"], valid, out["lidar2img"].numpy(), sem, mask)
    stale, _ = _agreement(out["raw_images"], valid, labelled_frame["lidar2img"].numpy(), sem, mask)
    assert after > before - 0.05, (before, after)
    assert stale < after - 0.1, (after, stale)  # a lidar2img left as it was would be caught
    assert not np.array_equal(out["raw_images"], labelled_frame["raw_images"])


def _affine(sample: dict, out: dict, i: int) -> np.ndarray:
    """The pixel map the loader applied to camera i, read back from lidar2img' = A4 · lidar2img."""
    a4 = out["lidar2img"][i].double().numpy() @ np.linalg.inv(sample["lidar2img"][i].double().numpy())
    return np.array([a4[0, :3], a4[1, :3], [0.0, 0.0, 1.0]])


def test_affine_map_moves_pixels_as_written() -> None:
    H, W = 10, 20
    flip = affine_matrix((H, W), flip=True)
    assert np.allclose(flip @ [0, 3, 1], [W - 1, 3, 1]) and np.allclose(flip @ [W - 1, 0, 1], [0, 0, 1])
    zoom = affine_matrix((H, W), 2.0, (5.0, 4.0))
    assert np.allclose(zoom @ [3, 2, 1], [1, 0, 1])
    img = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    assert np.array_equal(warp_image(img, flip, cv2.INTER_NEAREST), img[:, ::-1])
    assert np.array_equal(warp_image(img, np.eye(3)), img)


def test_pseudo_mask_grid_follows_the_image_transform() -> None:
    rng = np.random.default_rng(0)
    H, W, grid = 48, 80, (6, 10)
    labels = np.kron(rng.integers(0, 30, (6, 10)), np.ones((8, 8), np.int64))  # constant over each grid cell
    coarse = masks_on_grid(labels, grid)
    flip = affine_matrix((H, W), flip=True)
    assert np.array_equal(warp_label_grid(coarse, flip, (H, W)), masks_on_grid(labels[:, ::-1].copy(), grid))
    A = affine_matrix((H, W), 1.1, (3.0, 4.8))
    exact = masks_on_grid(warp_image(labels.astype(np.uint16), A, cv2.INTER_NEAREST).astype(np.int64), grid)
    assert (warp_label_grid(coarse, A, (H, W)) == exact).mean() > 0.8
    shrink = warp_label_grid(coarse, affine_matrix((H, W), 0.8, (0.0, -9.6)), (H, W))
    assert (shrink[0] == coarse.max() + 1).all()  # the padded top rows get a label of their own


def test_photometric_steps_and_identity_config() -> None:
    img = np.random.default_rng(1).integers(40, 200, (8, 8, 3), dtype=np.uint8)
    steps = {"brightness": 10.0, "contrast_first": True, "contrast": None, "saturation": None, "hue": None,
             "channels": None}
    assert np.array_equal(photometric_distortion(img, steps), img + 10)
    swapped = photometric_distortion(img, {**steps, "brightness": None, "channels": [2, 1, 0]})
    assert np.array_equal(swapped, img[..., ::-1])
    hue = photometric_distortion(img, {**steps, "brightness": None, "hue": 360.0})
    assert np.abs(hue.astype(int) - img).max() <= 1  # a full turn of hue is the identity
    off = AugmentationConfig()
    assert not is_enabled(off)
    cam = draw_camera_augmentation(off, (8, 8), np.random.default_rng(0))
    assert isinstance(cam, CameraAugmentation) and cam.is_identity
    raw = img[None]
    same, l2i = augment_camera_set(raw, np.eye(4)[None], [cam])
    assert np.array_equal(same, raw) and np.array_equal(l2i[0], np.eye(4))


def test_augmentation_values_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.augmentation\.resize_range"):
        load_config("demo", ["train.augmentation.resize_range=[1.2,1.0]"])
    with pytest.raises(ConfigError, match=r"train\.augmentation\.flip_prob"):
        load_config("demo", ["train.augmentation.flip_prob=1.5"])
