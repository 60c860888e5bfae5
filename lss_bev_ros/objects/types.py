"""Plain data types of the objects stage (ROS-free): 3D objects, one frame's output, a 2D pose.

Frames follow REP-103 (x forward, y left, z up). Units: metres, radians, m/s, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _nan2x2() -> np.ndarray:
    return np.full((2, 2), np.nan)


@dataclass(frozen=True)
class Object3D:
    """One object on the ground plane of ``frame_id`` (REP-103: x forward, y left, z up).

    Metres, radians, m/s, seconds. ``position_covariance`` is 2 x 2 over (x, y) in m^2,
    ``velocity_covariance`` 2 x 2 over (vx, vy) in (m/s)^2 (None when unknown).
    """

    x: float  # box centre, m
    y: float  # box centre, m
    z: float  # box centre height above the ground, m
    length: float  # extent along the box's x axis, m
    width: float  # extent along the box's y axis, m
    height: float  # extent along z, m
    yaw: float  # rad about +z, 0 = +x of frame_id
    yaw_observed: bool  # False: yaw is a guess (e.g. 0 / motion direction)
    label: str  # nuScenes detection class ("car", "truck", "bus", "pedestrian", ...)
    label_probability: float  # 0..1
    existence_probability: float  # 0..1
    position_covariance: np.ndarray = field(default_factory=_nan2x2)  # 2 x 2, m^2
    vx: float = 0.0  # m/s in frame_id (0 for untracked detections)
    vy: float = 0.0  # m/s in frame_id
    velocity_covariance: np.ndarray | None = None  # 2 x 2 (m/s)^2, None when unknown
    track_id: int = -1  # -1: untracked; else unique per tracker lifetime
    age_s: float = 0.0  # time since the track was born, s
    cameras: tuple[str, ...] = ()  # cameras whose detections support it
    yaw_variance: float = float("nan")  # rad^2 (nan: not observed)
    source: str = ""  # evidence that produced it: "geometry", "bev", "fused"

    @property
    def position(self) -> np.ndarray:
        """(x, y) m."""
        return np.array([self.x, self.y])


@dataclass(frozen=True)
class ObjectsFrame:
    """Output of one :meth:`ObjectPipeline.step`."""

    stamp: float  # s, = input stamp of the detections/grid
    detected: list[Object3D]  # this frame, base_link, track_id -1
    tracked: list[Object3D]  # confirmed tracks, in ``tracked_frame``
    tracked_frame: str  # "map" when a pose was given, else "base_link"
    issues: dict[str, int]  # counts of rejected input this frame, e.g. {"nan_box": 1}
    stage_ms: dict[str, float]  # {"lift": .., "track": ..}


@dataclass(frozen=True)
class Pose2D:
    """map -> base_link on the ground plane: base_link origin (x, y) m and heading yaw rad in
    map, at ``stamp`` s."""

    x: float
    y: float
    yaw: float
    stamp: float

    def to_map(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 base_link points -> N x 2 map points."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rot = np.array([[c, -s], [s, c]])
        return np.asarray(xy, dtype=np.float64).reshape(-1, 2) @ rot.T + np.array([self.x, self.y])

    def to_base(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 map points -> N x 2 base_link points."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rot = np.array([[c, -s], [s, c]])
        return (np.asarray(xy, dtype=np.float64).reshape(-1, 2) - [self.x, self.y]) @ rot

    @property
    def rotation(self) -> np.ndarray:
        """2 x 2 rotation base_link -> map."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s], [s, c]])
