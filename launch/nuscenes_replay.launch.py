"""Replay of Occ3D-nuScenes validation scenes -> occupancy_node -> evaluation_node (pipeline.launch.py with these defaults).

ros2 launch protoocc_ros nuscenes_replay.launch.py dataroot:=data/occ3d-nus checkpoint:=... device:=... record_path:=... rviz:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("protoocc_ros")
    return LaunchDescription([
        DeclareLaunchArgument("replay_params", default_value=PathJoinSubstitution([share, "config", "replay_nuscenes.yaml"])),
        DeclareLaunchArgument("config_file", default_value=""),  # the checkpoint's own config
        DeclareLaunchArgument("dataroot", default_value="data/occ3d-nus"),
        DeclareLaunchArgument("output_dir", default_value="outputs/nuscenes_eval"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "pipeline.launch.py"]))),
    ])
