"""The import directions of docs/architecture.md, checked on the import statements of every module:

    tools (+ the train.py / evaluate.py entry points) -> ros -> evaluation -> training / inference / export
    -> model / data / metrics / render / checkpoints -> leaf modules

never back (a layer may import its own layer and the layers below), no ROS below ros/, no import cycle between
modules, and no cycle between packages at run time; inside ros/: nodes -> replay -> inputs -> publishing -> runtime.
Imports inside functions count; imports under ``if TYPE_CHECKING:`` count for the layers and the module cycles but
not for the run-time package order (they are annotations, never executed)."""
from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "protoocc_ros"
LAYERS = (  # lowest first: (name, top-level modules and subpackages of protoocc_ros)
    ("leaf", {"config", "layouts", "classes", "geometry", "device", "package_files", "__init__"}),
    ("core", {"model", "data", "metrics", "render", "checkpoints"}),
    ("upper", {"training", "inference", "export"}),
    ("evaluation", {"evaluation"}),
    ("ros", {"ros", "msg"}),
    ("tools", {"tools", "train", "evaluate"}),  # CLIs and the protoocc-train / protoocc-eval `-m` entry points
)
RANK = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAMES = [name for name, _ in LAYERS]
ROS_ORDER = ("runtime", "publishing", "inputs", "replay", "nodes")  # ros/ subpackages, lowest first (run-time imports)
ROS_MODULES = ("rclpy", "rcl_interfaces", "lifecycle_msgs", "std_msgs", "sensor_msgs", "geometry_msgs",
               "tf2_msgs", "visualization_msgs", "nav_msgs", "diagnostic_msgs", "rosgraph_msgs",
               "builtin_interfaces", "ament_index_python", "launch", "launch_ros", "protoocc_ros.msg",
               "protoocc_ros.ros")


def module_name(path: Path) -> str:
    """protoocc_ros/ros/nodes/occupancy_node.py -> protoocc_ros.ros.nodes.occupancy_node (a package: its __init__)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(("protoocc_ros", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST, run_time_only: bool) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(tree):
        if run_time_only and isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _nodes(other, run_time_only)
            continue
        yield child
        yield from _nodes(child, run_time_only)


def imports_in(source: str, package: str, *, run_time_only: bool = False) -> list[str]:
    """Absolute names a module's source imports (`from a import b` gives a.b: module b of package a, or name b of
    module a; relative imports resolved)."""
    found = []
    for node in _nodes(ast.parse(source), run_time_only):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found += [f"{base}.{a.name}" for a in node.names]
    return found


def imports_of(path: Path, *, run_time_only: bool = False) -> list[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(), package, run_time_only=run_time_only)


def unit_of(module: str) -> str:
    """Top-level module or subpackage of protoocc_ros that a module name lies in ('__init__' for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(module: str, imported: Iterable[str]) -> list[str]:
    """The names `module` must not import: a higher layer of the package, or ROS outside ros/ and tools/."""
    layer = RANK[unit_of(module)]
    bad = []
    for name in imported:
        if layer < RANK["ros"] and name.startswith(ROS_MODULES):
            bad.append(f"{name} (ROS below ros/)")
        elif name.startswith("protoocc_ros.") and RANK.get(unit_of(name), -1) > layer:
            bad.append(f"{name} ({LAYER_NAMES[layer]} -> {LAYER_NAMES[RANK[unit_of(name)]]})")
    return bad


def ros_upward_imports(module: str, imported: Iterable[str]) -> list[str]:
    """The names a module of a ros/ subpackage must not import at run time: a later subpackage of ROS_ORDER."""
    def sub(name: str) -> str | None:
        parts = name.split(".")
        return parts[2] if len(parts) > 3 and parts[:2] == ["protoocc_ros", "ros"] else None

    own = sub(module)
    if own is None:
        return []
    return [name for name in imported if (target := sub(name)) is not None and target in ROS_ORDER
            and ROS_ORDER.index(target) > ROS_ORDER.index(own)]


def import_graph(sources: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """module -> the modules of `sources` it imports (each name resolved to the longest module name it starts with)."""
    graph: dict[str, set[str]] = {}
    for module, imported in sources.items():
        targets = set()
        for name in imported:
            while name and name not in sources:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import cycles of a graph: its strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to packages: top-level units, and ros/ by subpackage (ros.nodes, ...)."""
    def unit(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[1:3]) if len(parts) > 3 and parts[1] == "ros" else unit_of(module)

    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        collapsed.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return collapsed


MODULES = sorted(PACKAGE.rglob("*.py"))
NAMES = {module_name(p): p for p in MODULES}
ALL_IMPORTS = {name: imports_of(path) for name, path in NAMES.items()}
RUN_TIME_IMPORTS = {name: imports_of(path, run_time_only=True) for name, path in NAMES.items()}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    name = module_name(path)
    bad = upward_imports(name, ALL_IMPORTS[name]) + ros_upward_imports(name, RUN_TIME_IMPORTS[name])
    assert not bad, f"{path.relative_to(PACKAGE)} ({LAYER_NAMES[RANK[unit_of(name)]]}) imports {sorted(set(bad))}"


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph(ALL_IMPORTS)) == []


def test_no_import_cycle_between_packages_at_run_time() -> None:
    assert cycles(package_graph(import_graph(RUN_TIME_IMPORTS))) == []


def test_the_checks_catch_a_cycle_and_an_upward_import() -> None:
    # a hand-made graph: a -> b -> c -> a is a cycle, d only points into it; e -> e is no cycle of modules
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    sources = {"protoocc_ros.ros.replay.sources": ["protoocc_ros.ros.replay.bag_source.BagSource"],
               "protoocc_ros.ros.replay.bag_source": ["protoocc_ros.ros.replay.sources", "numpy"]}
    assert cycles(import_graph(sources)) == [sorted(sources)]
    assert cycles(package_graph({"protoocc_ros.training.trainer": {"protoocc_ros.evaluation.evaluate"},
                                 "protoocc_ros.evaluation.evaluate": {"protoocc_ros.training.clips"},
                                 "protoocc_ros.training.clips": set()})) == [["evaluation", "training"]]
    # upward: the checkpoint format importing training, inference importing evaluation, ROS in the model
    assert upward_imports("protoocc_ros.checkpoints.format", ["protoocc_ros.training.errors"])
    assert upward_imports("protoocc_ros.inference.predictor", ["protoocc_ros.evaluation.evaluate"])
    assert upward_imports("protoocc_ros.model.protoocc", ["rclpy.node"])
    assert upward_imports("protoocc_ros.evaluation.evaluate", ["protoocc_ros.ros.nodes.evaluation_node"])
    assert ros_upward_imports("protoocc_ros.ros.runtime.params", ["protoocc_ros.ros.nodes.occupancy_params"])
    # downward and same-layer imports pass; an annotation-only import is left out of the run-time imports
    assert not upward_imports("protoocc_ros.evaluation.evaluate", ["protoocc_ros.inference.predictor", "numpy"])
    assert not upward_imports("protoocc_ros.inference.predictor", ["protoocc_ros.checkpoints.format"])
    assert not ros_upward_imports("protoocc_ros.ros.nodes.replay_node", ["protoocc_ros.ros.replay.sources"])
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from x.y import Z\nimport w\n"
    assert imports_in(source, "p", run_time_only=True) == ["typing.TYPE_CHECKING", "w"]
    assert "x.y.Z" in imports_in(source, "p")


def test_every_subpackage_has_a_layer_and_a_docstring() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders <= set(RANK), folders - set(RANK)
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules <= set(RANK), modules - set(RANK)
    ros_folders = {p.name for p in (PACKAGE / "ros").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert ros_folders == set(ROS_ORDER)
    assert not list((PACKAGE / "ros").glob("[!_]*.py")), "ros/ holds subpackages only"
    for init in PACKAGE.rglob("__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(PACKAGE)}: no docstring"
