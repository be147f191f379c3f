"""Replay of SemanticKITTI sequences (image_2) -> occupancy_node -> evaluation_node (pipeline.launch.py with these defaults).

ros2 launch protoocc_ros kitti_replay.launch.py dataroot:=data/semantic_kitti checkpoint:=... device:=... record_path:=... rviz:=true
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("protoocc_ros")
    return LaunchDescription([
        DeclareLaunchArgument("replay_params", default_value=PathJoinSubstitution([share, "config", "replay_kitti.yaml"])),
        DeclareLaunchArgument("config_file", default_value=""),  # the checkpoint's own config
        DeclareLaunchArgument("dataroot", default_value="data/semantic_kitti"),
        DeclareLaunchArgument("output_dir", default_value="outputs/kitti_eval"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "pipeline.launch.py"]))),
    ])
