"""The nav2 costmap example (config/nav2_costmap.yaml) and the RViz map display fit occupancy_node's outputs: topics,
frames, sizes, and QoS, the last over real DDS: a subscriber with the static layer's QoS that joins after the grid
was published still gets it (transient local), as nav2's StaticLayer and RViz's Map display subscribe."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from ros_helpers import REPO
from test_occupancy_node import MAIN, running_node

from protoocc_ros.config import load_config
from protoocc_ros.ros.nodes.occupancy_params import OccupancyNodeParams
from protoocc_ros.ros.publishing.navigation_grid import msg_to_cells
from protoocc_ros.ros.runtime.params import param_specs

NAV2 = REPO / "config" / "nav2_costmap.yaml"
NAV2_PLUGINS = {"nav2_costmap_2d::StaticLayer", "nav2_costmap_2d::ObstacleLayer", "nav2_costmap_2d::InflationLayer",
                "nav2_costmap_2d::VoxelLayer"}


def costmap() -> dict:
    return yaml.safe_load(NAV2.read_text())["local_costmap"]["local_costmap"]["ros__parameters"]


def layer(params: dict, plugin: str) -> dict:
    (found,) = [params[name] for name in params["plugins"] if params[name]["plugin"] == plugin]
    return found


def test_nav2_costmap_is_a_rolling_window_on_the_node_topics_and_grid() -> None:
    params = costmap()
    defaults = {s.name: s.default for s in param_specs(OccupancyNodeParams)}
    assert params["rolling_window"] is True and params["track_unknown_space"] is True
    assert params["global_frame"] == defaults["odom_frame"] and params["robot_base_frame"] == defaults["base_frame"]
    assert {params[name]["plugin"] for name in params["plugins"]} <= NAV2_PLUGINS
    cfg = load_config("demo").dataset  # and occ3d_*: the same grid
    pcr = cfg.point_cloud_range
    assert params["resolution"] == cfg.voxel_size
    assert params["width"] == pcr[3] - pcr[0] and params["height"] == pcr[4] - pcr[1]
    static = layer(params, "nav2_costmap_2d::StaticLayer")
    assert static["map_topic"] == f"/{MAIN}/occupancy_2d" and static["map_subscribe_transient_local"] is True
    assert static["trinary_costmap"] is True and static["lethal_cost_threshold"] == 100
    obstacles = layer(params, "nav2_costmap_2d::ObstacleLayer")
    source = obstacles[obstacles["observation_sources"]]
    assert source["topic"] == f"/{MAIN}/occupied_voxels" and source["data_type"] == "PointCloud2"
    assert source["min_obstacle_height"] == defaults["occupancy_2d.min_height_m"]
    assert source["max_obstacle_height"] == defaults["occupancy_2d.max_height_m"]


def test_rviz_shows_the_navigation_grid_with_the_publisher_qos() -> None:
    rviz = yaml.safe_load((REPO / "config" / "protoocc.rviz").read_text())
    (display,) = [d for d in rviz["Visualization Manager"]["Displays"] if d["Class"] == "rviz_default_plugins/Map"]
    assert display["Topic"]["Value"] == f"/{MAIN}/occupancy_2d" and display["Enabled"] is True
    assert display["Topic"]["Durability Policy"] == "Transient Local"
    assert display["Topic"]["Reliability Policy"] == "Reliable"


def test_a_late_subscriber_with_the_static_layer_qos_gets_the_last_grid(tmp_path: Path) -> None:
    from nav_msgs.msg import OccupancyGrid
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    static = layer(costmap(), "nav2_costmap_2d::StaticLayer")
    durability = DurabilityPolicy.TRANSIENT_LOCAL if static["map_subscribe_transient_local"] else \
        DurabilityPolicy.VOLATILE
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=durability)  # nav2 StaticLayer's map subscription
    with running_node(tmp_path, publish_markers=False, publish_occupied_voxels=False) as running:
        rig = running.rig
        rig.spin_until(lambda: False, 1.0)  # let discovery match /tf and CameraInfo too, not only the images
        stamp = rig.next_stamp(5.0)
        rig.publish_set(stamp)
        rig.wait_grid(stamp, timeout_s=20.0)
        got: list[OccupancyGrid] = []
        rig.node.create_subscription(OccupancyGrid, static["map_topic"], got.append, qos)  # joins afterwards
        assert rig.spin_until(lambda: bool(got), 10.0), "a late transient-local subscriber got no ~/occupancy_2d"
        cells = msg_to_cells(got[-1])
        assert got[-1].header.stamp.sec * 10**9 + got[-1].header.stamp.nanosec == stamp
        assert cells.cells.shape == (40, 40) and cells.frame_id == costmap()["robot_base_frame"]
        assert set(np.unique(cells.cells).tolist()) <= {-1, 0, 100}


@pytest.mark.parametrize("name", ["occupancy_2d.min_height_m", "occupancy_2d.max_height_m",
                                  "occupancy_2d.min_confidence", "occupancy_2d.obstacle_classes"])
def test_occupancy_2d_parameters_are_live_and_in_the_parameter_file(name: str) -> None:
    spec = {s.name: s for s in param_specs(OccupancyNodeParams)}[name]
    assert spec.live
    text = (REPO / "config" / "occupancy_node.yaml").read_text()
    assert name.split(".")[1] + ":" in text
