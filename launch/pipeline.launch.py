"""Replay -> occupancy -> evaluation (docs/architecture.md "ROS interfaces"), the body of the dataset launch files.

nuscenes_replay / kitti_replay / demo .launch.py set the defaults (replay_params, config_file, dataroot)
and include this file; every argument here can also be given on their command line. replay_node exits
after the last frame and publishes /replay/done, evaluation_node then writes its report and exits.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from protoocc_ros.ros.runtime.dds import dds_profile_env


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("protoocc_ros")
    arg = LaunchConfiguration
    return LaunchDescription([
        # Fast DDS profile for large images / grids (config/fastdds_large_data.xml) unless one is set
        *[SetEnvironmentVariable(var, value) for var, value in dds_profile_env().items()],
        DeclareLaunchArgument("replay_params", default_value=PathJoinSubstitution([share, "config", "replay_demo.yaml"]),
                              description="replay_node parameter file"),
        DeclareLaunchArgument("evaluation_params",
                              default_value=PathJoinSubstitution([share, "config", "evaluation_node.yaml"]),
                              description="evaluation_node parameter file"),
        DeclareLaunchArgument("dataroot", default_value="synthetic",
                              description="dataset root, rosbag2 recording, or 'synthetic'"),
        DeclareLaunchArgument("rate", default_value="1.0", description="replay real-time factor (0 = unpaced)"),
        DeclareLaunchArgument("record_path", default_value="",
                              description="record the occupancy outputs to this new rosbag2 directory ('' = off)"),
        DeclareLaunchArgument("output_dir", default_value="outputs/evaluation",
                              description="evaluation report and renders"),
        DeclareLaunchArgument("config_file", default_value="",
                              description="occupancy_node config; '' = the checkpoint's own"),
        Node(
            package="protoocc_ros", executable="replay_node", name="replay_node", output="screen",
            parameters=[arg("replay_params"), {
                "dataroot": ParameterValue(arg("dataroot"), value_type=str),
                "rate": ParameterValue(arg("rate"), value_type=float),
                "record_path": ParameterValue(arg("record_path"), value_type=str),
            }],
        ),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "occupancy.launch.py"])),
            launch_arguments={"config_file": arg("config_file"), "use_sim_time": "true",
                              "input_reliability": "reliable"}.items(),
        ),
        Node(
            package="protoocc_ros", executable="evaluation_node", name="evaluation_node", output="screen",
            parameters=[arg("evaluation_params"), {
                "output_dir": ParameterValue(arg("output_dir"), value_type=str),
                "use_sim_time": True,
            }],
        ),
    ])
