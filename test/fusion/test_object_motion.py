"""Object-motion compensation of the fused history (ROS-free): a tracked car's history moves
with it, the cells it left do not keep it, and unusable objects change nothing."""

from __future__ import annotations

import math

import numpy as np

from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.fusion import FusionConfig, GridFusion, ObjectMotion, Pose2D, transport_history

GRID = GridSpec()  # 200 x 200 cells of 0.5 m from (-50, -50), base_link
CFG = FusionConfig(grid=GRID)
EGO = Pose2D(0.0, 0.0, 0.0)  # ego parked at the map origin: base_link == map
SPEED, DT = 10.0, 0.5  # a car passing at 10 m/s, 2 Hz (nuScenes key frames): 5 m a frame
HALF_L, HALF_W = 2.25, 1.0  # car box half extents (m)

XS = GRID.xmin + (np.arange(GRID.nx) + 0.5) * GRID.resolution
YS = GRID.ymin + (np.arange(GRID.ny) + 0.5) * GRID.resolution
BX, BY = np.meshgrid(XS, YS, indexing="ij")  # X x Y cell centres (m)


def _car_x(k: int) -> float:
    return -15.0 + SPEED * DT * k


def _car_cells(x: float) -> np.ndarray:
    """X x Y bool: cells of the car box centred at (x, 5) m, heading +x."""
    return (np.abs(BX - x) <= HALF_L) & (np.abs(BY - 5.0) <= HALF_W)


def _frame(k: int, p_car: float, p_free: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    prob = np.full((GRID.nx, GRID.ny), p_free, np.float32)
    prob[_car_cells(_car_x(k))] = p_car
    return prob, np.ones((GRID.nx, GRID.ny), bool)


def _track(k: int) -> list[ObjectMotion]:
    """The tracker's state after frame ``k`` (what fusion gets for frame ``k + 1``)."""
    return [ObjectMotion(_car_x(k), 5.0, 0.0, 2 * HALF_L, 2 * HALF_W, SPEED, 0.0, DT * k)]


def _run(weak_frame: int, p_car_weak: float, p_free_weak: float, with_tracks: bool):
    fusion = GridFusion(CFG)
    out = None
    for k in range(weak_frame + 1):
        weak = k == weak_frame
        prob, known = _frame(k, p_car_weak if weak else 0.95, p_free_weak if weak else 0.05)
        objs = _track(k - 1) if with_tracks and k > 0 else []
        out = fusion.update(DT * k, prob, known, EGO, objs)
    assert out is not None
    return out, fusion


def test_tracked_car_history_moves_with_it_through_a_weak_frame():
    car = _car_cells(_car_x(6))
    plain, _ = _run(6, p_car_weak=0.4, p_free_weak=0.05, with_tracks=False)
    moved, fusion = _run(6, p_car_weak=0.4, p_free_weak=0.05, with_tracks=True)
    held_plain = float(np.mean(plain.probability[car] > 0.5))
    held_moved = float(np.mean(moved.probability[car] > 0.5))
    assert held_moved >= 0.95 and held_plain <= 0.2, (held_plain, held_moved)
    assert fusion.stats.objects_moved == 6


def test_tracked_car_leaves_no_trail_under_weak_free_evidence():
    behind = _car_cells(_car_x(5)) & ~_car_cells(_car_x(6))
    plain, _ = _run(6, p_car_weak=0.95, p_free_weak=0.45, with_tracks=False)
    moved, _ = _run(6, p_car_weak=0.95, p_free_weak=0.45, with_tracks=True)
    assert np.mean(plain.probability[behind] > 0.5) >= 0.9  # the ego-only history trails
    assert not np.any(moved.probability[behind] > 0.5)


def test_slow_or_non_finite_objects_change_nothing():
    objs = [ObjectMotion(0.0, 5.0, 0.0, 4.5, 2.0, 0.1, 0.0, 0.0),  # below object_min_speed_mps
            ObjectMotion(math.nan, 5.0, 0.0, 4.5, 2.0, 10.0, 0.0, 0.0),
            ObjectMotion(0.0, 5.0, 0.0, 4.5, 2.0, math.inf, 0.0, 0.0)]
    a, b = GridFusion(CFG), GridFusion(CFG)
    for k in range(5):
        prob, known = _frame(k, 0.8)
        oa = a.update(DT * k, prob, known, EGO)
        ob = b.update(DT * k, prob, known, EGO, objs)
    assert oa is not None and ob is not None
    np.testing.assert_array_equal(oa.probability, ob.probability)
    assert b.stats.objects_moved == 0


def test_transport_history_moves_box_values_and_clears_occupied_evidence_left_behind():
    res = 0.5
    window = np.zeros((40, 40), np.float32)
    window[10:14, 20:22] = 2.0  # a 2 m x 1 m box centred at (6, 10.5) m, origin (0, 0)
    window[10, 20] = -0.8  # free evidence inside the old box (a box larger than the car)
    window[30, 30] = -1.5  # an unrelated cell
    obj = ObjectMotion(6.0, 10.5, 0.0, 2.0, 1.0, 5.0, 0.0, 0.0)  # 5 m/s along +x
    n = transport_history(window, (0, 0), res, [obj], 0.0, 0.4, margin_m=0.0)
    assert n == 1
    moved = window[14:18, 20:22].copy()
    assert moved[0, 0] == np.float32(-0.8) and np.sum(moved == 2.0) == 7  # moved by 2 m = 4 cells
    left = window[10:14, 20:22]
    assert left[0, 0] == np.float32(-0.8)  # free evidence stays
    assert np.sum(left == 0.0) == 7  # occupied evidence went with the car: unknown
    assert window[30, 30] == -1.5


def test_track_set_buffer_gives_the_set_before_the_grid_and_forgets_a_looped_timeline():
    from lss_bev_ros.fusion import TrackSetBuffer

    buf = TrackSetBuffer(max_age_s=1.0, reorder_s=1.0)
    car = _track(0)[0]
    for t in (10.0, 10.5, 11.0):
        buf.add(t, [car])
    best = buf.for_stamp(11.0)
    assert best is not None and best[0] == 10.5  # strictly before the grid's stamp
    assert buf.for_stamp(13.0) is None  # the newest is older than max_age_s
    buf.add(2.0, [car])  # looped bag
    assert len(buf) == 1 and buf.for_stamp(2.5) is not None
