"""Vectorised ray casting of a box scene for the synthetic sample (docs/architecture.md "Synthetic sample").

Everything is in the current ego frame. The ground is the plane z = ``ground_z``; boxes are axis-aligned.
``render_boxes`` finds, per pixel of a pinhole view, the first box hit (exact slab test, only for the pixels
inside each box's projected bounding rectangle). ``VisibilityTable`` implements the Occ3D visibility rule --
a voxel is observed when the ray from the sensor to its centre enters it before hitting anything else --
using the view's per-pixel box ids as candidates, the voxel's own box and the analytic ground plane.
Pixel centres are at integer coordinates (OpenCV convention): pixel (row r, col c) looks along K^-1 [c, r, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR = 0.05   # metres, near plane for box projection
EPS = 1e-3    # metres, tolerance of the visibility comparison
_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


@dataclass
class PinholeView:
    """A pinhole sensor: intrinsics of its image, optical frame -> ego transform, image size."""

    name: str
    K: np.ndarray        # (3, 3)
    cam2ego: np.ndarray  # (4, 4)
    height: int
    width: int

    @property
    def origin(self) -> np.ndarray:
        return self.cam2ego[:3, 3]

    def pixel_dirs(self) -> np.ndarray:
        """Unit ray directions in the ego frame, float64 (H, W, 3), through integer pixel coordinates."""
        v, u = np.meshgrid(np.arange(self.height, dtype=np.float64), np.arange(self.width, dtype=np.float64),
                           indexing="ij")
        pix = np.stack([u, v, np.ones_like(u)], axis=-1)           # (H, W, 3)
        d = pix @ np.linalg.inv(self.K).T @ self.cam2ego[:3, :3].T  # camera -> ego rotation
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ego points (N, 3) -> (u (N,), v (N,), depth along the optical axis (N,))."""
        R, o, K = self.cam2ego[:3, :3], self.origin, self.K
        rel = [points[:, i] - o[i] for i in range(3)]
        x, y, z = (rel[0] * R[0, j] + rel[1] * R[1, j] + rel[2] * R[2, j] for j in range(3))  # R^T (p - o)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (K[0, 0] * x + K[0, 1] * y) / z + K[0, 2], K[1, 1] * y / z + K[1, 2], z


def _norm(v: np.ndarray) -> np.ndarray:
    """Row norms of (N, 3) vectors."""
    return np.sqrt(v[:, 0] ** 2 + v[:, 1] ** 2 + v[:, 2] ** 2)


def inverse(dirs: np.ndarray) -> np.ndarray:
    """Component-wise 1 / dirs as float32, with zero components replaced by a huge finite value."""
    d = np.asarray(dirs, dtype=np.float32)
    return (1.0 / np.where(d == 0.0, np.float32(1e-30), d)).astype(np.float32)


def slab(origin: np.ndarray, inv_dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray, with_axis: bool = False
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Ray / axis-aligned box intersection from ``inverse(dirs)``: (t_near, t_far, axis of the entry face).

    A ray hits when ``t_far >= max(t_near, 0)``; float32 arithmetic (t in the units of the directions).
    ``lo``/``hi`` are (3,) or per ray (N, 3)."""
    o = np.asarray(origin, dtype=np.float32)
    lo = np.asarray(lo, dtype=np.float32)
    hi = np.asarray(hi, dtype=np.float32)
    tn: np.ndarray | None = None
    tf: np.ndarray | None = None
    axis: np.ndarray | None = None
    for a in range(3):
        inv = inv_dirs[..., a]
        t1 = (lo[..., a] - o[a]) * inv
        t2 = (hi[..., a] - o[a]) * inv
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        if tn is None or tf is None:
            tn, tf = near, far
            axis = np.zeros(near.shape, dtype=np.int8) if with_axis else None
        else:
            if axis is not None:
                axis[near > tn] = a
            tn, tf = np.maximum(tn, near), np.minimum(tf, far)
    assert tn is not None and tf is not None
    return tn, tf, axis


def ground_hit(origin: np.ndarray, dirs: np.ndarray, ground_z: float) -> np.ndarray:
    """Distance along ``dirs`` (..., 3) to the plane z = ground_z; inf for rays that do not go down to it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ground_z - origin[2]) / dirs[..., 2]
    return np.where((dirs[..., 2] < 0) & (t > 0), t, np.inf)


def _pixel_rect(view: PinholeView, lo: np.ndarray, hi: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding pixel rectangle (r0, r1, c0, c1), end-exclusive, of a box clipped by the near plane."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    cam = (corners - view.origin) @ view.cam2ego[:3, :3]
    z = cam[:, 2]
    if z.max() < NEAR:
        return None
    pts = [cam[z >= NEAR]]
    if z.min() < NEAR:
        for i, j in _EDGES:
            if (z[i] - NEAR) * (z[j] - NEAR) < 0:
                s = (NEAR - z[i]) / (z[j] - z[i])
                pts.append((cam[i] + s * (cam[j] - cam[i]))[None])
    p = np.concatenate(pts) @ view.K.T
    u, v = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    c0, c1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, view.width)
    r0, r1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, view.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def render_boxes(view: PinholeView, inv_dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_dist: float = 150.0,
                 with_axis: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First box hit per pixel: depth float32 (H, W) (inf = none), box index int32 (H, W) (-1), entry-face axis
    int8 (H, W). ``lo``/``hi`` (K, 3) are the boxes in the ego frame, ``inv_dirs`` = inverse(view.pixel_dirs())."""
    H, W = view.height, view.width
    depth = np.full((H, W), np.inf, dtype=np.float32)
    index = np.full((H, W), -1, dtype=np.int32)
    axis = np.zeros((H, W), dtype=np.int8)
    o = view.origin
    nearest = np.linalg.norm(np.clip(o, lo, hi) - o, axis=1)
    for k in np.nonzero(nearest < max_dist)[0]:
        rect = _pixel_rect(view, lo[k], hi[k])
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        tn, tf, ax = slab(o, inv_dirs[r0:r1, c0:c1], lo[k], hi[k], with_axis)
        cur = depth[r0:r1, c0:c1]
        hit = (tf >= np.maximum(tn, 0.0)) & (tn < cur)
        if hit.any():
            cur[hit] = tn[hit]
            index[r0:r1, c0:c1][hit] = k
            if axis is not None and ax is not None:
                axis[r0:r1, c0:c1][hit] = ax[hit]
    return depth, index, axis


def first_box_hit(origin: np.ndarray, inv_dirs: np.ndarray, candidates: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> np.ndarray:
    """Distance float32 (N,) along the rays of ``inv_dirs`` to box ``candidates[i]`` (inf when -1 or missed)."""
    t = np.full(len(inv_dirs), np.inf, dtype=np.float32)
    has = np.nonzero(candidates >= 0)[0]
    if len(has):
        b = candidates[has]
        tn, tf, _ = slab(origin, inv_dirs[has], lo[b], hi[b])
        hit = tf >= np.maximum(tn, 0.0)
        t[has[hit]] = np.maximum(tn[hit], 0.0)
    return t


@dataclass
class RaySet:
    """Rays from a view's origin towards fixed target points (frame-independent part)."""

    pixel: np.ndarray     # int64 (M,) flat index of the nearest pixel of the target, -1 outside the view
    inv_dirs: np.ndarray  # float32 (M, 3) inverse unit directions
    t_target: np.ndarray  # float32 (M,) distance at which the ray enters its voxel
    t_ground: np.ndarray  # float32 (M,) distance to the ground plane along the ray (inf = none)

    @classmethod
    def toward(cls, view: PinholeView, targets: np.ndarray, t_entry: np.ndarray | None, ground_z: float,
               elevation_deg: tuple[float, float] | None) -> RaySet:
        """Rays to ``targets`` (M, 3); ``t_entry`` = where each ray enters its voxel (default: at the target)."""
        o = view.origin
        rel = targets - o
        dist = _norm(rel)
        d = rel / np.maximum(dist, 1e-9)[:, None]
        u, v, z = view.project(targets)
        c, r = np.round(u), np.round(v)
        ok = (z > NEAR) & (c >= 0) & (c < view.width) & (r >= 0) & (r < view.height)
        if elevation_deg is not None:
            el = np.degrees(np.arcsin(np.clip(d[:, 2], -1, 1)))
            ok &= (el >= elevation_deg[0]) & (el <= elevation_deg[1])
        t_target = dist if t_entry is None else t_entry
        t_ground = ground_hit(o, d, ground_z)
        ok &= t_target <= t_ground + EPS           # the ground plane alone already hides it
        pixel = np.where(ok, r * view.width + c, -1).astype(np.int64)
        return cls(pixel, inverse(d), t_target.astype(np.float32), t_ground.astype(np.float32))

    def subset(self, idx: np.ndarray) -> RaySet:
        return RaySet(self.pixel[idx], self.inv_dirs[idx], self.t_target[idx], self.t_ground[idx])

    def reaches(self, origin: np.ndarray, box_index: np.ndarray, own: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                idx: np.ndarray) -> np.ndarray:
        """bool (len(idx),): the ray reaches its voxel before any other surface. The blocking candidates are the
        box seen at the target's pixel, the voxel's own box ``own`` (-1 = none) and the ground plane."""
        pixel = self.pixel[idx]
        inside = pixel >= 0
        inv = self.inv_dirs[idx]
        cand = np.where(inside, box_index.reshape(-1)[np.maximum(pixel, 0)], -1)
        t_first = np.minimum(self.t_ground[idx], first_box_hit(origin, inv, cand, lo, hi))
        t_first = np.minimum(t_first, first_box_hit(origin, inv, own, lo, hi))
        return inside & (self.t_target[idx] <= t_first + EPS)


@dataclass
class VisibilityTable:
    """Frame-independent part of the visibility of a voxel grid from one view (the rig is fixed to the ego).

    Free voxels are tested with the ray to their centre; occupied voxels with the rays to the centres of their
    (up to three) faces that face the sensor, so that a thin layer (the ground) or a wall seen at a grazing
    angle is observed through the face the sensor actually sees. A face whose neighbour voxel is occupied
    cannot be reached, which skips the interior of every object."""

    view: PinholeView
    voxel: np.ndarray          # int64 (M,) flat voxel index of the candidates
    centre: RaySet
    faces: list[RaySet]
    neighbour: np.ndarray      # int64 (3, M) flat index of the voxel across each sensor-facing face, -1 = outside

    @classmethod
    def build(cls, view: PinholeView, centres: np.ndarray, shape: tuple[int, int, int], voxel_size: float,
              ground_z: float, elevation_deg: tuple[float, float] | None = None) -> VisibilityTable:
        """``centres`` float64 (N, 3) voxel centres in the ego frame, flat order of a grid of ``shape``."""
        # coarse pre-selection on the centres: in front, near the image (faces are within half a voxel)
        u, v, z = view.project(centres)
        margin = 2.0 + 0.5 * voxel_size * view.K[0, 0] / np.maximum(z, NEAR)
        pre = (z > NEAR) & (u > -margin) & (u < view.width - 1 + margin) & (v > -margin)
        pre &= (v < view.height - 1 + margin) & (centres[:, 2] + 0.5 * voxel_size >= ground_z - EPS)
        if elevation_deg is not None:
            rel = centres - view.origin
            sin_el = rel[:, 2] / _norm(rel)
            pre &= (sin_el > np.sin(np.radians(elevation_deg[0] - 1.0)))
            pre &= (sin_el < np.sin(np.radians(elevation_deg[1] + 1.0)))
        idx = np.nonzero(pre)[0]
        c = centres[idx]
        rel = c - view.origin
        dist = _norm(rel)
        # the ray through the centre of a cube enters it (s / 2) / max|d_i| before the centre
        big = np.maximum(np.maximum(np.abs(rel[:, 0]), np.abs(rel[:, 1])), np.abs(rel[:, 2]))
        t_entry = np.maximum(dist - 0.5 * voxel_size * dist / np.maximum(big, 1e-9), 0.0)
        centre = RaySet.toward(view, c, t_entry, ground_z, elevation_deg)
        ijk = np.stack(np.unravel_index(idx, shape), axis=1)
        faces, neighbour = [], []
        for a in range(3):
            step = np.sign(rel[:, a])
            target = c.copy()
            target[:, a] -= step * 0.5 * voxel_size                 # centre of the face turned to the sensor
            faces.append(RaySet.toward(view, target, None, ground_z, elevation_deg))
            nb = ijk.copy()
            nb[:, a] -= step.astype(np.int64)
            inside = np.all((nb >= 0) & (nb < np.asarray(shape)), axis=1)
            flat = np.ravel_multi_index(tuple(np.clip(nb, 0, np.asarray(shape) - 1).T), shape)
            neighbour.append(np.where(inside & (step != 0), flat, -1))
        keep = np.nonzero((centre.pixel >= 0) | np.any([f.pixel >= 0 for f in faces], axis=0))[0]
        return cls(view, idx[keep], centre.subset(keep), [f.subset(keep) for f in faces],
                   np.stack(neighbour)[:, keep])

    def visible(self, box_index: np.ndarray, instance: np.ndarray, occupied: np.ndarray, lo: np.ndarray,
                hi: np.ndarray) -> np.ndarray:
        """Flat indices of the voxels seen this frame. ``box_index`` (H, W) from ``render_boxes`` of this view,
        ``instance`` the flat box-instance grid (-1 = no box), ``occupied`` the flat bool occupancy grid,
        ``lo``/``hi`` the boxes (ego)."""
        o = self.view.origin
        occ = occupied[self.voxel]
        vis = np.zeros(len(self.voxel), dtype=bool)
        free_idx = np.nonzero(~occ)[0]
        vis[free_idx] = self.centre.reaches(o, box_index, np.full(len(free_idx), -1), lo, hi, free_idx)
        for face, nb in zip(self.faces, self.neighbour):
            open_face = occ & ((nb < 0) | ~occupied[np.maximum(nb, 0)])
            idx = np.nonzero(open_face & ~vis)[0]
            vis[idx] |= face.reaches(o, box_index, instance[self.voxel[idx]], lo, hi, idx)
        return self.voxel[vis]


def beam_hits(view: PinholeView, dirs: np.ndarray, box_index: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              ground_z: float) -> tuple[np.ndarray, np.ndarray]:
    """First surface along unit rays ``dirs`` (N, 3) from the view origin (rays outside the view: inf).

    Returns (distance (N,), box hit (N,), -1 for the ground or nothing)."""
    o = view.origin
    u, v, z = view.project(o + dirs)
    c, r = np.round(u), np.round(v)
    inside = (z > 0) & (c >= 0) & (c < view.width) & (r >= 0) & (r < view.height)
    cand = np.full(len(dirs), -1, dtype=np.int64)
    cand[inside] = box_index[r[inside].astype(np.int64), c[inside].astype(np.int64)]
    t_box = first_box_hit(o, inverse(dirs), cand, lo, hi)
    t_ground = np.where(inside, ground_hit(o, dirs, ground_z), np.inf).astype(np.float32)
    return np.minimum(t_box, t_ground), np.where(t_box < t_ground, cand, -1)
