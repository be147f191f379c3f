"""`colcon build` (pip-installed colcon + ament/rosidl toolchain) builds and installs the package, and the
install tree works on its own, as `ros2 run` uses it: shipped files found by name from share/, the node
executable of lib/protoocc_ros started with only the workspace's environment (its setup.bash sourced, no
checkout on the path) serves grids over DDS.

The same CMakeLists.txt/package.xml is what a normal ROS 2 Jazzy/Kilted install builds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "ros"))
from ros_helpers import ros_context  # noqa: E402 - pins a private ROS_DOMAIN_ID before rclpy starts

# A Python prologue that removes every path of this checkout (the editable install, the checkout's own
# message install) so only the colcon workspace can provide protoocc_ros.
VENV = Path(sys.executable).parents[1]
NO_CHECKOUT = (f"import sys; from pathlib import Path; sys.path[:] = [p for p in sys.path if not "
               f"(str(Path(p or '.').resolve()).startswith({str(ROOT)!r}) and not "
               f"str(Path(p or '.').resolve()).startswith({str(VENV)!r}))]; ")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("colcon")
    colcon = Path(sys.executable).parent / "colcon"
    assert colcon.exists(), "colcon is installed by requirements.txt"
    # Build from a copy of the package sources (no .venv/build/install inside the source dir).
    src = tmp / "src" / "protoocc_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".git", "outputs",
                                                             "__pycache__", ".cache", "runs", ".mypy_cache",
                                                             ".ruff_cache"))
    shutil.copytree(ROOT / "scripts" / "vendor" / "tf2_msgs", tmp / "src" / "tf2_msgs")  # what a distro has
    numpy_inc = next(Path("/opt/python").glob("cp*/lib/python*/site-packages/numpy/_core/include"))
    venv = os.environ.get("VIRTUAL_ENV", str(Path(sys.executable).parents[1]))
    build_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH", "COLCON_PREFIX_PATH")}
    build_env.update(AMENT_PREFIX_PATH=venv, CMAKE_PREFIX_PATH=venv)  # the underlay: the venv's ROS wheels only
    result = subprocess.run(
        [str(colcon), "--log-base", str(tmp / "log"), "build", "--base-paths", str(tmp / "src"),
         "--build-base", str(tmp / "build"), "--install-base", str(tmp / "install"),
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
         f"-DPython3_NumPy_INCLUDE_DIR={numpy_inc}"],
        cwd=tmp, env=build_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield tmp / "install"


def workspace_env(install: Path) -> dict[str, str]:
    """The environment of a shell that sourced install/setup.bash and nothing of this checkout."""
    base = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "ROS_DOMAIN_ID", "RMW_IMPLEMENTATION",
                                                         "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")}
    base["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    base["AMENT_PREFIX_PATH"] = os.environ.get("VIRTUAL_ENV", "")  # the ROS underlay: here the venv's wheels
    out = subprocess.run(["bash", "-c", f"source {install / 'setup.bash'} && env -0"], env=base,
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    venv = Path(sys.executable).parents[1]
    for var in ("PYTHONPATH", "AMENT_PREFIX_PATH", "LD_LIBRARY_PATH"):
        leaked = [p for p in env.get(var, "").split(":") if p.startswith(str(ROOT)) and not p.startswith(str(venv))]
        assert not leaked, f"{var}: {leaked}: the checkout leaked into the workspace environment"
    assert str(install) in env.get("PYTHONPATH", ""), env
    return env


def test_colcon_build_installs_messages_nodes_launch_and_config(workspace: Path) -> None:
    prefix = workspace / "protoocc_ros"
    for rel in ("lib/protoocc_ros/occupancy_node", "lib/protoocc_ros/replay_node", "lib/protoocc_ros/evaluation_node",
                "share/protoocc_ros/package.xml", "share/protoocc_ros/msg/SemanticOccupancyGrid.msg",
                "share/protoocc_ros/launch", "share/protoocc_ros/config/occ3d_small.yaml",
                "share/protoocc_ros/models/protoocc_demo.safetensors",
                "share/ament_index/resource_index/packages/protoocc_ros"):
        assert (prefix / rel).exists(), rel
    site = next(prefix.glob("lib/python*/site-packages"))
    assert (site / "protoocc_ros" / "msg" / "_semantic_occupancy_grid.py").exists()
    assert (site / "protoocc_ros" / "tools" / "demo.py").exists(), "the Python package is installed beside the messages"
    assert (workspace / "setup.bash").exists()


def test_install_tree_alone_finds_shipped_files_by_name_and_loads_the_messages(workspace: Path) -> None:
    env = workspace_env(workspace)
    share = workspace / "protoocc_ros" / "share" / "protoocc_ros"
    probe = (NO_CHECKOUT + "import protoocc_ros; from protoocc_ros.config import resolve_config_path; "
             "from protoocc_ros.checkpoints.format import default_checkpoint_path; "
             "from protoocc_ros.ros.replay.bag_io import grid_msg_definition; "
             "from protoocc_ros.msg import SemanticOccupancyGrid as G; "
             "import rclpy; rclpy.init(); n = rclpy.create_node('probe'); n.create_publisher(G, 't', 1); "
             "print(protoocc_ros.__file__); print(resolve_config_path('occ3d_small')); "
             "print(default_checkpoint_path()); print(len(grid_msg_definition()))")
    for unsourced in (False, True):  # sourced, and (like `ros2 run` of an unsourced install) without AMENT_*
        run_env = dict(env, AMENT_PREFIX_PATH=os.environ.get("VIRTUAL_ENV", "")) if unsourced else env
        out = subprocess.run([sys.executable, "-c", probe], cwd=workspace.parent, env=run_env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        package, config, checkpoint, _ = out.stdout.split()[-4:]
        assert package.startswith(str(workspace)), out.stdout
        assert Path(config) == share / "config" / "occ3d_small.yaml", out.stdout
        assert Path(checkpoint) == share / "models" / "protoocc_demo.safetensors", out.stdout


def test_ros2_run_of_the_installed_node_with_a_config_name_serves_grids(workspace: Path, tmp_path: Path) -> None:
    """What `ros2 run protoocc_ros occupancy_node --ros-args -p config_file:=demo` does: the executable of
    lib/protoocc_ros in the sourced workspace environment; the bundled checkpoint comes from share/."""
    from test_occupancy_node import T0_NS, Rig  # noqa: PLC0415 - the camera rig of the node tests

    env = workspace_env(workspace)
    node_exe = workspace / "protoocc_ros" / "lib" / "protoocc_ros" / "occupancy_node"
    log = tmp_path / "node.log"
    args = ["--ros-args", "-p", "config_file:=demo", "-p", "device:=cpu", "-p", "cameras:=[CAM_FRONT, CAM_BACK]",
            "-p", "input_reliability:=reliable", "-p", "sync_slop_s:=0.02"]
    with log.open("w") as sink, ros_context() as ctx:
        proc = subprocess.Popen([str(node_exe), *args], env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
        try:
            rig = Rig(ctx)
            up = rig.spin_until(lambda: all(p.get_subscription_count() >= 1 for p in rig.images.values()), 120.0)
            assert up, log.read_text()[-3000:]
            stamp = T0_NS + 10 * 1_000_000_000
            rig.publish_set(stamp)
            assert rig.spin_until(lambda: stamp in rig.grids, 60.0), log.read_text()[-3000:]
        finally:
            proc.terminate()
            code = proc.wait(30)
            time.sleep(0.1)
    text = log.read_text()
    share = workspace / "protoocc_ros" / "share" / "protoocc_ros"
    assert f"loaded checkpoint {share / 'models' / 'protoocc_demo.safetensors'}" in text, text[-3000:]
    assert "configured: config demo" in text and "Traceback" not in text and code == 0, text[-3000:]
