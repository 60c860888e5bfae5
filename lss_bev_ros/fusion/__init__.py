"""Temporal fusion of BEV occupancy grids (ROS-free): :class:`GridFusion` and its pose buffer."""

from lss_bev_ros.fusion.grid_fusion import (
    FusedGrid,
    FusionConfig,
    FusionStats,
    FusionStatus,
    GridFusion,
    MapWindow,
    Pose2D,
    PoseLike,
    angle_diff,
    pose_is_finite,
    shift_cells,
    warp_grid,
)
from lss_bev_ros.fusion.object_motion import (
    ObjectMotion,
    TrackSet,
    TrackSetBuffer,
    moving_box_mask,
    moving_objects,
    speed_sigma,
    track_set_for,
    transport_history,
)
from lss_bev_ros.fusion.poses import PoseBuffer, PoseLookup

__all__ = [
    "FusedGrid",
    "FusionConfig",
    "FusionStats",
    "FusionStatus",
    "GridFusion",
    "MapWindow",
    "ObjectMotion",
    "Pose2D",
    "PoseBuffer",
    "PoseLike",
    "PoseLookup",
    "TrackSet",
    "TrackSetBuffer",
    "angle_diff",
    "moving_box_mask",
    "moving_objects",
    "pose_is_finite",
    "shift_cells",
    "speed_sigma",
    "track_set_for",
    "transport_history",
    "warp_grid",
]
