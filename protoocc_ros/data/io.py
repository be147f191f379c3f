"""File readers shared by the dataset loaders; every failure is a DatasetError naming the file (docs/architecture.md
"Data")."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from protoocc_ros.data.errors import DatasetError


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; DatasetError if it is not an existing file."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: {what} is missing")
    return p


def read_rgb(path: str | Path) -> np.ndarray:
    """Image file -> uint8 (H, W, 3) RGB."""
    p = require_file(path, "image file")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"{p}: unreadable image (not a JPEG/PNG OpenCV can decode)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_json(path: str | Path) -> Any:
    p = require_file(path, "JSON file")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{p}: not valid JSON ({exc})") from exc


def load_npz(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays ``keys`` of an .npz file (no pickles)."""
    p = require_file(path, "npz file")
    try:
        with np.load(p, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DatasetError(f"{p}: missing arrays {missing}; found {sorted(data.files)}")
            return {k: data[k] for k in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{p}: unreadable npz file ({exc})") from exc


def check_array(arr: np.ndarray, path: str | Path, name: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Check the shape and dtype kind ('int' integer/bool labels, 'mask' bool or 0/1 integers) of an array."""
    if tuple(arr.shape) != tuple(shape):
        raise DatasetError(f"{path}: array '{name}' has shape {tuple(arr.shape)}; expected {tuple(shape)}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise DatasetError(f"{path}: array '{name}' has dtype {arr.dtype}; expected an integer type")
    if kind == "mask" and arr.dtype != bool:
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise DatasetError(f"{path}: mask '{name}' holds values outside {{0, 1}} "
                               f"(min {arr.min()}, max {arr.max()})")
        arr = arr.astype(bool)
    return arr


def check_labels(labels: np.ndarray, path: str | Path, name: str, num_classes: int,
                 allowed: tuple[int, ...] = ()) -> None:
    """Every label must be a class id in [0, num_classes) or one of ``allowed`` (e.g. 255)."""
    bad = ((labels < 0) | (labels >= num_classes)) & ~np.isin(labels, allowed)
    if bad.any():
        raise DatasetError(f"{path}: '{name}' holds label {int(labels[bad].flat[0])} outside the class range "
                           f"[0, {num_classes}){' or ' + str(list(allowed)) if allowed else ''}")
