"""Ground-plane tracker: constant-velocity Kalman filter (filterpy) + Hungarian assignment."""

from __future__ import annotations

import numpy as np

from lss_bev_ros.objects.config import ObjectsConfig
from lss_bev_ros.objects.tracker import GroundTracker
from lss_bev_ros.objects.types import Object3D


def _car(x: float, y: float, score: float = 0.9) -> Object3D:
    return Object3D(x, y, 0.8, 4.5, 1.9, 1.6, 0.0, False, "car", score, score,
                    np.eye(2) * 0.3**2)


def _run(tracker: GroundTracker, frames: list[tuple[float, list[Object3D]]]):
    for t, objs in frames:
        tracker.step(t, objs)
    return tracker.outputs(frames[-1][0])


def test_car_at_constant_velocity_keeps_one_id_and_gets_its_speed() -> None:
    rng = np.random.default_rng(0)
    tr = GroundTracker(ObjectsConfig())
    frames = [(0.5 * k, [_car(8.0 * 0.5 * k + rng.normal(0, 0.2), 3.0 + rng.normal(0, 0.2))])
              for k in range(10)]
    ids = set()
    for t, objs in frames:
        tr.step(t, objs)
        ids |= {o.track_id for o in tr.outputs(t)}
    (out,) = tr.outputs(frames[-1][0])
    assert len(ids) == 1
    assert abs(out.vx - 8.0) < 0.8 and abs(out.vy) < 0.8
    assert out.velocity_covariance is not None and out.velocity_covariance[0, 0] < 1.0
    assert out.yaw_observed and abs(out.yaw) < 0.2  # heading from the motion


def test_two_crossing_lanes_keep_their_ids() -> None:
    tr = GroundTracker(ObjectsConfig())
    ids: dict[int, set[int]] = {0: set(), 1: set()}
    for k in range(8):
        t = 0.5 * k
        tr.step(t, [_car(5.0 * t, 2.0), _car(30.0 - 5.0 * t, -2.0)])
        for o in tr.outputs(t):
            ids[0 if o.y > 0 else 1].add(o.track_id)
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1]


def test_track_survives_a_one_second_occlusion() -> None:
    tr = GroundTracker(ObjectsConfig())
    frames = [(0.5 * k, [_car(10.0 + 4.0 * 0.5 * k, 0.0)]) for k in range(4)]
    frames += [(2.0, []), (2.5, [])]
    frames += [(0.5 * k, [_car(10.0 + 4.0 * 0.5 * k, 0.0)]) for k in range(6, 8)]
    first = _run(GroundTracker(ObjectsConfig()), frames[:4])[0].track_id
    out = _run(tr, frames)
    assert [o.track_id for o in out] == [first]


def test_track_is_dropped_after_a_long_occlusion() -> None:
    tr = GroundTracker(ObjectsConfig(max_coast_s=1.0))
    _run(tr, [(0.0, [_car(10.0, 0.0)]), (0.5, [_car(10.0, 0.0)]), (0.6, [])])
    tr.step(2.0, [])
    assert tr.tracks == []


def test_a_single_weak_detection_is_not_published() -> None:
    tr = GroundTracker(ObjectsConfig())
    assert _run(tr, [(0.0, [_car(10.0, 0.0, score=0.3)])]) == []
    assert len(_run(tr, [(0.5, [_car(10.0, 0.0, score=0.3)])])) == 1


def test_stamp_jumping_back_resets_tracks_with_new_ids() -> None:
    tr = GroundTracker(ObjectsConfig())
    (a,) = _run(tr, [(10.0, [_car(10.0, 0.0)]), (10.5, [_car(10.0, 0.0)])])
    (b,) = _run(tr, [(0.0, [_car(10.0, 0.0)])])
    assert b.track_id != a.track_id and b.age_s == 0.0
