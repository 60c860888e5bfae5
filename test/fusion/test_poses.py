"""PoseBuffer: interpolation between bracketing poses, tolerance, gaps; Pose2D conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lss_bev_ros.fusion import Pose2D, PoseBuffer


def test_pose_is_interpolated_between_bracketing_stamps_across_the_yaw_wrap():
    buf = PoseBuffer(tolerance_s=0.05)
    buf.add(2.0, Pose2D(10.0, 0.0, -3.1))
    buf.add(1.0, Pose2D(0.0, 4.0, 3.1))  # inserted out of order
    r = buf.lookup(1.5)
    assert r.reason == "ok"
    assert r.pose.x == pytest.approx(5.0) and r.pose.y == pytest.approx(2.0)
    assert abs(abs(r.pose.yaw) - math.pi) < 1e-9  # through pi, not through 0


def test_lookup_does_not_extrapolate_beyond_the_tolerance():
    buf = PoseBuffer(tolerance_s=0.05)
    assert buf.lookup(1.0).reason == "empty"
    buf.add(1.0, Pose2D(1.0, 2.0, 0.3))
    assert buf.lookup(1.04).pose == Pose2D(1.0, 2.0, 0.3)
    assert buf.lookup(1.2).pose is None and buf.lookup(1.2).reason == "not_yet"
    assert buf.lookup(0.5).reason == "too_old"


def test_poses_further_apart_than_max_interp_gap_are_not_interpolated():
    buf = PoseBuffer(tolerance_s=0.05, max_interp_gap_s=1.0)
    buf.add(0.0, Pose2D(0.0, 0.0, 0.0))
    buf.add(5.0, Pose2D(50.0, 0.0, 0.0))
    assert buf.lookup(2.5).reason == "gap"
    assert buf.lookup(4.98).pose == Pose2D(50.0, 0.0, 0.0)


def test_capacity_drops_the_oldest():
    buf = PoseBuffer(capacity=3)
    for k in range(5):
        buf.add(float(k), Pose2D(float(k), 0.0, 0.0))
    assert len(buf) == 3 and buf.lookup(2.0).pose.x == 2.0 and buf.lookup(0.0).pose is None


def test_pose2d_from_quaternion_and_matrix_agree():
    yaw = 2.5
    q = Pose2D.from_quaternion(1.0, 2.0, 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    T = np.eye(4)
    T[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    T[:2, 3] = [1.0, 2.0]
    m = Pose2D.from_matrix(T)
    assert q.yaw == pytest.approx(yaw) and m.yaw == pytest.approx(yaw)
    assert (q.x, q.y) == (m.x, m.y) == (1.0, 2.0)
    assert not Pose2D(math.nan, 0.0, 0.0).finite
