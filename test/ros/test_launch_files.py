"""Static checks of launch/*.launch.py, the node parameter YAMLs and config/protoocc.rviz (launch/launch_ros are
not installed here): executables are installed by CMakeLists.txt, named files exist, launch arguments are
declared, parameter names are declared by the node modules and parameter values have the declared types."""
from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from protoocc_ros.ros.runtime.params import param_specs

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
NODE_PARAM_FILES = sorted((REPO / "config").glob("replay_*.yaml")) + [REPO / "config" / "evaluation_node.yaml"]
REQUIRED_LAUNCH_FILES = {"occupancy", "nuscenes_replay", "kitti_replay", "demo"}
EXTERNAL_EXECUTABLES = {("rviz2", "rviz2")}
BUILTIN_PARAMETERS = {"use_sim_time": False}   # declared by every rclpy node
SHARE_DIRS = {"config", "launch", "models"}     # installed by CMakeLists.txt install(DIRECTORY ...)
_UNKNOWN = object()


# ------------------------------------------------------------------------------------------- node parameters
def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _UNKNOWN


def declared_parameters(executable: str) -> dict[str, Any]:
    """Parameter name -> default of a node executable (its module's PARAMS dataclass) plus rclpy's own."""
    module = REPO / "protoocc_ros" / "ros" / "nodes" / f"{executable}.py"
    assert module.is_file(), f"executable {executable}: module {module.relative_to(REPO)} does not exist"
    params = importlib.import_module(f"protoocc_ros.ros.nodes.{executable}").PARAMS
    return {**BUILTIN_PARAMETERS, **{s.name: s.default for s in param_specs(params)}}


def installed_executables() -> set[str]:
    """The node executables CMakeLists.txt generates into lib/${PROJECT_NAME}."""
    found = re.search(r"set\(PROTOOCC_NODES([^)]*)\)", (REPO / "CMakeLists.txt").read_text())
    assert found, "CMakeLists.txt has no set(PROTOOCC_NODES ...) of generated node executables"
    assert "DESTINATION lib/${PROJECT_NAME}" in (REPO / "CMakeLists.txt").read_text()
    return set(found.group(1).split())


def _type_ok(value: Any, default: Any) -> bool:
    """Would rclpy accept `value` for a parameter declared with `default` (no implicit int -> double)?"""
    if default is _UNKNOWN:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return type(value) is type(default)


# ------------------------------------------------------------------------------------------- launch files
@dataclass
class LaunchInfo:
    path: Path
    declared: dict[str, Any] = field(default_factory=dict)        # launch argument -> default (str or path)
    used: set[str] = field(default_factory=set)                   # LaunchConfiguration names
    nodes: list[dict[str, Any]] = field(default_factory=list)     # package, executable, parameters
    share_paths: list[tuple[str, ...]] = field(default_factory=list)
    includes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _call_name(node: ast.AST) -> str:
    func = getattr(node, "func", None)
    return getattr(func, "id", getattr(func, "attr", ""))


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _share_path(node: ast.AST) -> tuple[str, ...] | None:
    """PathJoinSubstitution([share, 'config', 'x.yaml']) -> ('config', 'x.yaml')."""
    if _call_name(node) == "PathJoinSubstitution" and node.args and isinstance(node.args[0], ast.List):
        parts = [e.value for e in node.args[0].elts if isinstance(e, ast.Constant)]
        return tuple(parts)
    return None


def _value(node: ast.AST) -> Any:
    """Launch-time value: constants, ('arg', name) for LaunchConfiguration, ('path', parts), ('typed', type, v)."""
    name = _call_name(node)
    if name == "LaunchConfiguration" or (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "arg"):
        return ("arg", node.args[0].value)
    if name == "ParameterValue":
        return ("typed", getattr(_kw(node, "value_type"), "id", None), _value(node.args[0]))
    if (path := _share_path(node)) is not None:
        return ("path", path)
    return _literal(node)


def parse_launch(path: Path) -> LaunchInfo:
    tree = ast.parse(path.read_text())
    info = LaunchInfo(path)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body), \
        f"{path.name}: no generate_launch_description()"
    for node in ast.walk(tree):
        name = _call_name(node)
        if name == "DeclareLaunchArgument":
            info.declared[node.args[0].value] = _value(_kw(node, "default_value")) if _kw(node, "default_value") \
                else None
        elif name == "LaunchConfiguration" or (name == "arg" and isinstance(node.args[0], ast.Constant)):
            info.used.add(node.args[0].value)
        elif name == "Node":
            params: list[Any] = []
            plist = _kw(node, "parameters")
            for item in (plist.elts if isinstance(plist, ast.List) else []):
                params.append({k.value: _value(v) for k, v in zip(item.keys, item.values)}
                              if isinstance(item, ast.Dict) else _value(item))
            info.nodes.append({"package": _kw(node, "package").value, "executable": _kw(node, "executable").value,
                               "name": getattr(_kw(node, "name"), "value", None), "parameters": params})
        elif (parts := _share_path(node)) is not None:
            info.share_paths.append(parts)
        elif name == "IncludeLaunchDescription":
            source = node.args[0].args[0]
            largs = _kw(node, "launch_arguments")
            mapping = largs.func.value if largs is not None else None   # {...}.items()
            info.includes.append((_share_path(source)[-1],
                                  {k.value: _value(v) for k, v in zip(mapping.keys, mapping.values)}
                                  if isinstance(mapping, ast.Dict) else {}))
    return info


LAUNCH = {p.name: parse_launch(p) for p in LAUNCH_FILES}


def _resolve(value: Any, info: LaunchInfo) -> Any:
    """The default a launch-time value takes: follows LaunchConfiguration to its declared default."""
    if isinstance(value, tuple) and value[0] == "arg":
        return _resolve(info.declared.get(value[1]), info)
    if isinstance(value, tuple) and value[0] == "typed":
        return value
    return value


# ------------------------------------------------------------------------------------------- tests
def test_every_use_has_a_launch_file() -> None:
    assert REQUIRED_LAUNCH_FILES <= {p.name.removesuffix(".launch.py") for p in LAUNCH_FILES}


@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_launch_nodes_are_installed_executables(name: str) -> None:
    programs = installed_executables()
    for node in LAUNCH[name].nodes:
        key = (node["package"], node["executable"])
        assert key in EXTERNAL_EXECUTABLES or (node["package"] == "protoocc_ros" and node["executable"] in programs), \
            f"{name}: node {key} is not installed to lib/protoocc_ros by CMakeLists.txt ({sorted(programs)})"
        if node["package"] == "protoocc_ros":
            assert node["name"] == node["executable"], f"{name}: node name {node['name']} (topics use the default)"


@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_launch_files_name_existing_installed_files(name: str) -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"install\(DIRECTORY[^)]*\blaunch\b[^)]*\bconfig\b", cmake), "launch/ and config/ not installed"
    for parts in LAUNCH[name].share_paths:
        assert parts[0] in SHARE_DIRS, f"{name}: {parts} is not under an installed share directory"
        assert (REPO.joinpath(*parts)).is_file(), f"{name}: {'/'.join(parts)} does not exist"
    for arg, default in LAUNCH[name].declared.items():
        if arg == "config_file" and default != "":  # '' = the checkpoint's own config; a name is a shipped file
            assert (REPO / "config" / f"{default}.yaml").is_file(), f"{name}: config_file {default} has no YAML"


@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_launch_arguments_are_declared(name: str) -> None:
    info = LAUNCH[name]
    assert info.used <= set(info.declared), f"{name}: LaunchConfiguration {info.used - set(info.declared)} undeclared"
    for included, arguments in info.includes:
        child = LAUNCH[included]
        assert set(arguments) <= set(child.declared), f"{name} passes {set(arguments) - set(child.declared)} " \
                                                      f"that {included} does not declare"
        # a wrapper (no nodes of its own) only sets defaults of arguments of the file it includes
        assert info.nodes or set(info.declared) <= set(child.declared), \
            f"{name} declares {set(info.declared) - set(child.declared)} that {included} never uses"


@pytest.mark.parametrize("name", sorted(LAUNCH))
def test_launch_parameters_are_declared_by_the_node_with_matching_types(name: str) -> None:
    info = LAUNCH[name]
    for node in (n for n in info.nodes if n["package"] == "protoocc_ros"):
        declared = declared_parameters(node["executable"])
        for item in node["parameters"]:
            if isinstance(item, dict):
                for key, value in item.items():
                    assert key in declared, f"{name}: {node['executable']} does not declare parameter {key!r}"
                    value = _resolve(value, info)
                    if isinstance(value, tuple) and value[0] == "typed":   # ParameterValue(value_type=T)
                        assert value[1] == type(declared[key]).__name__ or declared[key] is _UNKNOWN, \
                            f"{name}: {key} passed as {value[1]}, declared {type(declared[key]).__name__}"
                    elif isinstance(value, str):                           # launch args are YAML-parsed
                        assert _type_ok(yaml.safe_load(value), declared[key]), f"{name}: {key}={value!r}"
                    elif value is not None:
                        assert _type_ok(value, declared[key]), f"{name}: {key}={value!r}"
            else:  # a parameter file: a share path, possibly through a launch argument
                path = _resolve(item, info)
                assert isinstance(path, tuple) and path[0] == "path", f"{name}: parameter file {item} not resolvable"
                _check_param_file(REPO.joinpath(*path[1]), node["executable"])


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameter YAML -> dotted names (memory: {enabled: x} -> memory.enabled)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_param_file(path: Path, executable: str) -> None:
    data = yaml.safe_load(path.read_text())
    assert list(data) == [executable], f"{path.name}: top-level keys {list(data)}, expected [{executable}]"
    params = _flatten(data[executable]["ros__parameters"])
    declared = declared_parameters(executable)
    for key, value in params.items():
        assert key in declared, f"{path.name}: {executable} does not declare parameter {key!r}"
        assert _type_ok(value, declared[key]), f"{path.name}: {key}={value!r} does not match {declared[key]!r}"


@pytest.mark.parametrize("path", NODE_PARAM_FILES, ids=lambda p: p.name)
def test_node_parameter_files_match_declarations(path: Path) -> None:
    executable = "evaluation_node" if path.name == "evaluation_node.yaml" else "replay_node"
    _check_param_file(path, executable)


def test_parameter_check_rejects_unknown_names_and_int_for_double(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("replay_node:\n  ros__parameters:\n    rate: 1\n")
    with pytest.raises(AssertionError, match="rate=1"):
        _check_param_file(bad, "replay_node")
    bad.write_text("replay_node:\n  ros__parameters:\n    no_such_parameter: 1.0\n")
    with pytest.raises(AssertionError, match="no_such_parameter"):
        _check_param_file(bad, "replay_node")


def test_rviz_config_shows_markers_cloud_and_images_in_base_link() -> None:
    rviz = yaml.safe_load((REPO / "config" / "protoocc.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    displays = {d["Class"]: d for d in manager["Displays"]}
    topics = {d["Class"].split("/")[-1]: [] for d in manager["Displays"]}
    for d in manager["Displays"]:
        if "Topic" in d:
            topics[d["Class"].split("/")[-1]].append(d["Topic"]["Value"])
    assert topics["MarkerArray"] == ["/occupancy_node/markers"]
    assert topics["PointCloud2"] == ["/occupancy_node/occupied_voxels"]
    assert "/cameras/CAM_FRONT/image_raw" in topics["Image"]
    assert "rviz_default_plugins/TF" in displays
