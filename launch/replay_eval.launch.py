"""Replay + evaluation: nuScenes frames (player) or a rosbag2 -> BEV -> LiDAR-referenced metrics.

    ros2 launch lss_bev_ros replay_eval.launch.py                      # frame_player_node
    ros2 launch lss_bev_ros replay_eval.launch.py bag:=/path/to/bag    # ros2 bag play --clock

With a bag, the nodes run on the bag's clock (use_sim_time) so latencies refer to it; the
player is not started. Same node set as
``python -m lss_bev_ros.pipeline --params-file config/replay_eval.yaml``.
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "lss_bev_ros"
CONFIG = "replay_eval.yaml"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    params = LaunchConfiguration("params_file")
    bag = LaunchConfiguration("bag")
    use_bag = PythonExpression(["'", bag, "' != ''"])
    sim_time = {"use_sim_time": use_bag}
    return LaunchDescription([
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", CONFIG]),
                              description="ROS 2 parameter file for all nodes"),
        DeclareLaunchArgument("bag", default_value="",
                              description="rosbag2 to replay (empty: frame_player_node)"),
        ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock"], output="screen",
                       condition=IfCondition(use_bag)),
        Node(package=PACKAGE, executable="frame_player_node", name="frame_player_node",
             parameters=[params], output="screen", condition=UnlessCondition(use_bag)),
        Node(package=PACKAGE, executable="bev_node", name="bev_node",
             parameters=[params, sim_time], output="screen"),
        Node(package=PACKAGE, executable="eval_node", name="eval_node",
             parameters=[params, sim_time], output="screen"),
    ])
