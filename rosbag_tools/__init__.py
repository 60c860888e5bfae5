"""rosbag2 tools for lss_bev_ros: nuScenes -> rosbag2, bag info, live replay, offline evaluation.

Built on the ``rosbags`` library (no ROS installation needed to write or read bags); only
``play`` touches rclpy. CLI: ``lss-bev-bag {convert,info,play,eval}``.
"""

from rosbag_tools.bagio import BagToolError

__all__ = ["BagToolError"]
