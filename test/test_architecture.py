"""The import directions of docs/architecture.md, checked on the import statements of every module:
ros -> inference / training / export -> model / data / metrics / render -> leaf modules, never back; no ROS
below ros/."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "protoocc_ros"
LEAF = {"config", "layouts", "classes", "geometry", "device", "package_files", "__init__"}
CORE = {"model", "data", "metrics", "render"}
UPPER = {"training", "inference", "export"}
ROS_MODULES = ("rclpy", "rcl_interfaces", "lifecycle_msgs", "std_msgs", "sensor_msgs", "geometry_msgs",
               "tf2_msgs", "visualization_msgs", "nav_msgs", "diagnostic_msgs", "rosgraph_msgs",
               "builtin_interfaces", "ament_index_python", "launch", "launch_ros", "protoocc_ros.msg",
               "protoocc_ros.ros")
ALLOWED = {  # layer -> layers it may import
    "leaf": {"leaf"},
    "core": {"leaf", "core"},
    "upper": {"leaf", "core", "upper"},
    "ros": {"leaf", "core", "upper", "ros"},
    "tools": {"leaf", "core", "upper", "ros", "tools"},
}


def layer_of(parts: tuple[str, ...]) -> str:
    """Layer of a module path inside protoocc_ros (e.g. ('model', 'prototypes'))."""
    head = parts[0] if parts else "__init__"
    if head in LEAF:
        return "leaf"
    if head in CORE:
        return "core"
    if head in UPPER:
        return "upper"
    if head in ("ros", "msg"):
        return "ros"
    return "tools"  # tools/, and the protoocc-train / protoocc-eval entry shims train.py, evaluate.py


def imports_of(path: Path) -> list[str]:
    """Absolute module names a file imports (relative imports resolved; imports inside functions included)."""
    package = ".".join(("protoocc_ros", *path.relative_to(PACKAGE).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found += [base] + [f"{base}.{a.name}" for a in node.names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    layer = layer_of(parts)
    bad = []
    for name in imports_of(path):
        if layer not in ("ros", "tools") and name.startswith(ROS_MODULES):
            bad.append(f"{name} (ROS below ros/)")
        if name.startswith("protoocc_ros.") and name != "protoocc_ros.msg":
            target = tuple(name.split(".")[1:2])
            if target and (PACKAGE / target[0]).exists() or (PACKAGE / f"{target[0]}.py").exists():
                if layer_of(target) not in ALLOWED[layer]:
                    bad.append(f"{name} ({layer} -> {layer_of(target)})")
    assert not bad, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(set(bad))}"


def test_every_subpackage_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders <= CORE | UPPER | {"ros", "tools", "msg"}, folders
