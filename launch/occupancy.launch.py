"""Live vehicle: occupancy_node only (docs/architecture.md "ROS interfaces"); cameras, CameraInfo and TF come from the vehicle's drivers.

ros2 launch protoocc_ros occupancy.launch.py                  # the bundled demo checkpoint, its own config
ros2 launch protoocc_ros occupancy.launch.py checkpoint:=/path/model.safetensors \
    device:=cuda cameras:="['CAM_FRONT', 'CAM_BACK']" rviz:=true foxglove:=true

autostart:=false leaves the managed node 'unconfigured' for a lifecycle manager or
`ros2 lifecycle set /occupancy_node configure` / `activate` (docs/operating.md).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
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
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "occupancy_node.yaml"]),
                              description="occupancy_node parameter file; the arguments below override it"),
        DeclareLaunchArgument("config_file", default_value="",
                              description="config: a YAML path or a shipped name; '' = the checkpoint's own config"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="safetensors checkpoint; '' = the bundled demo checkpoint"),
        DeclareLaunchArgument("device", default_value="auto", description="cpu, cuda, cuda:N or auto"),
        DeclareLaunchArgument("cameras", default_value="['']",
                              description="YAML list of camera names in model order; [''] = the config's cameras"),
        DeclareLaunchArgument("image_transport", default_value="raw", description="raw or compressed"),
        DeclareLaunchArgument("input_reliability", default_value="best_effort",
                              description="camera input QoS: best_effort (live) or reliable (replays)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (replays)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure + activate at start; false = wait for the lifecycle services"),
        DeclareLaunchArgument("foxglove", default_value="false",
                              description="serve the Foxglove live view (WebSocket; layout config/foxglove_layout.json)"),
        DeclareLaunchArgument("foxglove_host", default_value="127.0.0.1",
                              description="address of the Foxglove server (0.0.0.0 = reachable from other machines)"),
        DeclareLaunchArgument("foxglove_port", default_value="8765", description="port of the Foxglove server"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/protoocc.rviz"),
        Node(
            package="protoocc_ros", executable="occupancy_node", name="occupancy_node", output="screen",
            parameters=[arg("params_file"), {
                "config_file": ParameterValue(arg("config_file"), value_type=str),
                "checkpoint": ParameterValue(arg("checkpoint"), value_type=str),
                "device": ParameterValue(arg("device"), value_type=str),
                "cameras": arg("cameras"),
                "image_transport": ParameterValue(arg("image_transport"), value_type=str),
                "input_reliability": ParameterValue(arg("input_reliability"), value_type=str),
                "use_sim_time": arg("use_sim_time"),
                "autostart": ParameterValue(arg("autostart"), value_type=bool),
                "foxglove.enabled": ParameterValue(arg("foxglove"), value_type=bool),
                "foxglove.host": ParameterValue(arg("foxglove_host"), value_type=str),
                "foxglove.port": ParameterValue(arg("foxglove_port"), value_type=int),
            }],
        ),
        Node(
            package="rviz2", executable="rviz2", name="rviz2", output="screen",
            arguments=["-d", PathJoinSubstitution([share, "config", "protoocc.rviz"])],
            parameters=[{"use_sim_time": arg("use_sim_time")}],
            condition=IfCondition(arg("rviz")),
        ),
    ])
