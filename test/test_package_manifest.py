"""package.xml is valid, and declares every ROS package that the Python code imports."""
from __future__ import annotations

import ast
import configparser
import importlib
import re
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[1]

# ROS packages that have no wheel here but that the code uses when present (a normal ROS install).
ROS_ONLY_PACKAGES = {"tf2_ros", "cv_bridge", "message_filters", "sensor_msgs_py", "launch", "launch_ros",
                     "rosbag2_py", "tf_transformations"}


def _ament_packages() -> set[str]:
    from ament_index_python.packages import get_packages_with_prefixes
    return set(get_packages_with_prefixes())


def _imported_top_level_modules(paths: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def test_package_xml_is_valid_format3() -> None:
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.name == "protoocc_ros"
    assert package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    assert any(g.name == "rosidl_interface_packages" for g in package.member_of_groups)


def test_every_imported_ros_package_is_declared() -> None:
    package = parse_package(str(ROOT / "package.xml"))
    declared = {d.name for d in package.exec_depends + package.build_depends + package.buildtool_depends
                + package.build_export_depends + package.test_depends}
    sources = sorted((ROOT / "protoocc_ros").rglob("*.py")) + sorted((ROOT / "launch").rglob("*.py"))
    ros_packages = _ament_packages() | ROS_ONLY_PACKAGES
    imported = _imported_top_level_modules(sources)
    missing = {name: str(path.relative_to(ROOT)) for name, path in imported.items()
               if name in ros_packages and name != "protoocc_ros" and name not in declared}
    assert not missing, f"imported but not declared in package.xml: {missing}"


def test_message_dependencies_are_declared_for_the_build() -> None:
    package = parse_package(str(ROOT / "package.xml"))
    build = {d.name for d in package.build_depends}
    for msg in (ROOT / "msg").glob("*.msg"):
        for line in msg.read_text().splitlines():
            field_type = line.split("#")[0].split()[0] if line.split("#")[0].split() else ""
            if "/" in field_type:
                assert field_type.split("/")[0] in build, f"{msg.name}: {field_type} needs <depend>"


def _console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entries = {}
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = (part.strip() for part in line.split("="))
        entries[name] = target
    return entries


def test_console_script_entry_points_import() -> None:
    entries = _console_scripts()
    assert "protoocc-demo" in entries
    for name, target in entries.items():
        module_name, func_name = target.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, func_name)), f"{name}: {target} is not callable"


def cmake_nodes() -> list[str]:
    """The node executables CMakeLists.txt generates into lib/protoocc_ros (set(PROTOOCC_NODES ...))."""
    found = re.search(r"set\(PROTOOCC_NODES([^)]*)\)", (ROOT / "CMakeLists.txt").read_text())
    assert found, "CMakeLists.txt: no set(PROTOOCC_NODES ...)"
    return found.group(1).split()


def test_cmake_installs_node_executables_that_import() -> None:
    template = (ROOT / "cmake" / "node_executable.py.in").read_text()
    nodes = cmake_nodes()
    assert set(nodes) == {"occupancy_node", "replay_node", "evaluation_node"}
    for node in nodes:
        tree = ast.parse(template.replace("@NODE@", node).replace("@PROTOOCC_PYTHON@", sys.executable))
        module = next(n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
        assert module == f"protoocc_ros.ros.nodes.{node}"
        assert callable(importlib.import_module(module).main), f"{module}.main"
        assert _console_scripts()[node] == f"{module}:main"  # the same entry point for pip installs


# Python module -> what provides it on a ROS 2 install: a rosdep key of package.xml or a pip name of
# requirements-ros.txt.
ROS_INSTALL_PROVIDERS = {
    "numpy": "python3-numpy", "yaml": "python3-yaml", "cv2": "python3-opencv", "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib", "torch": "torch", "safetensors": "safetensors", "nuscenes": "nuscenes-devkit",
    "rosbags": "rosbags", "onnxruntime": "onnxruntime", "onnx": "onnx", "foxglove": "foxglove-sdk",
    "websockets": "websockets", "google": "protobuf", "mcap": "mcap", "mcap_ros2": "mcap-ros2-support",
}


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[=<>!~\[; ]", line)[0].lower())
    return names


def test_ros_install_requirements_hold_no_ros_package_or_toolchain() -> None:
    """On Jazzy/Kilted the distro provides rclpy, the messages and colcon: pip must not install a second copy."""
    names = _requirement_names(ROOT / "requirements-ros.txt")
    ros_like = sorted(n for n in names if n.startswith(("ros-", "colcon", "catkin", "ament", "rosidl", "empy", "lark")))
    assert names and not ros_like, ros_like
    assert "-r requirements-ros.txt" in (ROOT / "requirements.txt").read_text()  # the venv route installs both


def test_every_third_party_import_is_provided_on_a_ros_install() -> None:
    package = parse_package(str(ROOT / "package.xml"))
    rosdep = {d.name for d in package.exec_depends}
    pip = _requirement_names(ROOT / "requirements-ros.txt")
    imported = _imported_top_level_modules(sorted((ROOT / "protoocc_ros").rglob("*.py")))
    ros_packages = _ament_packages() | ROS_ONLY_PACKAGES
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ros_packages
                   and m != "protoocc_ros"}
    unprovided = sorted(m for m in third_party if ROS_INSTALL_PROVIDERS.get(m) not in rosdep | pip)
    assert not unprovided, f"imported, but neither a rosdep key in package.xml nor in requirements-ros.txt: {unprovided}"
