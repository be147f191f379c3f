"""Training-time image augmentation of a camera set with lidar2img kept consistent (BEVFormer / PanoOcc recipe).

The paper trains on top of PanoOcc/BEVFormer, whose training pipelines distort every camera image
photometrically (mmdet's ``PhotoMetricDistortion``, in BEVFormer's multi-view form) and, in the BEVDet /
PanoOcc ``ResizeCropFlipImage`` form, resize, crop and flip it. Here every camera draws its own parameters:

1. photometric (on float 0..255, RGB): brightness ``+U(±δ_b)`` (p = ½); contrast ``×U(c)`` (p = ½) either
   before or after the HSV step; saturation ``×U(s)`` (p = ½) and hue ``+U(±δ_h)`` degrees (p = ½) in HSV;
   a random channel permutation (p = ½); values are clipped to 0..255 before the HSV step and at the end
   (the result is kept as uint8, mmdet leaves them unclipped).
2. geometric: one affine map ``A`` of pixel coordinates (pixel centres at integers, docs/architecture.md):
   scale by ``s ~ U(resize_range)``, crop the network input size back out (column offset
   ``U(0, max(0, sW - W))``, row offset ``(1 - U(bottom_crop_range))·sH - H``: the bottom is kept), flip
   horizontally (``u -> W - 1 - u``) with ``flip_prob``, rotate by ``U(±rotate_deg)`` about the image centre.
   The image is resampled with ``cv2.warpAffine`` (bilinear, black outside) and
   ``lidar2img' = A4 · lidar2img`` with ``A4 = [[A, 0], [0, 0, 1, 0], [0, 0, 0, 1]]`` acting on
   ``(u·d, v·d, d, 1)``, so every ego point still projects onto the pixel that shows it.

The 3D targets do not change (the augmentation is in image space; the ego frame is untouched), which
``test/data/test_augmentation.py`` checks by projecting labelled voxels into augmented images.
Pseudo masks stored on the pixel-feature grid follow the same map (:func:`warp_label_grid`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from protoocc_ros.config import AugmentationConfig


@dataclass(frozen=True)
class CameraAugmentation:
    """The parameters drawn for one camera image."""

    affine: np.ndarray           # (3, 3) pixel map of the network-input image: p_aug = A @ p
    photometric: dict | None     # drawn photometric steps (None = off)

    @property
    def is_identity(self) -> bool:
        return self.photometric is None and np.array_equal(self.affine, np.eye(3))


def is_enabled(cfg: AugmentationConfig) -> bool:
    """True when the configuration changes any image."""
    return (cfg.photometric or cfg.flip_prob > 0 or cfg.rotate_deg > 0 or list(cfg.resize_range) != [1.0, 1.0]
            or list(cfg.bottom_crop_range) != [0.0, 0.0])


def affine_matrix(image_size: tuple[int, int], scale: float = 1.0, crop: tuple[float, float] = (0.0, 0.0),
                  flip: bool = False, rotate_deg: float = 0.0) -> np.ndarray:
    """(3, 3) map of pixel coordinates: scale, subtract the crop origin (x, y), flip, rotate about the centre."""
    H, W = image_size
    A = np.array([[scale, 0.0, -crop[0]], [0.0, scale, -crop[1]], [0.0, 0.0, 1.0]])
    if flip:
        A = np.array([[-1.0, 0.0, W - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ A
    if rotate_deg:
        cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
        a = np.radians(rotate_deg)
        R = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        T, Ti = np.eye(3), np.eye(3)
        T[:2, 2], Ti[:2, 2] = (cx, cy), (-cx, -cy)
        A = T @ R @ Ti @ A
    return A


def draw_camera_augmentation(cfg: AugmentationConfig, image_size: tuple[int, int],
                             rng: np.random.Generator) -> CameraAugmentation:
    """Draw one camera's parameters (the number of draws is fixed, so streams stay aligned)."""
    H, W = image_size
    u = rng.random(18)  # every draw of this camera, used or not
    s = cfg.resize_range[0] + (cfg.resize_range[1] - cfg.resize_range[0]) * u[0]
    crop_x = max(0.0, s * W - W) * u[1]
    bottom = cfg.bottom_crop_range[0] + (cfg.bottom_crop_range[1] - cfg.bottom_crop_range[0]) * u[2]
    crop_y = (1.0 - bottom) * s * H - H
    flip = bool(u[3] < cfg.flip_prob)
    rot = (2.0 * u[4] - 1.0) * cfg.rotate_deg
    photometric = None
    if cfg.photometric:
        lo_c, hi_c = cfg.contrast_range
        lo_s, hi_s = cfg.saturation_range
        photometric = {
            "brightness": float((2.0 * u[6] - 1.0) * cfg.brightness_delta) if u[5] < 0.5 else None,
            "contrast_first": bool(u[7] < 0.5),
            "contrast": float(lo_c + (hi_c - lo_c) * u[9]) if u[8] < 0.5 else None,
            "saturation": float(lo_s + (hi_s - lo_s) * u[11]) if u[10] < 0.5 else None,
            "hue": float((2.0 * u[13] - 1.0) * cfg.hue_delta) if u[12] < 0.5 else None,
            "channels": [int(c) for c in np.argsort(u[15:18])] if cfg.channel_swap and u[14] < 0.5 else None,
        }
    return CameraAugmentation(affine_matrix(image_size, s, (crop_x, crop_y), flip, rot), photometric)


def photometric_distortion(image: np.ndarray, p: dict) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> distorted uint8 (steps of mmdet's PhotoMetricDistortion, see module docstring)."""
    img = image.astype(np.float32)
    if p["brightness"] is not None:
        img += np.float32(p["brightness"])
    if p["contrast_first"] and p["contrast"] is not None:
        img *= np.float32(p["contrast"])
    if p["saturation"] is not None or p["hue"] is not None:
        hsv = cv2.cvtColor(np.clip(img, 0, 255), cv2.COLOR_RGB2HSV)  # float: H in [0, 360), S in [0, 1]
        if p["saturation"] is not None:
            hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(p["saturation"]), 0.0, 1.0)
        if p["hue"] is not None:
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(p["hue"]), 360.0)
        img = np.asarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), dtype=np.float32)
    if not p["contrast_first"] and p["contrast"] is not None:
        img *= np.float32(p["contrast"])
    if p["channels"] is not None:
        img = img[..., p["channels"]]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def lidar2img_matrix(affine: np.ndarray) -> np.ndarray:
    """(4, 4) left factor of lidar2img for a pixel map ``affine`` (acts on (u·d, v·d, d, 1))."""
    A4 = np.eye(4)
    A4[:2, :3] = affine[:2, :3]
    return A4


def warp_image(image: np.ndarray, affine: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resample an (H, W, ...) image so that pixel p of the result shows pixel A^-1 p of the input."""
    if np.array_equal(affine, np.eye(3)):
        return image
    H, W = image.shape[:2]
    warped: np.ndarray = cv2.warpAffine(  # type: ignore[call-overload]  # OpenCV's stubs miss this overload
        np.ascontiguousarray(image), affine[:2].astype(np.float64), (W, H), flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped


def augment_camera_set(raw: np.ndarray, lidar2img: np.ndarray, params: list[CameraAugmentation]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 + (N, 4, 4) lidar2img -> augmented images and the matching lidar2img (float64)."""
    out = np.empty_like(raw)
    l2i = np.asarray(lidar2img, dtype=np.float64).copy()
    for i, p in enumerate(params):
        img = raw[i] if p.photometric is None else photometric_distortion(raw[i], p.photometric)
        out[i] = warp_image(img, p.affine)
        l2i[i] = lidar2img_matrix(p.affine) @ l2i[i]
    return out, l2i


def warp_label_grid(labels: np.ndarray, affine: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Labels on an (h, w) grid over an (H, W) image -> the labels of the image warped by ``affine``.

    Each output cell is sampled at the pixel the loss samples it at (``losses.resize_labels``: row
    ``floor((i + 0.5)·H/h)``), mapped back through A^-1 and rounded to the nearest pixel; it takes the label
    of the grid cell holding that pixel. Cells that map outside the image get a new label (max + 1).
    A flip maps the grid onto itself (exact for masks constant over each cell; otherwise the label may come
    from the mirrored pixel of the same cell); scale and rotation are nearest-neighbour approximations.
    """
    if np.array_equal(affine, np.eye(3)):
        return labels
    H, W = image_size
    h, w = labels.shape
    rows = np.floor((np.arange(h) + 0.5) * H / h)
    cols = np.floor((np.arange(w) + 0.5) * W / w)
    v, u = np.meshgrid(rows, cols, indexing="ij")
    src = np.linalg.inv(affine) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    us, vs = np.rint(src[0]), np.rint(src[1])
    inside = (us >= 0) & (us < W) & (vs >= 0) & (vs < H)
    ci = np.clip(np.floor(vs * h / H), 0, h - 1).astype(np.int64)
    cj = np.clip(np.floor(us * w / W), 0, w - 1).astype(np.int64)
    out = labels[ci, cj]
    out = np.where(inside, out, labels.max() + 1 if labels.size else 0)
    return out.reshape(h, w).astype(labels.dtype)
