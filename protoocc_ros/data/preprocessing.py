"""The single camera-image preprocessing shared by datasets, the node and evaluation (docs/architecture.md
"Conventions").

Resize every image to ``image_size`` (H, W), normalise with ImageNet mean/std and build
``lidar2img = diag(sx, sy, 1, 1) @ K4 @ inv(cam2ego)`` so that ego-frame points map to pixels of the resized
image (docs/architecture.md, Conventions).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from protoocc_ros.data.errors import DatasetError
from protoocc_ros.geometry import invert_transform

IMAGENET_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
IMAGENET_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
_MEAN_NCHW = torch.from_numpy(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD_NCHW = torch.from_numpy(IMAGENET_STD).view(1, 3, 1, 1)


@dataclass
class PreprocessedSet:
    """One synchronised camera set ready for the model."""

    images: torch.Tensor     # float32 (N, 3, H, W), ImageNet-normalised RGB
    lidar2img: torch.Tensor  # float32 (N, 4, 4), ego point -> resized pixel
    raw: np.ndarray          # uint8 (N, H, W, 3), resized RGB


def lidar2img_from(K: np.ndarray, cam2ego: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """``diag(sx, sy, 1, 1) @ K4 @ inv(cam2ego)`` as float64 (4, 4); ``scale`` = (sx, sy) of a resize."""
    K4 = np.eye(4)
    K4[:3, :3] = np.asarray(K, dtype=np.float64)
    S = np.diag([float(scale[0]), float(scale[1]), 1.0, 1.0])
    return S @ K4 @ invert_transform(np.asarray(cam2ego, dtype=np.float64))


def normalize_images(raw: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float32 tensor (N, 3, H, W) normalised with ImageNet mean/std."""
    n, h, w, _ = raw.shape
    x = torch.empty((n, 3, h, w), dtype=torch.float32)
    x.copy_(torch.from_numpy(np.ascontiguousarray(raw)).permute(0, 3, 1, 2))  # uint8 -> float32, NHWC -> NCHW
    # the same float32 operations as (raw - mean) / std in numpy, in place (4x faster than numpy's temporaries)
    return x.sub_(_MEAN_NCHW).div_(_STD_NCHW)


def _check_inputs(images: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray], cam2ego: Sequence[np.ndarray],
                  image_size: tuple[int, int]) -> None:
    if not (len(images) == len(intrinsics) == len(cam2ego)) or len(images) == 0:
        raise DatasetError(f"camera set: got {len(images)} images, {len(intrinsics)} intrinsics and "
                           f"{len(cam2ego)} cam2ego transforms; expected the same non-zero number of each")
    if len(image_size) != 2 or min(int(s) for s in image_size) <= 0:
        raise DatasetError(f"image_size {tuple(image_size)!r}: expected (height, width) with positive sizes")
    for i, (img, K, T) in enumerate(zip(images, intrinsics, cam2ego)):
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise DatasetError(f"camera {i}: image has dtype {img.dtype} and shape {img.shape}; "
                               "expected uint8 (H, W, 3) RGB")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise DatasetError(f"camera {i}: intrinsics {K.tolist()} are not a finite 3x3 matrix with positive "
                               "focal lengths")
        T = np.asarray(T, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all() or not np.allclose(T[3], [0, 0, 0, 1]):
            raise DatasetError(f"camera {i}: cam2ego {T.tolist()} is not a finite 4x4 rigid transform")


def resize_images(images: Sequence[np.ndarray], image_size: tuple[int, int]) -> np.ndarray:
    """N RGB images (uint8 (H_i, W_i, 3)) -> uint8 (N, H, W, 3) at ``image_size``: area filter when shrinking
    both sides, else bilinear (the resize of :func:`preprocess_camera_set`)."""
    H, W = int(image_size[0]), int(image_size[1])
    raw = np.empty((len(images), H, W, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        if (h, w) == (H, W):
            raw[i] = img
        else:
            interp = cv2.INTER_AREA if (h > H and w > W) else cv2.INTER_LINEAR
            raw[i] = cv2.resize(np.ascontiguousarray(img), (W, H), interpolation=interp)
    return raw


def preprocess_camera_set(images: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray],
                          cam2ego: Sequence[np.ndarray], image_size: tuple[int, int]) -> PreprocessedSet:
    """Resize + normalise N RGB images (uint8 (H_i, W_i, 3)) and compute lidar2img for ``image_size`` (H, W).

    ``intrinsics`` are the 3x3 K of the images as given; ``cam2ego`` the 4x4 optical frame -> ego transforms.
    """
    _check_inputs(images, intrinsics, cam2ego, image_size)
    H, W = int(image_size[0]), int(image_size[1])
    raw = resize_images(images, (H, W))
    l2i = np.empty((len(images), 4, 4), dtype=np.float32)
    for i, (img, K, T) in enumerate(zip(images, intrinsics, cam2ego)):
        h, w = img.shape[:2]
        l2i[i] = lidar2img_from(K, T, (W / w, H / h))
    return PreprocessedSet(images=normalize_images(raw), lidar2img=torch.from_numpy(l2i), raw=raw)
