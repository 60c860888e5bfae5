"""Full pipeline: frame player + BEV + grid fusion + YOLO detector + evaluation + dashboard
(+ RViz).

    ros2 launch lss_bev_ros pipeline.launch.py [params_file:=...] [rviz:=true]

Every node reads the same ROS 2 parameter file (default: the installed config/pipeline.yaml);
the same node set starts without ``ros2 launch`` as
``python -m lss_bev_ros.pipeline --params-file config/pipeline.yaml``.
To run on a live rig instead of the player, remove ``frame_player_node`` from the file.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "lss_bev_ros"
CONFIG = "pipeline.yaml"
RVIZ = "lss_bev.rviz"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    params = LaunchConfiguration("params_file")
    return LaunchDescription([
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", CONFIG]),
                              description="ROS 2 parameter file for all nodes"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
        Node(package=PACKAGE, executable="frame_player_node", name="frame_player_node",
             parameters=[params], output="screen"),
        Node(package=PACKAGE, executable="bev_node", name="bev_node",
             parameters=[params], output="screen"),
        Node(package=PACKAGE, executable="fusion_node", name="fusion_node",
             parameters=[params], output="screen"),
        Node(package=PACKAGE, executable="detector_node", name="detector_node",
             parameters=[params], output="screen"),
        Node(package=PACKAGE, executable="objects_node", name="objects_node",
             parameters=[params], output="screen"),
        Node(package=PACKAGE, executable="eval_node", name="eval_node",
             parameters=[params], output="screen"),
        Node(package=PACKAGE, executable="dashboard_node", name="dashboard_node",
             parameters=[params], output="screen"),
        Node(package="rviz2", executable="rviz2", name="rviz2",
             arguments=["-d", PathJoinSubstitution([share, "config", RVIZ])],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
