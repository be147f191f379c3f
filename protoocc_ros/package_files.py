"""The one lookup of the files the package ships (config/, models/, msg/, launch/), wherever it is installed.

Search order of ``<folder>/<name>``:
  1. the source checkout this module lives in (``<checkout>/<folder>``, when ``package.xml`` is beside it);
  2. ``share/protoocc_ros/<folder>`` of every prefix on ``AMENT_PREFIX_PATH`` (a sourced colcon/ROS install);
  3. the install prefix this module was installed into (``<prefix>/lib/pythonX.Y/site-packages/protoocc_ros``
     -> ``<prefix>/share/protoocc_ros``: a colcon install tree run without sourcing it);
  4. ``<sys.prefix>/share/protoocc_ros`` (``pip install`` puts the shared folders there, setup.cfg data_files).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "protoocc_ros"
_HERE = Path(__file__).resolve().parent
CHECKOUT = _HERE.parent


def share_dirs() -> list[Path]:
    """Candidate roots holding config/, models/, msg/, launch/, in search order (duplicates removed)."""
    roots: list[Path] = []
    if (CHECKOUT / "package.xml").is_file():
        roots.append(CHECKOUT)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            roots.append(Path(prefix) / "share" / PACKAGE)
    if _HERE.parent.name in ("site-packages", "dist-packages") and len(_HERE.parents) > 3:
        roots.append(_HERE.parents[3] / "share" / PACKAGE)  # <prefix>/lib/pythonX.Y/site-packages/protoocc_ros
    roots.append(Path(sys.prefix) / "share" / PACKAGE)
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def package_file_candidates(folder: str, name: str) -> list[Path]:
    """Where ``<folder>/<name>`` may be, in search order (see the module docstring)."""
    return [root / folder / name for root in share_dirs()]


def find_package_file(folder: str, name: str) -> Path | None:
    """The first existing ``<folder>/<name>`` of :func:`package_file_candidates`, or None."""
    return next((c for c in package_file_candidates(folder, name) if c.is_file()), None)


def package_folders(folder: str) -> list[Path]:
    """The existing ``<folder>`` directories, in search order (e.g. to list the shipped configs)."""
    return [root / folder for root in share_dirs() if (root / folder).is_dir()]
