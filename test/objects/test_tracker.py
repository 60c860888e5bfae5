"""Ground-plane tracker: constant-velocity Kalman filter (filterpy) + Hungarian assignment."""

from __future__ import annotations

import numpy as np
import pytest

from lss_bev_ros.objects.config import ObjectsConfig
from lss_bev_ros.objects.tracker import GroundTracker, nearest_branch
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


def _ids_per_frame(tracker: GroundTracker, frames: list[tuple[float, list[Object3D]]]
                   ) -> list[list[int]]:
    out = []
    for t, objs in frames:
        tracker.step(t, objs)
        out.append(sorted(o.track_id for o in tracker.outputs(t)))
    return out


def test_a_second_detection_of_a_tracked_car_does_not_become_a_second_track() -> None:
    # a parked car seen once per frame, then also as a confident second detection 1 m along its
    # length (e.g. a camera that sees only its rear): the second detection is not gated to the
    # track (the Hungarian gives the track the nearer one), so it is born beside it, confirmed
    # at birth by its score: one car, two published ids, unless the overlap removes it
    frames = [(0.5 * k, [_car(10.0, 0.0)]) for k in range(6)]
    frames += [(0.5 * k, [_car(10.0, 0.0), _car(11.0, 0.0)]) for k in range(6, 10)]
    pruned = _ids_per_frame(GroundTracker(ObjectsConfig()), frames)
    assert all(ids == pruned[0] for ids in pruned) and len(pruned[0]) == 1
    kept = _ids_per_frame(GroundTracker(ObjectsConfig(overlap_iou=1.0)), frames)
    assert len(kept[-1]) == 2  # the failure the pruning removes


def test_the_second_detection_is_handed_to_the_kept_track() -> None:
    tr = GroundTracker(ObjectsConfig())
    for k in range(4):
        tr.step(0.5 * k, [_car(10.0, 0.0)])
    assigned = tr.step(2.0, [_car(10.0, 0.0), _car(11.0, 0.0)])
    assert assigned == [0, 0] and len(tr.tracks) == 1 and tr.tracks[0].hits == 5


def test_adjacent_parked_cars_keep_two_tracks() -> None:
    # side by side 2.4 m apart (0.5 m gap) and bumper to bumper 5 m apart: no overlap
    for other in (_car(10.0, 2.4), _car(15.0, 0.0)):
        ids = _ids_per_frame(GroundTracker(ObjectsConfig()),
                             [(0.5 * k, [_car(10.0, 0.0), other]) for k in range(6)])
        assert len(ids[-1]) == 2


def test_overlapping_tracks_of_incompatible_classes_are_both_kept() -> None:
    ped = Object3D(10.5, 0.3, 0.9, 0.7, 0.65, 1.75, 0.0, False, "pedestrian", 0.9, 0.9,
                   np.eye(2) * 0.3**2)
    ids = _ids_per_frame(GroundTracker(ObjectsConfig()),
                         [(0.5 * k, [_car(10.0, 0.0), ped]) for k in range(6)])
    assert len(ids[-1]) == 2


def test_footprint_iou_uses_position_size_and_yaw() -> None:
    from lss_bev_ros.objects.tracker import footprint_iou

    tr = GroundTracker(ObjectsConfig())
    a, b, c, far = (tr._new_track(o, 0.0) for o in
                    (_car(0.0, 0.0), _car(0.0, 0.0), _car(1.0, 0.0), _car(30.0, 0.0)))
    b.yaw = np.pi / 2  # crossed: 1.9 x 1.9 in common, union 2 x 4.5 x 1.9 - 1.9^2
    assert footprint_iou(a, b) == footprint_iou(b, a)
    assert abs(footprint_iou(a, b) - 1.9**2 / (2 * 4.5 * 1.9 - 1.9**2)) < 1e-9
    assert abs(footprint_iou(a, c) - 3.5 / 5.5) < 1e-9  # 1 m along the length
    assert footprint_iou(a, far) == 0.0


def test_nearest_branch_picks_the_heading_branch_nearest_the_reference() -> None:
    assert nearest_branch(0.1, 0.3) == pytest.approx(0.1)
    assert nearest_branch(0.1, 3.0) == pytest.approx(0.1 - np.pi)  # 0.1 + pi, wrapped
    assert nearest_branch(-1.5, 1.7) == pytest.approx(-1.5 + np.pi)
    assert nearest_branch(1.5, -1.7) == pytest.approx(1.5 - np.pi)
