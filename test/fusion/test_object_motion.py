"""Object-motion compensation of the fused history (ROS-free): a tracked car's history moves
with it, the cells it left do not keep it, and unusable objects change nothing."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.fusion import (
    FusionConfig,
    GridFusion,
    ObjectMotion,
    Pose2D,
    moving_box_mask,
    moving_objects,
    speed_sigma,
    transport_history,
)

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
            # fast, but within object_min_speed_sigmas of zero: an unsettled parked-car filter
            ObjectMotion(0.0, 5.0, 0.0, 4.5, 2.0, 4.0, 0.0, 0.0, speed_sigma=2.0),
            ObjectMotion(math.nan, 5.0, 0.0, 4.5, 2.0, 10.0, 0.0, 0.0),
            ObjectMotion(0.0, 5.0, 0.0, 4.5, 2.0, math.inf, 0.0, 0.0),
            ObjectMotion(0.0, 5.0, 0.0, 4.5, 2.0, 10.0, 0.0, 0.0, speed_sigma=math.nan)]
    a, b = GridFusion(CFG), GridFusion(CFG)
    for k in range(5):
        prob, known = _frame(k, 0.8)
        oa = a.update(DT * k, prob, known, EGO, [])  # a track set with nothing moving
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


def test_transport_history_keeps_sub_cell_motion():
    # a car at 3 m/s fused at 10 Hz moves 0.3 m = 0.6 cell a frame: after 10 frames its history
    # must have moved 3 m (the former whole-cell shift, 1 cell a frame, moved it 4.25 m)
    res = 0.5
    window = np.zeros((60, 40), np.float32)
    window[10:19, 18:22] = 2.0  # a 4.5 m x 2 m car centred at (7.25, 10.0) m, origin (0, 0)
    car = ObjectMotion(7.25, 10.0, 0.0, 4.5, 2.0, 3.0, 0.0, 0.0)
    xs = (np.arange(60) + 0.5) * res

    def centre_x() -> float:
        w = np.clip(window, 0.0, None).sum(axis=1)
        return float((w * xs).sum() / w.sum())

    x_start = centre_x()
    for k in range(10):
        transport_history(window, (0, 0), res, [car], 0.1 * k, 0.1 * (k + 1), margin_m=0.5)
    assert centre_x() - x_start == pytest.approx(3.0, abs=0.1)
    # blurred at its ends by the bilinear steps, still a car in the middle (9-11.5 m)
    assert window.max() <= 2.0 and window[18:23, 18:22].min() > 1.5


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


def _weakly_contradicted_block(objects: list[ObjectMotion] | None, weak_frames: int,
                               cfg: FusionConfig | None = None, p_weak: float = 0.3) -> bool:
    """A block at (20, -10) m seen occupied for 4 frames, then ``weak_frames`` frames of weak
    free evidence (``p_weak``); returns whether it is still occupied in the fused grid.
    ``objects`` is the track set given with every frame (None: no tracker); ``cfg`` default:
    CFG with a static band of 2.0 and no static hysteresis."""
    if cfg is None:
        cfg = replace(CFG, static_history_band_logodds=2.0, static_flip_margin_logodds=0.0)
    block = (np.abs(BX - 20.0) <= 1.5) & (np.abs(BY + 10.0) <= 1.5)
    fusion = GridFusion(cfg)
    out = None
    for k in range(4 + weak_frames):
        prob = np.full((GRID.nx, GRID.ny), 0.05, np.float32)
        prob[block] = 0.95 if k < 4 else p_weak
        out = fusion.update(DT * k, prob, np.ones_like(block), EGO, objects)
    assert out is not None
    return bool(np.all(out.probability[block] > 0.5))


def test_static_band_steadies_cells_outside_moving_boxes_only():
    # without a track set the narrow band: two weak frames clear the block (module docstring)
    assert not _weakly_contradicted_block(None, 2)
    # a track set with nothing moving near it: the static band holds the block through them
    assert _weakly_contradicted_block([], 2)
    far_car = ObjectMotion(-30.0, 30.0, 0.0, 4.5, 2.0, SPEED, 0.0, 0.0)
    assert _weakly_contradicted_block([far_car], 2)
    # a moving track over the block: the narrow band again (no trails behind moving cars)
    over = ObjectMotion(20.0, -10.0, 0.0, 4.5, 4.0, 0.0, 4.0, DT * 4.5)  # covers it at 4, 5
    assert not _weakly_contradicted_block([over], 2)
    # the same track slower than object_min_speed_mps counts as static: the static band
    slow = replace(over, vy=0.5 * CFG.object_min_speed_mps)
    assert _weakly_contradicted_block([slow], 2)
    # the static band only delays a weak contradiction; it does not outlast it
    assert not _weakly_contradicted_block([], 4)


def test_static_hysteresis_holds_cells_outside_moving_boxes_only_with_a_track_set():
    # p 0.343 (log-odds -0.65) against a saturated block: band 1.2 takes it to +0.55, then
    # -0.22 (held), then -0.57 after decay: past the 0.4 margin, inside 0.7
    p_weak = 0.343
    no_static = replace(CFG, static_flip_margin_logodds=0.0)
    static = replace(CFG, static_flip_margin_logodds=0.7)
    assert CFG.history_band_logodds < CFG.static_history_band_logodds == 1.2
    assert not _weakly_contradicted_block([], 3, no_static, p_weak)  # margin 0.4 lets it flip
    assert _weakly_contradicted_block([], 3, static, p_weak)  # margin 0.7 outside moving boxes
    far_car = ObjectMotion(-30.0, 30.0, 0.0, 4.5, 2.0, SPEED, 0.0, 0.0)
    assert _weakly_contradicted_block([far_car], 3, static, p_weak)
    # without a track set: flip_margin_logodds (0.4) and the narrow band, the block flips
    assert not _weakly_contradicted_block(None, 3, static, p_weak)
    # a frame beyond the static margin still flips it at once
    assert not _weakly_contradicted_block([], 1, static, 0.05)
    with pytest.raises(ValueError, match="static_flip_margin_logodds"):
        FusionConfig(grid=GRID, static_flip_margin_logodds=CFG.max_logodds + 0.1)


def test_update_logodds_takes_per_cell_margins():
    from lss_bev_ros.fusion.grid_fusion import HOLD_LOGODDS, update_logodds

    old = np.array([0.1, 0.1], np.float32)
    m = np.array([-0.65, -0.65], np.float32)  # both land on -0.55
    out = update_logodds(old, m, CFG, margin=np.array([0.4, 0.7], np.float32))
    assert out[0] == pytest.approx(-0.55) and out[1] == pytest.approx(HOLD_LOGODDS)


def test_moving_box_mask_marks_the_extrapolated_enlarged_box():
    obj = ObjectMotion(6.0, 10.5, 0.0, 2.0, 1.0, 5.0, 0.0, 0.0)  # 5 m/s along +x
    mask = moving_box_mask((40, 40), (0, 0), 0.5, [obj], 0.4, margin_m=0.5)
    ii, jj = np.nonzero(mask)
    xs, ys = (ii + 0.5) * 0.5, (jj + 0.5) * 0.5  # cell centres (m)
    assert abs(xs.mean() - 8.0) < 1e-6 and abs(ys.mean() - 10.5) < 1e-6  # moved 2 m
    assert xs.max() - xs.min() == 2.5 and ys.max() - ys.min() == 1.5  # 3 m x 2 m of centres
    assert not moving_box_mask((40, 40), (0, 0), 0.5, [], 0.4, margin_m=0.5).any()


def test_moving_objects_needs_speed_and_significance():
    fast = ObjectMotion(0.0, 0.0, 0.0, 4.5, 2.0, 4.0, 0.0, 0.0)
    assert moving_objects([fast], 3.0, 2.5) == [fast]  # sigma unknown (0): speed decides
    assert moving_objects([replace(fast, speed_sigma=1.0)], 3.0, 2.5)  # 4.0 >= 2.5 sigma
    assert not moving_objects([replace(fast, speed_sigma=2.0)], 3.0, 2.5)  # 4.0 < 5.0
    assert moving_objects([replace(fast, speed_sigma=2.0)], 3.0, 0.0)  # rule off
    assert not moving_objects([replace(fast, vx=2.0)], 3.0, 2.5)  # too slow


def test_speed_sigma_from_a_velocity_covariance():
    assert speed_sigma(None) == 0.0
    assert speed_sigma(np.array([[-1.0, 0.0], [0.0, 0.0]])) == 0.0  # "unknown"
    assert speed_sigma(np.array([[math.nan, 0.0], [0.0, 1.0]])) == 0.0
    assert speed_sigma(np.array([[0.5, 0.2], [0.2, 1.5]])) == pytest.approx(1.0)
    obj = SimpleNamespace(x=1.0, y=2.0, yaw=0.0, length=4.5, width=2.0, vx=3.0, vy=0.0,
                          velocity_covariance=np.diag([4.0, 4.0]))
    assert ObjectMotion.from_object(obj, 7.0).speed_sigma == pytest.approx(2.0)
    del obj.velocity_covariance  # anything without one: unknown
    assert ObjectMotion.from_object(obj, 7.0).speed_sigma == 0.0
    assert ObjectMotion.from_object(obj, 7.0).label == ""  # no label: empty
    obj.label = "truck"
    assert ObjectMotion.from_object(obj, 7.0).label == "truck"
