"""Class names, colour maps and label maps of the two benchmarks (docs/architecture.md "Data": Occ3D-nuScenes,
SemanticKITTI SSC).

Occ3D-nuScenes: 17 semantic classes (the nuScenes-lidarseg challenge classes, index 0 = ``others``) plus
``free`` = 17; colours are the nuScenes-lidarseg coarse palette (``LidarsegClassMapper.get_coarse2color`` of
nuscenes-devkit) with white for free. SemanticKITTI SSC: 20 learning classes, 0 = empty, 255 = ignore; colours
and the raw-id -> learning-id map are those of ``semantic-kitti.yaml`` (semantic-kitti-api; colours there are
BGR, here RGB).
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------- Occ3D
OCC3D_CLASS_NAMES: tuple[str, ...] = (
    "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain", "manmade",
    "vegetation", "free",
)
OCC3D_FREE_LABEL = 17
# Flat classes a vehicle can stand on (Occ3D and SemanticKITTI names): not obstacles in a 2D navigation grid.
GROUND_CLASS_NAMES: frozenset[str] = frozenset({"driveable_surface", "other_flat", "sidewalk", "terrain", "road",
                                                "parking", "other-ground"})
OCC3D_NUM_CLASSES = 18
IGNORE_LABEL = 255

# RGB, uint8 (18, 3)
OCC3D_COLORS: np.ndarray = np.array([
    (0, 0, 0),        # others
    (112, 128, 144),  # barrier            slategrey
    (220, 20, 60),    # bicycle            crimson
    (255, 127, 80),   # bus                coral
    (255, 158, 0),    # car                orange
    (233, 150, 70),   # construction_veh.  darksalmon
    (255, 61, 99),    # motorcycle         red
    (0, 0, 230),      # pedestrian         blue
    (47, 79, 79),     # traffic_cone       darkslategrey
    (255, 140, 0),    # trailer            darkorange
    (255, 99, 71),    # truck              tomato
    (0, 207, 191),    # driveable_surface  nuTonomy green
    (175, 0, 75),     # other_flat
    (75, 0, 75),      # sidewalk
    (112, 180, 60),   # terrain
    (222, 184, 135),  # manmade            burlywood
    (0, 175, 0),      # vegetation         green
    (255, 255, 255),  # free
], dtype=np.uint8)

# ---------------------------------------------------------------------------------------------- SemanticKITTI
KITTI_CLASS_NAMES: tuple[str, ...] = (
    "empty", "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist",
    "road", "parking", "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk", "terrain", "pole",
    "traffic-sign",
)
KITTI_NUM_CLASSES = 20

# semantic-kitti.yaml ``learning_map`` (raw label id -> learning id)
KITTI_LEARNING_MAP: dict[int, int] = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10, 48: 11,
    49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0, 252: 1, 253: 7,
    254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}
# semantic-kitti.yaml ``learning_map_inv`` (learning id -> raw label id)
KITTI_LEARNING_MAP_INV: dict[int, int] = {
    0: 0, 1: 10, 2: 11, 3: 15, 4: 18, 5: 20, 6: 30, 7: 31, 8: 32, 9: 40, 10: 44, 11: 48, 12: 49, 13: 50,
    14: 51, 15: 70, 16: 71, 17: 72, 18: 80, 19: 81,
}
# semantic-kitti.yaml ``color_map`` of the learning classes' raw ids, converted BGR -> RGB; empty = white
KITTI_COLORS: np.ndarray = np.array([
    (255, 255, 255),  # empty
    (100, 150, 245), (100, 230, 245), (30, 60, 150), (80, 30, 180), (0, 0, 255),  # car .. other-vehicle
    (255, 30, 30), (255, 40, 200), (150, 30, 90),                                  # person .. motorcyclist
    (255, 0, 255), (255, 150, 255), (75, 0, 75), (175, 0, 75),                      # road .. other-ground
    (255, 200, 0), (255, 120, 50), (0, 175, 0), (135, 60, 0), (150, 240, 80),       # building .. terrain
    (255, 240, 150), (255, 0, 0),                                                   # pole, traffic-sign
], dtype=np.uint8)
KITTI_EMPTY_LABEL = 0


def kitti_ssc_lut(max_raw_id: int = 65535) -> np.ndarray:
    """Lookup table raw SemanticKITTI voxel id -> SSC learning id, as semantic-kitti-api evaluate_completion.py.

    In completion, raw 0 is *empty* (learning id 0) while every other raw id that the learning map sends to 0
    (outlier, other-structure, other-object) and every id absent from the map becomes 255 (ignored).
    Returns uint8 (max_raw_id + 1,).
    """
    lut = np.full(max_raw_id + 1, IGNORE_LABEL, dtype=np.uint8)
    for raw, learn in KITTI_LEARNING_MAP.items():
        lut[raw] = learn if learn != 0 else IGNORE_LABEL
    lut[0] = KITTI_EMPTY_LABEL
    return lut


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """Class names of the benchmark with this many classes (18: Occ3D, 20: SemanticKITTI)."""
    return class_table(num_classes).names


@dataclass(frozen=True)
class ClassTable:
    """The label set of a grid: names, RGB colours (C, 3) uint8 and the free (empty) label."""

    names: tuple[str, ...]
    colors: np.ndarray
    free_label: int


def _hue_colors(n: int) -> np.ndarray:
    """Evenly spaced hues (for a custom label set), RGB uint8 (n, 3)."""
    rgb = [colorsys.hsv_to_rgb(i / max(n, 1), 0.78, 0.9) for i in range(n)]
    return np.round(np.asarray(rgb, dtype=np.float64).reshape(n, 3) * 255).astype(np.uint8)


def class_table(num_classes: int, names: Sequence[str] | None = None, free_label: int | None = None) -> ClassTable:
    """The one lookup of class names, colours and free label: Occ3D (18), SemanticKITTI (20), else generic.

    ``names`` / ``free_label`` (e.g. from a config's ``dataset.class_names`` / ``free_label``) replace the
    benchmark's; a custom class count gets ``class_<i>`` names, evenly spaced hues and the last label free.
    """
    if num_classes == OCC3D_NUM_CLASSES:
        table = ClassTable(OCC3D_CLASS_NAMES, OCC3D_COLORS, OCC3D_FREE_LABEL)
    elif num_classes == KITTI_NUM_CLASSES:
        table = ClassTable(KITTI_CLASS_NAMES, KITTI_COLORS, KITTI_EMPTY_LABEL)
    else:
        table = ClassTable(tuple(f"class_{i}" for i in range(num_classes)), _hue_colors(num_classes),
                           num_classes - 1)
    return ClassTable(tuple(names) if names else table.names, table.colors,
                      table.free_label if free_label is None else int(free_label))
