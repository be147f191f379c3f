"""Procedural driving scenes for the synthetic sample (docs/architecture.md "Data"): the scene *is* a set of
labelled boxes.

A scene is built in a road frame (x along the road, y left, z up) on the 0.4 m lattice of the Occ3D grid:
a flat ground layer (road, parking strip, sidewalk, terrain, cross street) whose surface is at z = +0.2 m,
and axis-aligned boxes (buildings, trees, parked and moving vehicles, pedestrians, barriers, cones) whose
faces lie on the lattice. The ego drives along the road by a whole number of voxels per frame, so every
frame's ground truth is an exact voxelisation of the same geometry the cameras ray-cast (``raycast.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protoocc_ros.layouts import OCC3D

VOXEL = OCC3D.voxel_size  # metres; lattice of the world (the Occ3D voxel)
GROUND_TOP = 0.2     # road-frame z of the ground surface; the ground layer is z in [-0.2, 0.2]
GROUND_BOTTOM = -0.2

# Occ3D ids used by the generator
BARRIER, BUS, CAR, PEDESTRIAN, CONE, TRUCK = 1, 3, 4, 7, 8, 10
ROAD, OTHER_FLAT, SIDEWALK, TERRAIN, MANMADE, VEGETATION = 11, 12, 13, 14, 15, 16
# raw SemanticKITTI ids per Occ3D class (trunks get 71 through the box style)
KITTI_RAW = {BARRIER: 51, BUS: 13, CAR: 10, PEDESTRIAN: 30, CONE: 81, TRUCK: 18, ROAD: 40, OTHER_FLAT: 44,
             SIDEWALK: 48, TERRAIN: 72, MANMADE: 50, VEGETATION: 70}
KITTI_TRUNK = 71

# box styles (appearance variants, see appearance.py)
STYLE_PLAIN, STYLE_TRUNK, STYLE_BUSH = 0, 1, 2

# nominal sizes in voxels (x length, y width, z levels)
SIZES = {CAR: (11, 5, 4), TRUCK: (20, 6, 8), BUS: (28, 7, 8)}


@dataclass
class Boxes:
    """K axis-aligned boxes in the road frame at frame 0; bounds in metres on the 0.4 m lattice."""

    lo: np.ndarray        # float64 (K, 3)
    hi: np.ndarray        # float64 (K, 3)
    cls: np.ndarray       # uint8 (K,) Occ3D class
    style: np.ndarray     # int16 (K,) appearance variant
    color: np.ndarray     # float32 (K, 3) base RGB 0..255
    velocity: np.ndarray  # int64 (K, 2) voxels per frame along x, y
    heading: np.ndarray   # float64 (K,) yaw in the road frame (for annotations)

    def __len__(self) -> int:
        return len(self.cls)

    def at_frame(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) float64 (K, 3) of all boxes at ``frame`` (moving boxes shifted by whole voxels)."""
        shift = np.zeros_like(self.lo)
        shift[:, :2] = self.velocity * (frame * VOXEL)
        return self.lo + shift, self.hi + shift

    def kitti_raw(self) -> np.ndarray:
        """uint16 (K,) raw SemanticKITTI id of every box."""
        raw = np.array([KITTI_RAW[int(c)] for c in self.cls], dtype=np.uint16)
        raw[self.style == STYLE_TRUNK] = KITTI_TRUNK
        return raw


@dataclass
class GroundMap:
    """Ground classes on the 0.4 m lattice of the road frame; outside the map the ground is terrain."""

    x0: float                 # metres, road-frame x of cell [0, :]
    y0: float
    classes: np.ndarray       # uint8 (Nx, Ny) Occ3D class

    def lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Occ3D ground class at road-frame points (any shape)."""
        ix = np.floor((x - self.x0) / VOXEL).astype(np.int64)
        iy = np.floor((y - self.y0) / VOXEL).astype(np.int64)
        inside = (ix >= 0) & (ix < self.classes.shape[0]) & (iy >= 0) & (iy < self.classes.shape[1])
        out = np.full(np.shape(x), TERRAIN, dtype=np.uint8)
        out[inside] = self.classes[ix[inside], iy[inside]]
        return out


@dataclass
class Scene:
    """One procedurally built scene: geometry, ego trajectory (road frame) and road-marking parameters."""

    name: str
    seed: int
    boxes: Boxes
    ground: GroundMap
    ego_positions: np.ndarray   # float64 (F, 3) road frame, z = 0
    road_half_width: float      # metres
    cross_street: tuple[float, float] | None  # x range of the cross street (metres) or None
    global_yaw: float           # road frame -> global: rotation about z, then translation
    global_offset: np.ndarray   # (3,)
    extras: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.ego_positions)

    def road_to_global(self) -> np.ndarray:
        """4x4 transform road frame -> global frame."""
        c, s = np.cos(self.global_yaw), np.sin(self.global_yaw)
        T = np.eye(4)
        T[:2, :2] = [[c, -s], [s, c]]
        T[:3, 3] = self.global_offset
        return T


class _Builder:
    """Places boxes without overlaps; all arguments in voxel units (x, y lattice; z levels above ground)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.rows: list[tuple] = []
        self.static: list[tuple[int, int, int, int, int, int]] = []

    def overlaps(self, box: tuple[int, int, int, int, int, int]) -> bool:
        if not self.static:
            return False
        s = np.asarray(self.static)
        b = np.asarray(box)
        return bool(np.any((s[:, 0] < b[1]) & (b[0] < s[:, 1]) & (s[:, 2] < b[3]) & (b[2] < s[:, 3])
                           & (s[:, 4] < b[5]) & (b[4] < s[:, 5])))

    def add(self, x0: int, x1: int, y0: int, y1: int, k0: int, k1: int, cls: int, color: tuple[float, ...],
            style: int = STYLE_PLAIN, velocity: tuple[int, int] = (0, 0), heading: float = 0.0,
            check: bool = True) -> bool:
        box = (x0, x1, y0, y1, k0, k1)
        if check and self.overlaps(box):
            return False
        if velocity == (0, 0):
            self.static.append(box)
        jitter = self.rng.uniform(0.85, 1.15)
        self.rows.append((box, cls, style, np.clip(np.asarray(color) * jitter, 0, 255), velocity, heading))
        return True

    def boxes(self) -> Boxes:
        b = np.array([r[0] for r in self.rows], dtype=np.float64).reshape(-1, 6)
        lo = np.stack([b[:, 0] * VOXEL, b[:, 2] * VOXEL, GROUND_TOP + b[:, 4] * VOXEL], axis=1)
        hi = np.stack([b[:, 1] * VOXEL, b[:, 3] * VOXEL, GROUND_TOP + b[:, 5] * VOXEL], axis=1)
        return Boxes(lo=lo, hi=hi, cls=np.array([r[1] for r in self.rows], dtype=np.uint8),
                     style=np.array([r[2] for r in self.rows], dtype=np.int16),
                     color=np.array([r[3] for r in self.rows], dtype=np.float32).reshape(-1, 3),
                     velocity=np.array([r[4] for r in self.rows], dtype=np.int64).reshape(-1, 2),
                     heading=np.array([r[5] for r in self.rows], dtype=np.float64))


# base colours (RGB) per class; instances vary in brightness, buildings pick from a palette
CAR_COLORS = [(35, 75, 190), (30, 95, 170), (55, 60, 185)]
BUILDING_COLORS = [(205, 190, 160), (190, 185, 180), (215, 200, 175), (175, 165, 150), (200, 175, 150)]
TRUCK_COLOR = (235, 150, 30)
BUS_COLOR = (230, 210, 45)
PEDESTRIAN_COLOR = (190, 45, 150)
BARRIER_COLOR = (205, 35, 35)
CONE_COLOR = (250, 110, 15)
CANOPY_COLOR = (45, 125, 40)
BUSH_COLOR = (35, 100, 35)
TRUNK_COLOR = (95, 65, 35)


def _vehicle(b: _Builder, cls: int, start: int, strip: tuple[int, int], along_x: bool = True,
             velocity: tuple[int, int] = (0, 0), heading: float = 0.0, check: bool = True) -> bool:
    """A vehicle from ``start`` along its length, centred across the lane ``strip`` [lo, hi) (voxels)."""
    L, Wd, Hk = SIZES[cls]
    color = {CAR: CAR_COLORS[b.rng.integers(len(CAR_COLORS))], TRUCK: TRUCK_COLOR, BUS: BUS_COLOR}[cls]
    w0 = strip[0] + (strip[1] - strip[0] - Wd) // 2
    if along_x:
        return b.add(start, start + L, w0, w0 + Wd, 0, Hk, cls, color, velocity=velocity, heading=heading,
                     check=check)
    return b.add(w0, w0 + Wd, start, start + L, 0, Hk, cls, color, velocity=velocity, heading=heading,
                 check=check)


def _tree(b: _Builder, x: int, y: int) -> None:
    trunk_k = int(b.rng.integers(5, 8))
    hw = int(b.rng.integers(2, 5))
    top = trunk_k + int(b.rng.integers(4, 8))
    canopy = (x - hw, x + hw + 1, y - hw, y + hw + 1, trunk_k, top)
    if b.overlaps(canopy) or b.overlaps((x, x + 1, y, y + 1, 0, trunk_k)):
        return
    b.add(x, x + 1, y, y + 1, 0, trunk_k, VEGETATION, TRUNK_COLOR, style=STYLE_TRUNK)
    b.add(*canopy, VEGETATION, CANOPY_COLOR)


def build_scene(name: str, seed: int, num_frames: int) -> Scene:
    """Build one deterministic scene from ``seed``: layout, objects, ego trajectory and global placement."""
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    speed = int(rng.integers(4, 9))                  # ego voxels per frame (3.2 .. 6.4 m/s at 2 Hz)
    travel = speed * (num_frames - 1)
    X0, X1 = -150, travel + 150                       # world x extent in voxels
    half = 10                                         # road half width (4 m), lanes at y = +-5
    cross = None
    if rng.random() < 0.5:
        cx = int(rng.integers(20, max(21, travel + 60)))
        cross = (cx, cx + 20)

    def in_cross(x0: int, x1: int) -> bool:
        return cross is not None and x0 < cross[1] + 2 and cross[0] - 2 < x1

    gx0, gy0 = X0 - 100, -130
    ground = np.full((X1 + 100 - gx0, 260), TERRAIN, dtype=np.uint8)
    ground[:, half - gy0 - 2 * half:half - gy0] = ROAD  # |y| < half

    for side in (1, -1):
        parking = 6 if rng.random() < 0.6 else 0
        walk = int(rng.integers(6, 10))
        setback = int(rng.integers(0, 8))
        inner_sw = half + parking                      # |y| where the sidewalk starts
        outer_sw = inner_sw + walk
        bzone = outer_sw + setback

        def ys(a: int, c: int, side: int = side) -> tuple[int, int]:  # |y| range [a, c) on this side -> y range
            return (a, c) if side > 0 else (-c, -a)

        y0, y1 = ys(half, inner_sw)
        ground[:, y0 - gy0:y1 - gy0] = OTHER_FLAT if parking else ROAD
        y0, y1 = ys(inner_sw, outer_sw)
        ground[:, y0 - gy0:y1 - gy0] = SIDEWALK

        # buildings along the side
        x = X0 + int(rng.integers(0, 20))
        while x < X1:
            length, depth = int(rng.integers(20, 61)), int(rng.integers(20, 41))
            if not in_cross(x, x + length):
                y0, y1 = ys(bzone + int(rng.integers(0, 5)), bzone + depth)
                b.add(x, x + length, y0, y1, 0, int(rng.integers(15, 41)), MANMADE,
                      BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))], style=int(rng.integers(0, 3)))
            gap = int(rng.integers(3, 26))
            if gap >= 8 and not in_cross(x + length, x + length + gap):  # a tree between buildings
                _tree(b, x + length + gap // 2, side * (bzone + int(rng.integers(2, 8))))
            x += length + gap
        # hedges in front of the buildings
        if setback >= 3:
            for _ in range(int(rng.integers(1, 5))):
                hx = int(rng.integers(X0, X1))
                if not in_cross(hx, hx + 20):
                    y0, y1 = ys(outer_sw + 1, outer_sw + setback - 1 if setback > 3 else outer_sw + 2)
                    b.add(hx, hx + int(rng.integers(5, 21)), y0, y1, 0, int(rng.integers(2, 4)), VEGETATION,
                          BUSH_COLOR, style=STYLE_BUSH)
        # street trees on the outer sidewalk edge
        x = X0 + int(rng.integers(0, 15))
        while x < X1:
            if rng.random() < 0.7 and not in_cross(x - 5, x + 5):
                _tree(b, x, side * (outer_sw - 1) if side > 0 else -(outer_sw - 1) - 1)
            x += int(rng.integers(15, 36))
        # parked vehicles (or a construction zone) in the parking strip
        if parking:
            x = X0 + int(rng.integers(0, 10))
            works = None
            if rng.random() < 0.35:
                w0 = int(rng.integers(X0 + 100, X1 - 40))
                works = (w0, w0 + int(rng.integers(20, 41)))
            strip = ys(half, half + parking)
            while x < X1:
                if works and x < works[1] and works[0] < x + 20:
                    for wx in range(works[0], works[1], 6):
                        y0, y1 = ys(half + 1, half + 2)
                        b.add(wx, wx + 5, y0, y1, 0, 2, BARRIER, BARRIER_COLOR)
                        cy0, _ = ys(half + 3 + int(rng.integers(0, 3)), half + 4)
                        b.add(wx + 2, wx + 3, cy0, cy0 + 1, 0, 2, CONE, CONE_COLOR)
                    x = works[1] + 2
                    works = None
                    continue
                cls = TRUCK if rng.random() < 0.2 else CAR
                if not in_cross(x, x + SIZES[cls][0]):
                    _vehicle(b, cls, x, strip, heading=float(rng.choice([0.0, np.pi])))
                x += SIZES[cls][0] + int(rng.integers(2, 14))
        elif rng.random() < 0.4:                       # cones along the road edge
            cx0 = int(rng.integers(X0 + 100, X1 - 40))
            for cx in range(cx0, cx0 + int(rng.integers(10, 30)), 4):
                y0, _ = ys(half - 1, half)
                b.add(cx, cx + 1, y0, y0 + 1, 0, 2, CONE, CONE_COLOR)
        # pedestrians: walkers on two strips of the sidewalk, standing ones further out
        for lane, vx in ((0, 1), (2, -1)):
            for _ in range(int(rng.integers(1, 5))):
                px = int(rng.integers(X0 + 50, X1 - 50))
                y0, y1 = ys(inner_sw + lane, inner_sw + lane + 2)
                b.add(px, px + 2, y0, y1, 0, int(rng.integers(4, 6)), PEDESTRIAN, PEDESTRIAN_COLOR,
                      velocity=(vx, 0), heading=0.0 if vx > 0 else np.pi, check=False)
        for _ in range(int(rng.integers(1, 5))):
            px = int(rng.integers(X0 + 50, X1 - 50))
            if walk >= 7:
                y0, y1 = ys(inner_sw + 4, inner_sw + 6)
                b.add(px, px + 2, y0, y1, 0, int(rng.integers(4, 6)), PEDESTRIAN, PEDESTRIAN_COLOR,
                      heading=float(rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2])))

    if cross is not None:
        ground[cross[0] - gx0:cross[1] - gx0, :] = ROAD
        if rng.random() < 0.7:                         # a car waiting at the junction
            yc = int(rng.choice([half + 4, -half - 4 - 11]))
            _vehicle(b, CAR, yc, (cross[0] + 2, cross[0] + 10), along_x=False,
                     heading=np.pi / 2 if yc < 0 else -np.pi / 2)

    # oncoming traffic (lane y = +5), all at one speed so they never collide
    u = int(rng.integers(5, 10))
    x = travel + 160 + int(rng.integers(0, 30))
    for _ in range(int(rng.integers(3, 7))):
        cls = int(rng.choice([CAR, CAR, CAR, CAR, TRUCK, BUS]))
        if x > -100:
            _vehicle(b, cls, x, (1, 9), velocity=(-u, 0), heading=np.pi, check=False)
        x -= SIZES[cls][0] + int(rng.integers(10, 60))
    # a lead vehicle in the ego lane at the ego speed
    if rng.random() < 0.6:
        _vehicle(b, CAR if rng.random() < 0.7 else TRUCK, int(rng.integers(25, 60)), (-9, -1), velocity=(speed, 0),
                 heading=0.0, check=False)

    ego = np.zeros((num_frames, 3))
    ego[:, 0] = np.arange(num_frames) * speed * VOXEL
    ego[:, 1] = -5 * VOXEL
    return Scene(name=name, seed=seed, boxes=b.boxes(), ground=GroundMap(gx0 * VOXEL, gy0 * VOXEL, ground),
                 ego_positions=ego, road_half_width=half * VOXEL,
                 cross_street=None if cross is None else (cross[0] * VOXEL, cross[1] * VOXEL),
                 global_yaw=float(rng.uniform(-np.pi, np.pi)),
                 global_offset=np.array([150.0 + rng.uniform(-20, 20), 150.0 + rng.uniform(-20, 20), 0.0]),
                 extras={"ego_speed_voxels": speed})


def voxelize(scene: Scene, frame: int, grid_lo: np.ndarray, shape: tuple[int, int, int], voxel: float,
             box_labels: np.ndarray, ground_labels: dict[int, int] | None, free: int,
             dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """Labels (shape, ``dtype``) and box-instance grid (int32, -1 = none) of ``frame`` on a grid whose corner is
    ``grid_lo`` (road frame, metres) with voxel size ``voxel`` (0.4 or 0.2; both align with the lattice).

    ``box_labels`` (K,) is the label of every box, ``ground_labels`` maps Occ3D ground classes to output labels
    (None: identity)."""
    labels: np.ndarray = np.full(shape, free, dtype=dtype)
    inst = np.full(shape, -1, dtype=np.int32)
    zc = grid_lo[2] + (np.arange(shape[2]) + 0.5) * voxel
    layers = np.nonzero((zc > GROUND_BOTTOM) & (zc < GROUND_TOP))[0]
    if len(layers):
        xc = grid_lo[0] + (np.arange(shape[0]) + 0.5) * voxel
        yc = grid_lo[1] + (np.arange(shape[1]) + 0.5) * voxel
        g = scene.ground.lookup(*np.meshgrid(xc, yc, indexing="ij"))
        if ground_labels is not None:
            lut = np.zeros(256, dtype=np.int64)
            for k, v in ground_labels.items():
                lut[k] = v
            g = lut[g]
        labels[:, :, layers] = g[:, :, None].astype(dtype)
    lo, hi = scene.boxes.at_frame(frame)
    i0 = np.clip(np.round((lo - grid_lo) / voxel).astype(np.int64), 0, shape)
    i1 = np.clip(np.round((hi - grid_lo) / voxel).astype(np.int64), 0, shape)
    for k in np.nonzero(np.all(i1 > i0, axis=1))[0]:
        sl = (slice(i0[k, 0], i1[k, 0]), slice(i0[k, 1], i1[k, 1]), slice(i0[k, 2], i1[k, 2]))
        labels[sl] = box_labels[k]
        inst[sl] = k
    return labels, inst
