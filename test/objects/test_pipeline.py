"""ObjectPipeline on real rig geometry: boxes projected from known cars, painted BEV grids."""

from __future__ import annotations

import numpy as np
import pytest
from objects_testutil import GRID, detections_for, painted_grid, synth_rig

from lss_bev_ros.detection.gt import CLASS_NAMES
from lss_bev_ros.detection.types import Detections
from lss_bev_ros.objects import ObjectPipeline, ObjectsConfig, Pose2D


def _pipe(mode: str = "fused") -> ObjectPipeline:
    return ObjectPipeline(synth_rig(), GRID, CLASS_NAMES, ObjectsConfig(mode=mode))


def test_car_seen_by_two_cameras_is_one_object() -> None:
    rig = synth_rig()
    car = [(12.0, -5.2, 0.0)]  # in the overlap of CAM_FRONT and CAM_FRONT_RIGHT
    dets = detections_for(rig, car)
    assert len(dets["CAM_FRONT"]) == 1 and len(dets["CAM_FRONT_RIGHT"]) == 1
    frame = _pipe().step(0.0, dets, painted_grid(car), None, None)
    (ob,) = frame.detected
    assert set(ob.cameras) == {"CAM_FRONT", "CAM_FRONT_RIGHT"}
    np.testing.assert_allclose([ob.x, ob.y], [12.0, -5.2], atol=0.8)


@pytest.mark.parametrize("mode", ["geometry", "fused"])
def test_track_keeps_its_id_when_the_car_changes_camera(mode: str) -> None:
    rig = synth_rig()
    pipe = _pipe(mode)
    ids, cams, speed = set(), set(), []
    for k in range(16):
        t = 0.25 * k
        car = [(14.0, 3.0 - 4.0 * t, -np.pi / 2)]  # crosses from CAM_FRONT into FRONT_RIGHT
        dets = detections_for(rig, car)
        cams |= {c for c, d in dets.items() if len(d)}
        frame = pipe.step(t, dets, painted_grid(car), None, None)
        ids |= {o.track_id for o in frame.tracked}
        if frame.tracked and frame.tracked[0].age_s > 1.0:
            speed.append(np.hypot(frame.tracked[0].vx, frame.tracked[0].vy))
    assert {"CAM_FRONT", "CAM_FRONT_RIGHT"} <= cams
    assert len(ids) == 1
    assert np.median(speed) == pytest.approx(4.0, rel=0.2)


def test_tracks_live_in_map_when_a_pose_is_given() -> None:
    rig = synth_rig()
    pipe = _pipe()
    car = [(15.0, 2.0, 0.0)]
    for k in range(3):  # ego drives +x in map at 5 m/s, heading pi/2: car static in map
        t = 0.5 * k
        pose = Pose2D(100.0, 50.0 + 5.0 * t, np.pi / 2, t)
        rel = [(15.0 - 5.0 * t, 2.0, 0.0)]
        frame = pipe.step(t, detections_for(rig, rel), painted_grid(rel), None, pose)
    (ob,) = frame.tracked
    assert frame.tracked_frame == "map"
    np.testing.assert_allclose([ob.x, ob.y], [98.0, 65.0], atol=1.0)
    assert np.hypot(ob.vx, ob.vy) < 1.5
    assert car  # the static car in base_link at t = 0


def test_geometry_mode_ignores_the_grid_and_bev_mode_ignores_the_boxes() -> None:
    rig = synth_rig()
    car = [(20.0, 0.0, 0.0)]
    ghost = [(-20.0, 10.0, 0.0)]  # only in the grid
    dets = detections_for(rig, car)
    grid = painted_grid(car + ghost)
    geo = _pipe("geometry").step(0.0, dets, grid, None, None).detected
    bev = _pipe("bev").step(0.0, dets, grid, None, None).detected
    assert len(geo) == 1 and geo[0].x > 0
    assert len(bev) == 2 and {o.label for o in bev} == {"car"}


def test_bad_input_is_dropped_and_counted() -> None:
    rig = synth_rig()
    dets = detections_for(rig, [(20.0, 0.0, 0.0)])
    h, w = 900, 1600
    dets["CAM_BACK"] = Detections(
        np.array([[np.nan, 1, 2, 3], [-50, -50, -10, -10], [2000, 100, 2100, 200],
                  [10, 10, 50, 50]]),
        np.array([0.9, 0.9, 0.9, 0.9]), np.array([0, 0, 0, 9]), (h, w))
    dets["CAM_NOPE"] = Detections.empty((h, w))
    frame = _pipe().step(0.0, dets, None, None, None)
    assert frame.issues == {"nan_box": 1, "negative_box": 1, "box_outside_image": 1,
                            "unknown_class": 1, "unknown_camera": 1, "no_grid": 1}
    assert len(frame.detected) == 1  # the good box still comes through (geometry only)


def test_grid_of_the_wrong_shape_is_counted_and_geometry_used() -> None:
    rig = synth_rig()
    dets = detections_for(rig, [(20.0, 0.0, 0.0)])
    frame = _pipe().step(0.0, dets, np.zeros((10, 10)), None, None)
    assert frame.issues == {"grid_shape": 1} and len(frame.detected) == 1


def test_stamp_jumping_back_is_counted_and_resets_tracks() -> None:
    rig = synth_rig()
    pipe = _pipe()
    car = [(20.0, 0.0, 0.0)]
    for t in (5.0, 5.5):
        first = pipe.step(t, detections_for(rig, car), painted_grid(car), None, None)
    frame = pipe.step(0.0, detections_for(rig, car), painted_grid(car), None, None)
    assert frame.issues.get("time_jump") == 1
    assert first.tracked and all(o.track_id != first.tracked[0].track_id for o in frame.tracked)


@pytest.mark.parametrize("ego_yaw", [None, 2.0])
def test_detection_of_a_stopped_car_keeps_the_heading_its_track_learned_while_moving(
        ego_yaw: float | None) -> None:
    """A blob gives the heading's axis only; the track knows the front from the motion
    (tracked in base_link without a pose, in map with a parked ego yawed by ``ego_yaw``)."""
    rig = synth_rig()
    pipe = _pipe()
    frames = [(0.25 * k, 24.0 - 4.0 * 0.25 * min(k, 10)) for k in range(30)]  # 4 m/s, stops
    for t, x in frames:  # a car coming toward the ego (heading pi), stops at x = 14 m
        car = [(x, -3.0, np.pi)]
        pose = None if ego_yaw is None else Pose2D(30.0, -7.0, ego_yaw, t)
        frame = pipe.step(t, detections_for(rig, car), painted_grid(car), None, pose)
    (tr,) = pipe.tracker.tracks
    assert not pipe.tracker.is_moving(tr)
    (ob,) = frame.detected
    (tracked,) = frame.tracked
    assert ob.yaw_observed and tracked.yaw_observed
    # the blob's own axis estimate lies in (-pi/2, pi/2]: the detection takes the track's front
    assert abs(np.cos(tracked.yaw - (ego_yaw or 0.0)) + 1.0) < 0.05  # in map / base_link
    assert abs(np.cos(ob.yaw) + 1.0) < 0.05, ob.yaw  # detections: base_link
