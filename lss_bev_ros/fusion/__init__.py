"""Temporal fusion of BEV occupancy grids (ROS-free): :class:`GridFusion` and its pose buffer."""

from lss_bev_ros.fusion.grid_fusion import (
    FusedGrid,
    FusionConfig,
    FusionStats,
    FusionStatus,
    GridFusion,
    Pose2D,
    angle_diff,
)
from lss_bev_ros.fusion.poses import PoseBuffer, PoseLookup

__all__ = [
    "FusedGrid",
    "FusionConfig",
    "FusionStats",
    "FusionStatus",
    "GridFusion",
    "Pose2D",
    "PoseBuffer",
    "PoseLookup",
    "angle_diff",
]
