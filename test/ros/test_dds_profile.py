"""The package's Fast DDS profile (config/fastdds_large_data.xml) and when it is exported to child processes."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from protoocc_ros.ros.runtime.dds import PROFILE_NAME, dds_profile_env, profile_path

NS = {"dds": "http://www.eprosima.com"}
REPO = Path(__file__).resolve().parents[2]


def test_profile_keeps_udp_enlarges_shared_memory_and_shortens_the_heartbeat() -> None:
    path = profile_path()
    assert path == REPO / "config" / PROFILE_NAME
    root = ET.parse(path).getroot()
    kinds = {d.findtext("dds:transport_id", namespaces=NS): d.findtext("dds:type", namespaces=NS)
             for d in root.iterfind(".//dds:transport_descriptor", NS)}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]  # other hosts still reachable
    used = [t.text for t in root.iterfind(".//dds:participant/dds:rtps/dds:userTransports/dds:transport_id", NS)]
    assert sorted(used) == sorted(kinds)
    segment = int(root.findtext(".//dds:transport_descriptor/dds:segment_size", namespaces=NS))
    assert segment >= 2 * 200 * 200 * 16 * 2  # a 200x200x16 grid with confidence, twice
    period = root.find(".//dds:data_writer/dds:times/dds:heartbeat_period", NS)
    assert int(period.findtext("dds:sec", namespaces=NS)) == 0
    assert int(period.findtext("dds:nanosec", namespaces=NS)) <= 200_000_000
    for profile in root.iterfind(".//dds:participant", NS):
        assert profile.get("is_default_profile") == "true"


def test_exported_for_fast_dds_with_the_variable_of_the_distro() -> None:
    assert dds_profile_env({}) == {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile_path())}
    assert dds_profile_env({"ROS_DISTRO": "kilted"}) == {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile_path())}
    assert dds_profile_env({"ROS_DISTRO": "jazzy", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}) == {
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile_path())}


@pytest.mark.parametrize("environ", [
    {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"},   # the user's own profile wins
    {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"},
    {"PROTOOCC_DDS_PROFILE": "none"},                           # opt-out
    {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},               # not Fast DDS
])
def test_not_exported(environ: dict) -> None:
    assert dds_profile_env(environ) == {}


def test_another_profile_file_can_be_chosen_and_must_exist(tmp_path: Path) -> None:
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    assert dds_profile_env({"PROTOOCC_DDS_PROFILE": str(mine)}) == {"FASTDDS_DEFAULT_PROFILES_FILE": str(mine)}
    with pytest.raises(FileNotFoundError, match="PROTOOCC_DDS_PROFILE"):
        dds_profile_env({"PROTOOCC_DDS_PROFILE": str(tmp_path / "missing.xml")})
