"""Replay of the embedded synthetic sample with the bundled demo checkpoint (CPU) -> occupancy_node -> evaluation_node (pipeline.launch.py with these defaults).

ros2 launch protoocc_ros demo.launch.py dataroot:=synthetic checkpoint:=... device:=... record_path:=... rviz:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("protoocc_ros")
    return LaunchDescription([
        DeclareLaunchArgument("replay_params", default_value=PathJoinSubstitution([share, "config", "replay_demo.yaml"])),
        DeclareLaunchArgument("config_file", default_value="demo"),
        DeclareLaunchArgument("dataroot", default_value="synthetic"),
        DeclareLaunchArgument("output_dir", default_value="outputs/demo"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "pipeline.launch.py"]))),
    ])
