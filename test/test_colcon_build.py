"""`colcon build` (pip-installed colcon + ament/rosidl toolchain) builds and installs the package.

The same CMakeLists.txt/package.xml is what a normal ROS 2 Jazzy/Kilted install builds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_colcon_build_installs_messages_nodes_launch_and_config(tmp_path: Path) -> None:
    colcon = Path(sys.executable).parent / "colcon"
    assert colcon.exists(), "colcon is installed by requirements.txt"
    # Build from a copy of the package sources (no .venv/build/install inside the source dir).
    src = tmp_path / "src" / "protoocc_ros"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".git",
                                                             "outputs", "__pycache__", ".cache", "runs"))
    env = os.environ.copy()
    numpy_inc = next(Path("/opt/python").glob("cp*/lib/python*/site-packages/numpy/_core/include"))
    result = subprocess.run(
        [str(colcon), "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(tmp_path / "src"),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF",
         f"-DPython3_NumPy_INCLUDE_DIR={numpy_inc}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    prefix = tmp_path / "install" / "protoocc_ros"
    for rel in ("lib/protoocc_ros/occupancy_node", "lib/protoocc_ros/replay_node", "lib/protoocc_ros/evaluation_node",
                "share/protoocc_ros/package.xml", "share/protoocc_ros/msg/SemanticOccupancyGrid.msg",
                "share/protoocc_ros/launch", "share/protoocc_ros/config", "share/protoocc_ros/models",
                "share/ament_index/resource_index/packages/protoocc_ros"):
        assert (prefix / rel).exists(), rel
    site = next(prefix.glob("lib/python*/site-packages"))
    assert (site / "protoocc_ros" / "msg" / "_semantic_occupancy_grid.py").exists()
    assert (site / "protoocc_ros" / "tools" / "demo.py").exists(), "the Python package is installed beside the messages"
    assert (tmp_path / "install" / "setup.bash").exists()
    # The freshly installed workspace alone provides the message type and the Python package.
    check_env = dict(env, PYTHONPATH=str(site),
                     AMENT_PREFIX_PATH=f"{prefix}:{env.get('VIRTUAL_ENV', '')}",
                     LD_LIBRARY_PATH=f"{prefix / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}")
    probe = ("import protoocc_ros, protoocc_ros.tools.demo as d;"
             "from protoocc_ros.msg import SemanticOccupancyGrid as G;"
             "import rclpy; rclpy.init(); n = rclpy.create_node('probe'); n.create_publisher(G, 't', 1);"
             "print(protoocc_ros.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", f"import site; site.addsitedir({str(Path(sys.executable).parents[1] / 'lib' / f'python{sys.version_info[0]}.{sys.version_info[1]}' / 'site-packages')!r}); " + probe],
                         cwd=tmp_path, env=check_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert str(site) in out.stdout
