"""Stamped ego poses -> the pose at a grid's stamp (ROS-free).

``/odom`` (or ``/tf`` map -> base_link) and the BEV grids arrive at different stamps: nuScenes
cameras fire up to ~50 ms away from the LiDAR sweep that ``/odom`` follows. :class:`PoseBuffer`
keeps the recent poses and interpolates (linear in x, y; shortest arc in yaw) between the two
that bracket a stamp; it never extrapolates further than ``tolerance_s``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from lss_bev_ros.fusion.grid_fusion import Pose2D, angle_diff


@dataclass(frozen=True)
class PoseLookup:
    """Result of :meth:`PoseBuffer.lookup`: ``pose`` (None when not available) and why."""

    pose: Pose2D | None
    reason: str  # "ok", "empty", "too_old", "not_yet", "gap"


class PoseBuffer:
    """The last ``capacity`` poses, sorted by stamp (s).

    Args:
        capacity: poses kept.
        tolerance_s: a stamp up to this far outside the buffered span takes the nearest pose.
        max_interp_gap_s: two poses further apart than this are not interpolated between.
    """

    def __init__(self, capacity: int = 200, tolerance_s: float = 0.1,
                 max_interp_gap_s: float = 1.0) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2, got {capacity}")
        if not (tolerance_s >= 0 and max_interp_gap_s > 0):
            raise ValueError("tolerance_s must be >= 0 and max_interp_gap_s > 0")
        self.capacity = capacity
        self.tolerance_s = tolerance_s
        self.max_interp_gap_s = max_interp_gap_s
        self._stamps: list[float] = []
        self._poses: list[Pose2D] = []

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp(self) -> float | None:
        """Stamp of the newest pose (s), None when empty."""
        return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        """Drop all poses (e.g. after a time jump)."""
        self._stamps.clear()
        self._poses.clear()

    def add(self, stamp: float, pose: Pose2D) -> None:
        """Insert a pose (any order; a pose with an existing stamp replaces it). Non-finite
        poses are stored too: the fusion counts and rejects them where they are used."""
        i = bisect.bisect_left(self._stamps, stamp)
        if i < len(self._stamps) and self._stamps[i] == stamp:
            self._poses[i] = pose
            return
        self._stamps.insert(i, stamp)
        self._poses.insert(i, pose)
        if len(self._stamps) > self.capacity:
            del self._stamps[0], self._poses[0]

    def lookup(self, stamp: float) -> PoseLookup:
        """The pose at ``stamp`` (interpolated), or None with the reason."""
        st = self._stamps
        if not st:
            return PoseLookup(None, "empty")
        if stamp <= st[0]:
            ok = st[0] - stamp <= self.tolerance_s
            return PoseLookup(self._poses[0] if ok else None, "ok" if ok else "too_old")
        if stamp >= st[-1]:
            ok = stamp - st[-1] <= self.tolerance_s
            return PoseLookup(self._poses[-1] if ok else None, "ok" if ok else "not_yet")
        i = bisect.bisect_left(st, stamp)
        t0, t1 = st[i - 1], st[i]
        a, b = self._poses[i - 1], self._poses[i]
        if t1 - t0 > self.max_interp_gap_s:
            near = min((stamp - t0, a), (t1 - stamp, b), key=lambda x: x[0])
            if near[0] <= self.tolerance_s:
                return PoseLookup(near[1], "ok")
            return PoseLookup(None, "gap")
        w = (stamp - t0) / (t1 - t0)
        yaw = a.yaw + w * angle_diff(b.yaw, a.yaw)
        yaw = math.remainder(yaw, 2.0 * math.pi) if math.isfinite(yaw) else yaw
        return PoseLookup(Pose2D(a.x + w * (b.x - a.x), a.y + w * (b.y - a.y), yaw), "ok")
