"""Files the package ships (models/, config/): in this checkout, else in an installed share/protoocc_ros."""
from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def package_file_candidates(folder: str, name: str) -> list[Path]:
    """Where ``<folder>/<name>`` may be, in search order: the checkout, then every AMENT_PREFIX_PATH share."""
    candidates = [CHECKOUT / folder / name]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "protoocc_ros" / folder / name)
    return candidates


def find_package_file(folder: str, name: str) -> Path | None:
    """The first existing ``<folder>/<name>`` of :func:`package_file_candidates`, or None."""
    return next((c for c in package_file_candidates(folder, name) if c.is_file()), None)
