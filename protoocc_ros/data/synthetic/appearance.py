"""Colours, textures and shading of the synthetic camera images (docs/architecture.md "Data": colour = class of the
first hit).

Each class has its own base colour and a procedural texture (lane markings, paving tiles, windows, leaves,
stripes ...) so that a small CNN can tell the classes apart; faces are shaded by their normal, far surfaces
fade into the sky colour, and every image gets an exposure change and sensor noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protoocc_ros.data.synthetic import world as W

SUN = np.array([0.35, 0.25, 0.90]) / np.linalg.norm([0.35, 0.25, 0.90])
HORIZON = np.array([205.0, 220.0, 235.0])
ZENITH = np.array([100.0, 150.0, 215.0])
GROUND_COLORS = {W.ROAD: (78, 78, 84), W.OTHER_FLAT: (150, 82, 66), W.SIDEWALK: (188, 182, 170),
                 W.TERRAIN: (128, 118, 68)}
WHITE = np.array([235.0, 235.0, 228.0])
GLASS = np.array([42.0, 52.0, 66.0])
TYRE = np.array([25.0, 25.0, 28.0])
SKIN = np.array([225.0, 185.0, 150.0])
TROUSERS = np.array([50.0, 52.0, 85.0])
ROOF = np.array([112.0, 106.0, 100.0])
WINDOW = np.array([72.0, 88.0, 112.0])


class Noise:
    """Tileable value noise from a seeded 256 x 256 random tile, bilinear."""

    def __init__(self, seed: int) -> None:
        self.tile = np.random.default_rng(seed).random((256, 256))

    def __call__(self, a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
        ga, gb = a / scale, b / scale
        ia, ib = np.floor(ga), np.floor(gb)
        fa, fb = ga - ia, gb - ib
        fa, fb = fa * fa * (3 - 2 * fa), fb * fb * (3 - 2 * fb)
        i0, j0 = ia.astype(np.int64) & 255, ib.astype(np.int64) & 255
        i1, j1 = (i0 + 1) & 255, (j0 + 1) & 255
        t = self.tile
        top = t[i0, j0] * (1 - fb) + t[i0, j1] * fb
        bot = t[i1, j0] * (1 - fb) + t[i1, j1] * fb
        return top * (1 - fa) + bot * fa

    def fractal(self, a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
        return 0.5 * self(a, b, scale) + 0.3 * self(a + 17.3, b - 9.1, scale / 2) + 0.2 * self(a, b, scale / 4)


@dataclass
class Hits:
    """What one view sees: per pixel first surface, in the ego frame and the road frame."""

    dirs: np.ndarray     # (H, W, 3) unit rays (ego)
    t: np.ndarray        # (H, W) distance to the first surface (inf = sky)
    box: np.ndarray      # (H, W) box index or -1
    axis: np.ndarray     # (H, W) entry-face axis of the box hit
    world: np.ndarray    # (H, W, 3) hit point in the road frame
    ground: np.ndarray   # (H, W) bool, hit is the ground
    box_lo: np.ndarray   # (K, 3) lower corners of the boxes at this frame (road frame)


def class_image(hits: Hits, scene: W.Scene) -> np.ndarray:
    """uint8 (H, W) Occ3D class of the surface seen by every pixel; 255 for the sky."""
    out = np.full(hits.t.shape, 255, dtype=np.uint8)
    out[hits.ground] = scene.ground.lookup(hits.world[hits.ground, 0], hits.world[hits.ground, 1])
    boxed = hits.box >= 0
    out[boxed] = scene.boxes.cls[hits.box[boxed]]
    return out


def _ground_colors(scene: W.Scene, cls: np.ndarray, x: np.ndarray, y: np.ndarray, noise: Noise) -> np.ndarray:
    col = np.zeros((*cls.shape, 3))
    for c, rgb in GROUND_COLORS.items():
        col[cls == c] = rgb
    n = noise.fractal(x, y, 0.8)
    col *= (0.82 + 0.36 * n)[:, None]
    ay = np.abs(y)
    road = cls == W.ROAD
    along = np.mod(x, 6.0) < 3.0
    edge = np.abs(ay - (scene.road_half_width - 0.25)) < 0.08
    marking = road & (((np.abs(y) < 0.08) & along) | edge) & (ay < scene.road_half_width)
    if scene.cross_street is not None:
        x0, x1 = scene.cross_street
        zebra = (np.abs(x - (x0 - 1.5)) < 1.2) | (np.abs(x - (x1 + 1.5)) < 1.2)
        marking |= road & zebra & (ay < scene.road_half_width) & (np.mod(y, 1.0) < 0.5)
    col[marking] = WHITE
    side = cls == W.SIDEWALK
    tiles = (np.mod(x, 1.2) < 0.06) | (np.mod(y, 1.2) < 0.06)
    col[side & tiles] *= 0.72
    flat = cls == W.OTHER_FLAT
    bricks = (np.mod(y, 0.3) < 0.04) | (np.mod(x + 0.3 * (np.mod(y, 0.6) < 0.3), 0.6) < 0.04)
    col[flat & bricks] *= 0.6
    terrain = cls == W.TERRAIN
    col[terrain] *= (0.75 + 0.5 * noise(x[terrain] * 3.1, y[terrain] * 3.1, 0.5))[:, None]
    return col


def _box_colors(scene: W.Scene, k: np.ndarray, local: np.ndarray, axis: np.ndarray, noise: Noise) -> np.ndarray:
    """Colours of box hits: ``k`` box ids, ``local`` hit point - box lo (N, 3), ``axis`` entry-face axis."""
    b = scene.boxes
    size = b.hi[k] - b.lo[k]
    col = b.color[k].astype(np.float64)
    cls, style = b.cls[k], b.style[k]
    z, zs = local[:, 2], size[:, 2]
    # coordinate along the face (horizontal) and the object's length axis
    along = np.where(axis == 0, local[:, 1], local[:, 0])
    length_axis = np.where(size[:, 0] >= size[:, 1], 0, 1)
    on_long_side = (axis != 2) & (axis != length_axis)
    u = np.take_along_axis(local, length_axis[:, None], 1)[:, 0] / np.take_along_axis(size, length_axis[:, None],
                                                                                    1)[:, 0]
    top = axis == 2

    vehicle = np.isin(cls, [W.CAR, W.TRUCK, W.BUS])
    win = vehicle & ~top & (z > 0.5 * zs) & (z < 0.88 * zs)
    win &= np.where(cls == W.BUS, (u > 0.05) & (u < 0.95), (u > 0.2) & (u < 0.8)) | ~on_long_side
    win &= np.where(cls == W.TRUCK, ~on_long_side | (np.abs(u - 0.5) > 0.3), True)
    col[win] = GLASS
    wheels = vehicle & on_long_side & (z < 0.38) & ((np.abs(u - 0.18) < 0.1) | (np.abs(u - 0.82) < 0.1))
    col[wheels] = TYRE
    ribs = (cls == W.TRUCK) & on_long_side & (np.mod(along, 0.8) < 0.12) & ~win & ~wheels
    col[ribs] *= 0.7

    ped = cls == W.PEDESTRIAN
    col[ped & (z > zs - 0.3)] = SKIN
    col[ped & (z < 0.45 * zs)] = TROUSERS

    col[(cls == W.BARRIER) & (np.mod(along + z, 0.8) < 0.4)] = WHITE
    col[(cls == W.CONE) & (z > 0.35) & (z < 0.5)] = WHITE

    bld = (cls == W.MANMADE) & ~top
    fz, fa = np.mod(z, 3.0), np.mod(along + 0.7 * style, 2.8)
    window = bld & (fz > 1.0) & (fz < 2.2) & (fa > 0.8) & (fa < 2.0)
    col[window] = WINDOW * (0.9 + 0.3 * noise(along[window], z[window], 2.0))[:, None]
    col[(cls == W.MANMADE) & top] = ROOF
    col[bld & ~window] *= (0.9 + 0.2 * noise(along[bld & ~window], z[bld & ~window], 1.5))[:, None]

    veg = cls == W.VEGETATION
    leaves = veg & (style != W.STYLE_TRUNK)
    n = noise.fractal(along[leaves] * 2.3 + local[leaves, 2 - (axis[leaves] == 2)], z[leaves] * 2.3, 0.35)
    col[leaves] *= (0.45 + 1.0 * n)[:, None]
    bark = veg & (style == W.STYLE_TRUNK)
    col[bark] *= (0.75 + 0.5 * noise(along[bark] * 8.0, z[bark], 0.6))[:, None]
    return col


def shade(hits: Hits, scene: W.Scene, noise: Noise, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 (H, W, 3) image of one view."""
    H, Wd = hits.t.shape
    img = np.empty((H, Wd, 3), dtype=np.float32)
    g = hits.ground
    bx = hits.box >= 0
    sky = ~(g | bx)
    d = hits.dirs[sky]
    up = np.clip(d[:, 2], 0.0, 1.0)[:, None]
    img[sky] = HORIZON * (1 - up) + ZENITH * up + 12.0 * (noise(d[:, 0] * 40, d[:, 1] * 40 + d[:, 2] * 60, 3.0)[
        :, None] - 0.5)
    light = np.full((H, Wd), 0.55 + 0.45 * SUN[2], dtype=np.float32)  # ground normal = +z
    if g.any():
        wx, wy = hits.world[g, 0], hits.world[g, 1]
        img[g] = _ground_colors(scene, scene.ground.lookup(wx, wy), wx, wy, noise)
    if bx.any():
        k = hits.box[bx]
        img[bx] = _box_colors(scene, k, hits.world[bx] - hits.box_lo[k], hits.axis[bx], noise)
        ax = hits.axis[bx].astype(np.int64)
        facing = -np.sign(hits.dirs[bx][np.arange(len(k)), ax])     # normal = facing * e_axis
        light[bx] = 0.55 + 0.45 * np.clip(facing * SUN[ax], 0.0, 1.0)
    light[sky] = 1.0
    fog = np.where(sky, np.float32(0.0), 1.0 - np.exp(-np.minimum(hits.t, 1e4) / np.float32(140.0)))[..., None]
    img = img * (light[..., None] * (1 - fog)) + HORIZON.astype(np.float32) * fog
    img *= rng.uniform(0.92, 1.08)
    img += 3.0 * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)
