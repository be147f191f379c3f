"""Message libraries of workspaces that were not sourced: preloaded so rclpy finds them from a plain shell.

rosidl's type-support dispatch ``dlopen``s ``lib<pkg>__rosidl_typesupport_<kind>.so`` by name, which only
works when the install's ``lib/`` is on ``LD_LIBRARY_PATH`` at process start (what sourcing
``install/setup.bash`` or ``.venv/protoocc_env.sh`` does). A library already loaded under that name is found
without a search, so :func:`preload` loads the message libraries of every install prefix on ``sys.path``
(``<prefix>/lib/pythonX.Y/site-packages``, the layout of a colcon install and of the venv's message
``.pth``) and on ``AMENT_PREFIX_PATH``, and adds those prefixes to ``AMENT_PREFIX_PATH``. A sourced
environment already finds them; then this is a no-op apart from the loads. Called on import of
protoocc_ros.ros, before any node exists.
"""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

__all__ = ["install_prefixes", "preload"]

_ORDER = ("rosidl_generator_c", "rosidl_typesupport_c", "rosidl_typesupport_introspection_c",
          "rosidl_typesupport_fastrtps_c", "rosidl_typesupport_cpp", "rosidl_typesupport_introspection_cpp",
          "rosidl_typesupport_fastrtps_cpp", "rosidl_generator_py")
_loaded: set[Path] = set()


def install_prefixes() -> list[Path]:
    """Install prefixes with generated message libraries: from sys.path site-packages and AMENT_PREFIX_PATH."""
    found: list[Path] = []
    for entry in sys.path:
        site = Path(entry)
        if site.name in ("site-packages", "dist-packages") and site.parent.name.startswith("python"):
            found.append(site.parents[2])
    found += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    unique = []
    for prefix in found:
        if prefix not in unique and any((prefix / "lib").glob("lib*__rosidl_typesupport_c.so")):
            unique.append(prefix)
    return unique


def preload() -> list[Path]:
    """Load the message libraries of every install prefix (once); returns the prefixes used."""
    prefixes = install_prefixes()
    for prefix in prefixes:
        libs = sorted((prefix / "lib").glob("lib*__rosidl_*.so"),
                      key=lambda p: next((i for i, k in enumerate(_ORDER) if p.stem.endswith(k)), len(_ORDER)))
        for lib in libs:
            if lib not in _loaded:
                try:
                    ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
                except OSError:  # a library of another ABI: the normal search reports it if it is needed
                    continue
                _loaded.add(lib)
    ament = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    missing = [str(p) for p in prefixes if str(p) not in ament]
    if missing:
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(ament + missing)
    return prefixes
