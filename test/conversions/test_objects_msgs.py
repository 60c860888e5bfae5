"""Object3D -> DetectedObjects / TrackedObjects / MarkerArray, Detection2DArray -> Detections,
odometry -> Pose2D (lss_bev_ros.conversions.objects), without DDS."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lss_bev_ros.conversions.objects import (
    UNOBSERVED_YAW_VAR,
    detected_objects_msg,
    detections_from_msg,
    new_uuid_prefix,
    object_from_tracked_msg,
    object_markers,
    object_uuid,
    objects_in_base,
    pose2d_from_pose,
    tracked_objects_msg,
)
from lss_bev_ros.msg import ObjectClassification, TrackedObjectKinematics
from lss_bev_ros.objects.types import Object3D, Pose2D

STAMP = SimpleNamespace(sec=1700000000, nanosec=123456789)


def _car(**kw) -> Object3D:
    base = dict(x=12.0, y=-3.0, z=0.8, length=4.5, width=1.9, height=1.6, yaw=math.pi / 2,
                yaw_observed=True, label="car", label_probability=0.8,
                existence_probability=0.9, position_covariance=np.array([[0.5, 0.1], [0.1, 0.2]]),
                vx=0.0, vy=5.0, velocity_covariance=np.array([[0.3, 0.0], [0.0, 0.1]]),
                track_id=7, age_s=2.5, cameras=("CAM_FRONT", "CAM_FRONT_RIGHT"),
                yaw_variance=0.04)
    base.update(kw)
    return Object3D(**base)


def test_tracked_object_has_autoware_pose_covariance_layout_and_object_frame_twist():
    prefix = new_uuid_prefix()
    msg = tracked_objects_msg([_car()], STAMP, "map", prefix)
    assert msg.header.stamp is STAMP and msg.header.frame_id == "map"
    o = msg.objects[0]
    k = o.kinematics
    cov = np.asarray(k.pose_with_covariance.covariance).reshape(6, 6)
    np.testing.assert_allclose(cov[:2, :2], [[0.5, 0.1], [0.1, 0.2]])
    assert cov[2, 2] == pytest.approx((1.6 / 4) ** 2)
    assert cov[5, 5] == pytest.approx(0.04) and cov[3, 3] == cov[4, 4] == 0.0
    q = k.pose_with_covariance.pose.orientation
    assert (q.z, q.w) == pytest.approx((math.sin(math.pi / 4), math.cos(math.pi / 4)))
    # heading +y, moving +y at 5 m/s: all of it is along the heading in the object frame
    t = k.twist_with_covariance.twist.linear
    assert (t.x, t.y) == pytest.approx((5.0, 0.0), abs=1e-9)
    tcov = np.asarray(k.twist_with_covariance.covariance).reshape(6, 6)
    np.testing.assert_allclose(tcov[:2, :2], [[0.1, 0.0], [0.0, 0.3]], atol=1e-12)
    assert k.acceleration_with_covariance.covariance[0] == -1.0
    assert k.orientation_availability == TrackedObjectKinematics.AVAILABLE
    assert not k.is_stationary
    assert (o.shape.dimensions.x, o.shape.dimensions.y, o.shape.dimensions.z) == pytest.approx(
        (4.5, 1.9, 1.6))
    assert o.id == 7 and bytes(o.object_id.uuid) == object_uuid(prefix, 7)
    assert o.classification[0].label == ObjectClassification.CAR
    assert o.classification[0].label_name == "car"
    assert list(o.source_cameras) == ["CAM_FRONT", "CAM_FRONT_RIGHT"] and o.age_s == 2.5
    back = object_from_tracked_msg(o)
    assert (back["vx"], back["vy"], back["x"], back["id"]) == pytest.approx((0.0, 5.0, 12.0, 7))
    # the velocity covariance comes back in the header frame
    np.testing.assert_allclose(back["velocity_covariance"], [[0.3, 0.0], [0.0, 0.1]], atol=1e-12)


def test_unobserved_yaw_is_unavailable_with_a_uniform_yaw_variance():
    o = tracked_objects_msg([_car(yaw_observed=False, vx=0.0, vy=0.0, velocity_covariance=None,
                                  yaw=0.0)], STAMP, "base_link", new_uuid_prefix()).objects[0]
    k = o.kinematics
    assert k.orientation_availability == TrackedObjectKinematics.UNAVAILABLE
    assert k.pose_with_covariance.covariance[35] == pytest.approx(UNOBSERVED_YAW_VAR)
    assert k.twist_with_covariance.covariance[0] == -1.0 and k.is_stationary
    assert object_from_tracked_msg(o)["velocity_covariance"] is None


def test_detected_object_without_velocity_has_no_twist():
    m = detected_objects_msg([_car(vx=0.0, vy=0.0, velocity_covariance=None,
                                   position_covariance=np.full((2, 2), np.nan))],
                             STAMP, "base_link")
    k = m.objects[0].kinematics
    assert not k.has_twist and not k.has_twist_covariance
    assert not k.has_position_covariance
    assert k.orientation_availability == k.SIGN_UNKNOWN  # observed yaw, not from motion
    assert m.objects[0].existence_probability == pytest.approx(0.9)


def test_object_uuid_differs_per_prefix_and_id_and_sets_rfc4122_bits():
    a, b = new_uuid_prefix(), new_uuid_prefix()
    ids = {object_uuid(p, i) for p in (a, b) for i in range(50)}
    assert len(ids) == 100
    u = object_uuid(a, 3)
    assert len(u) == 16 and u[6] >> 4 == 4 and u[8] >> 6 == 0b10
    assert int.from_bytes(u[8:], "big") & ((1 << 62) - 1) == 3


def _det(label: str, class_id: int, cx=100.0, cy=50.0, w=20.0, h=10.0, tid=-1):
    return SimpleNamespace(label=label, class_id=class_id, score=0.7, center_x=cx, center_y=cy,
                           size_x=w, size_y=h, track_id=tid)


def test_detection_array_to_detections_matches_labels_by_name_and_drops_unknown():
    msg = SimpleNamespace(image_width=800, image_height=450, detections=[
        _det("bus", 0, tid=4),          # label wins over a class_id of another model
        _det("", 1),                    # no label: class_id
        _det("bicycle", 9),             # neither known: dropped
        _det("car", 0, w=float("nan")),  # passed on: the core rejects and counts it
    ])
    d, unknown = detections_from_msg(msg, ("car", "truck", "bus", "pedestrian"))
    assert unknown == 1 and d.image_size == (450, 800)
    assert d.cls.tolist() == [2, 1, 0] and d.track_id.tolist() == [4, -1, -1]
    np.testing.assert_allclose(d.xyxy[0], [90, 45, 110, 55])
    assert np.isnan(d.xyxy[2]).any()


def test_pose_from_odometry_quaternion_and_rejects_non_finite():
    pos = SimpleNamespace(x=1.0, y=2.0, z=0.0)
    q = SimpleNamespace(x=0.0, y=0.0, z=math.sin(0.3), w=math.cos(0.3))
    assert pose2d_from_pose(pos, q, 5.0) == Pose2D(1.0, 2.0, pytest.approx(0.6), 5.0)
    assert pose2d_from_pose(SimpleNamespace(x=math.nan, y=0.0, z=0.0), q, 5.0) is None
    assert pose2d_from_pose(pos, SimpleNamespace(x=0.0, y=0.0, z=0.0, w=0.0), 5.0) is None


def test_markers_clear_first_then_box_id_and_velocity_arrow_per_track():
    from visualization_msgs.msg import Marker

    tracks = [_car(), _car(track_id=8, label="pedestrian", vx=0.0, vy=0.0)]
    ma = object_markers(tracks, "map", [_car(track_id=-1)], "base_link", STAMP)
    assert ma.markers[0].action == Marker.DELETEALL
    by_ns: dict[str, list] = {}
    for m in ma.markers[1:]:
        by_ns.setdefault(m.ns, []).append(m)
    assert [m.id for m in by_ns["tracked/box"]] == [7, 8]
    assert all(m.type == Marker.CUBE and m.header.frame_id == "map" for m in by_ns["tracked/box"])
    assert by_ns["tracked/box"][0].color.b > by_ns["tracked/box"][1].color.b  # car blue, ped red
    assert by_ns["tracked/id"][0].text.startswith("#7 car 5.0 m/s")
    arrows = by_ns["tracked/velocity"]
    assert len(arrows) == 1 and arrows[0].type == Marker.ARROW  # the pedestrian stands still
    assert arrows[0].points[1].y - arrows[0].points[0].y == pytest.approx(5.0)
    assert by_ns["detected/box"][0].header.frame_id == "base_link"
    assert all(m.header.stamp is STAMP for m in ma.markers)


def test_objects_in_base_undo_the_ego_pose_and_keep_velocity_over_ground():
    ego = Pose2D(100.0, 50.0, math.pi / 2, 3.0)  # ego heading +y of map
    o = _car(x=100.0, y=60.0, yaw=math.pi / 2, vx=0.0, vy=5.0,
             position_covariance=np.diag([4.0, 1.0]))  # 10 m ahead, driving the same way
    b = objects_in_base([o], ego)[0]
    assert (b.x, b.y, b.yaw) == pytest.approx((10.0, 0.0, 0.0), abs=1e-9)
    assert (b.vx, b.vy) == pytest.approx((5.0, 0.0), abs=1e-9)
    np.testing.assert_allclose(b.position_covariance, np.diag([1.0, 4.0]), atol=1e-12)
    assert b.track_id == o.track_id
