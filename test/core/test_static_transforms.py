"""StaticTransformTree: /tf_static composition without tf2_ros, checked against points."""

from __future__ import annotations

import numpy as np
import pytest

from lss_bev_ros.calibration import quaternion_to_matrix
from lss_bev_ros.static_transforms import RigidTransform, StaticTransformTree


def _rot(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    ry = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
    return rz @ ry


def _apply(tf: RigidTransform, p: np.ndarray) -> np.ndarray:
    return tf.rotation @ p + tf.translation


@pytest.fixture
def tree() -> StaticTransformTree:
    """base_link -> roof_rack -> cam_front (optical), base_link -> lidar_top."""
    t = StaticTransformTree()
    t.set("base_link", "roof_rack", RigidTransform(_rot(10), np.array([1.0, 0.0, 1.5])))
    optical = quaternion_to_matrix([0.5, -0.5, 0.5, -0.5])  # x right, y down, z forward
    t.set("/roof_rack", "cam_front", RigidTransform(_rot(-5) @ optical, np.array([0.3, 0.1, 0.2])))
    t.set("base_link", "lidar_top", RigidTransform(_rot(90, 2.0), np.array([0.9, 0.0, 1.8])))
    return t


def test_chain_composes_edge_by_edge(tree):
    p_cam = np.array([0.2, -0.1, 10.0])  # 10 m in front of the camera
    cam_to_rack = tree.lookup("roof_rack", "cam_front")
    rack_to_base = tree.lookup("base_link", "roof_rack")
    want = _apply(rack_to_base, _apply(cam_to_rack, p_cam))
    got = _apply(tree.lookup("base_link", "cam_front"), p_cam)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0] > 9.0  # the camera looks forward along base_link x


def test_lookup_across_branches_and_inverse(tree):
    p_cam = np.array([1.0, 2.0, 3.0])
    cam_to_lidar = tree.lookup("lidar_top", "cam_front")
    via_base = tree.lookup("base_link", "lidar_top").inverse().compose(
        tree.lookup("base_link", "cam_front"))
    np.testing.assert_allclose(_apply(cam_to_lidar, p_cam), _apply(via_base, p_cam), atol=1e-12)
    back = tree.lookup("cam_front", "lidar_top")
    np.testing.assert_allclose(_apply(back, _apply(cam_to_lidar, p_cam)), p_cam, atol=1e-12)
    ident = tree.lookup("/cam_front", "cam_front")
    assert np.array_equal(ident.rotation, np.eye(3))


def test_unknown_frames_loops_and_bad_input(tree):
    with pytest.raises(LookupError, match="not connected"):
        tree.lookup("base_link", "cam_back")
    tree.set("odom_x", "gps", RigidTransform.identity())
    with pytest.raises(LookupError, match="two trees"):
        tree.lookup("base_link", "gps")
    tree.set("cam_front", "base_link", RigidTransform.identity())  # closes a loop
    with pytest.raises(LookupError, match="loop"):
        tree.lookup("base_link", "lidar_top")
    for bad in (RigidTransform(np.eye(3) * 2, np.zeros(3)),
                RigidTransform(np.diag([1.0, 1.0, -1.0]), np.zeros(3)),
                RigidTransform(np.eye(3), np.array([0.0, np.nan, 0.0]))):
        with pytest.raises(ValueError):
            tree.set("a", "b", bad)
    with pytest.raises(ValueError, match="bad frame ids"):
        tree.set("a", "/a", RigidTransform.identity())


def test_version_counts_real_changes_only(tree):
    v = tree.version
    same = tree.lookup("base_link", "roof_rack")
    assert tree.set("base_link", "roof_rack", same) is False and tree.version == v
    moved = RigidTransform(same.rotation, same.translation + np.array([0.0, 0.0, 0.1]))
    assert tree.set("base_link", "roof_rack", moved) is True and tree.version == v + 1
    assert tree.lookup("base_link", "cam_front").translation[2] == pytest.approx(
        _apply(moved, tree.lookup("roof_rack", "cam_front").translation)[2])
