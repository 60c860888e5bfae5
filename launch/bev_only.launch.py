"""BEV segmentation only, on live cameras (or any image / CameraInfo publisher).

    ros2 launch lss_bev_ros bev_only.launch.py [params_file:=...] [rviz:=true]

Same as ``python -m lss_bev_ros.pipeline --params-file config/bev_only.yaml``.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "lss_bev_ros"
CONFIG = "bev_only.yaml"
RVIZ = "lss_bev.rviz"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    params = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", CONFIG]),
                              description="ROS 2 parameter file"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        Node(package=PACKAGE, executable="bev_node", name="bev_node",
             parameters=[params], output="screen"),
        Node(package="rviz2", executable="rviz2", name="rviz2",
             arguments=["-d", PathJoinSubstitution([share, "config", RVIZ])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
