"""The package's Fast DDS profile for large messages (config/fastdds_large_data.xml) as environment variables.

Raw camera images and occupancy grids exceed Fast DDS' default 0.5 MB shared-memory segment; over UDP a
lost fragment of a reliable sample waits for the next heartbeat (3 s by default). The profile enlarges
the segment and shortens the heartbeat; see the XML for the measurement. Launch files, protoocc-demo and
the benchmarks export it to the processes they start, unless the user already chose a profile or set
``PROTOOCC_DDS_PROFILE=none``; ``PROTOOCC_DDS_PROFILE=<path>`` picks another file.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from protoocc_ros.package_files import find_package_file

__all__ = ["PROFILE_NAME", "OPT_OUT", "profile_path", "dds_profile_env"]

PROFILE_NAME = "fastdds_large_data.xml"
OPT_OUT = "none"
_FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")  # Fast DDS 2.x reads FASTRTPS_DEFAULT_PROFILES_FILE only


def profile_path() -> Path | None:
    """config/fastdds_large_data.xml of this checkout, else of an installed share/protoocc_ros; None if absent."""
    return find_package_file("config", PROFILE_NAME)


def dds_profile_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to add to a child process' environment ({} when not applicable).

    Nothing when the RMW is not Fast DDS, when a profile file is already set, or on opt-out. Raises
    FileNotFoundError when PROTOOCC_DDS_PROFILE names a file that does not exist.
    """
    env = os.environ if environ is None else environ
    choice = env.get("PROTOOCC_DDS_PROFILE", "")
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if choice.lower() == OPT_OUT or "fastrtps" not in rmw:
        return {}
    if env.get("FASTDDS_DEFAULT_PROFILES_FILE") or env.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        return {}
    if choice:
        path = Path(choice).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"PROTOOCC_DDS_PROFILE={choice!r}: file not found (or 'none' to use none)")
    else:
        found = profile_path()
        if found is None:
            return {}
        path = found
    name = ("FASTRTPS_DEFAULT_PROFILES_FILE" if env.get("ROS_DISTRO", "") in _FAST_DDS_2_DISTROS
            else "FASTDDS_DEFAULT_PROFILES_FILE")
    return {name: str(path)}
