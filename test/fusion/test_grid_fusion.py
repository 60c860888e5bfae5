"""GridFusion (ROS-free): ego-motion compensation, decay, bounded evidence and the bad-input
rules of the module docstring, on hand-made pose sequences."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from lss_bev_ros.conversions import GridSpec
from lss_bev_ros.fusion import FusionConfig, FusionStatus, GridFusion, Pose2D

GRID = GridSpec()  # 200 x 200 cells of 0.5 m from (-50, -50), base_link
CFG = FusionConfig(grid=GRID)
P_FREE, P_OCC = 0.05, 0.95


def _cell_centres() -> tuple[np.ndarray, np.ndarray]:
    xs = GRID.xmin + (np.arange(GRID.nx) + 0.5) * GRID.resolution
    ys = GRID.ymin + (np.arange(GRID.ny) + 0.5) * GRID.resolution
    return np.meshgrid(xs, ys, indexing="ij")  # X x Y each


BX, BY = _cell_centres()


def _to_map(pose: Pose2D) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of every base_link cell centre at ``pose`` (X x Y each)."""
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    return pose.x + c * BX - s * BY, pose.y + s * BX + c * BY


def _frame(pose: Pose2D, obstacles: list[tuple[float, float, float]],
           visible_radius: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Single-frame grid as a perfect camera would give it: square obstacles (map x, y, half
    size m) at P_OCC, the rest P_FREE, known within ``visible_radius`` of the ego."""
    mx, my = _to_map(pose)
    prob = np.full((GRID.nx, GRID.ny), P_FREE, np.float32)
    for ox, oy, h in obstacles:
        prob[(np.abs(mx - ox) <= h) & (np.abs(my - oy) <= h)] = P_OCC
    known = np.hypot(BX, BY) <= visible_radius
    return prob, known


def _occupied_map_points(out, pose: Pose2D) -> np.ndarray:
    mx, my = _to_map(pose)
    occ = out.known & (out.probability > 0.5)
    return np.stack([mx[occ], my[occ]], axis=1)


def _turning_drive(n: int, dt: float = 0.1) -> list[tuple[float, Pose2D]]:
    """Ego at 8 m/s on a left turn of 25 m radius (yaw rate 0.32 rad/s), 10 Hz."""
    out = []
    v, r = 8.0, 25.0
    for k in range(n):
        t = k * dt
        yaw = 0.2 + v / r * t
        out.append((100.0 + t, Pose2D(30.0 + r * math.sin(yaw), -5.0 - r * math.cos(yaw), yaw)))
    return out


def test_static_obstacle_stays_in_place_while_ego_turns_and_drives():
    obstacle = (40.0, 0.0, 1.5)  # map x, y, half size: a 3 m x 3 m block
    fusion = GridFusion(CFG)
    seq = _turning_drive(30)  # 3 s, 24 m, turning 55 deg
    for t, pose in seq:
        out = fusion.update(t, *_frame(pose, [obstacle]), pose)
        assert out is not None
        pts = _occupied_map_points(out, pose)
        # the occupied cells sit on the block in the map frame, within half a cell of blur
        assert len(pts) > 0
        assert np.abs(pts - obstacle[:2]).max() <= obstacle[2] + 0.5, (t, pts.min(0), pts.max(0))
        centre = pts.mean(axis=0)
        assert np.hypot(*(centre - obstacle[:2])) < 0.3, (t, centre)
    assert fusion.stats.fused == len(seq) - 1 and fusion.stats.resets == 0
    # the block's whole 36 cells are still occupied at the end (nothing smeared away)
    assert 30 <= len(pts) <= 50


def test_obstacle_weakly_missed_for_one_frame_stays_in_the_fused_grid():
    obstacle = (40.0, 0.0, 1.5)
    fusion = GridFusion(CFG)
    seq = _turning_drive(5)
    for t, pose in seq[:4]:
        fusion.update(t, *_frame(pose, [obstacle]), pose)
    t, pose = seq[4]
    prob, known = _frame(pose, [obstacle])
    miss = 1.0 / (1.0 + math.exp(CFG.history_band_logodds / 2))  # inside the history band
    prob[prob == P_OCC] = miss  # the detector misses it: a weak "free" for one frame
    assert miss < 0.5
    out = fusion.update(t, prob, known, pose)
    pts = _occupied_map_points(out, pose)
    # the block's interior (4 x 4 of its 6 x 6 cells; its rim is blurred with the confident
    # free cells around it) is still occupied, in place
    assert len(pts) >= 16 and np.hypot(*(pts.mean(axis=0) - obstacle[:2])) < 0.3


def test_removed_obstacle_seen_free_is_cleared_within_frames_to_flip():
    obstacle = (20.0, 0.0, 1.0)
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    for k in range(10):  # saturate
        fusion.update(float(k) * 0.1, *_frame(pose, [obstacle]), pose)
    n = CFG.frames_to_flip(P_FREE)
    assert n <= 2
    for k in range(n):
        out = fusion.update(1.0 + 0.1 * k, *_frame(pose, []), pose)
    assert len(_occupied_map_points(out, pose)) == 0
    assert out.known.sum() > 0


def test_removed_obstacle_nobody_sees_becomes_unknown_after_unknown_after_s():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    obstacle = (20.0, 0.0, 1.0)
    for k in range(5):
        fusion.update(0.5 * k, *_frame(pose, [obstacle]), pose)
    blind = np.zeros((GRID.nx, GRID.ny), bool)  # cameras see nothing from now on
    t_last = 2.0
    empty = np.zeros((GRID.nx, GRID.ny), np.float32)
    out = fusion.update(t_last + 0.5 * CFG.unknown_after_s, empty, blind, pose)
    assert len(_occupied_map_points(out, pose)) > 0  # remembered for a while, decaying
    occ = out.known & (out.probability > 0.5)
    assert out.probability[occ].max() < 1.0 / (1.0 + math.exp(-CFG.max_logodds))
    out = fusion.update(t_last + CFG.unknown_after_s + 0.01, empty, blind, pose)
    assert not out.known.any() and len(_occupied_map_points(out, pose)) == 0


def test_moving_car_leaves_no_trail_longer_than_frames_to_flip():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    speed, dt = 10.0, 0.1  # a car passing at 10 m/s, 10 Hz
    for k in range(20):
        car = (-10.0 + speed * dt * k, 5.0, 1.0)
        out = fusion.update(dt * k, *_frame(pose, [car]), pose)
    pts = _occupied_map_points(out, pose)
    trail = car[0] - car[2] - pts[:, 0].min()
    assert trail <= (CFG.frames_to_flip(P_FREE) - 1) * speed * dt + GRID.resolution, trail


def test_flickering_cell_holds_its_state_in_the_fused_grid():
    fusion = GridFusion(CFG)
    pose = Pose2D(3.0, -2.0, 1.0)
    raw_states, fused_states = [], []
    rng = np.random.default_rng(0)
    cell = (150, 100)  # 25 m ahead
    for k in range(40):
        prob, known = _frame(pose, [])
        prob[cell] = 0.65 if rng.uniform() < 0.7 else 0.4  # mostly occupied, noisy
        out = fusion.update(0.1 * k, prob, known, pose)
        raw_states.append(prob[cell] > 0.5)
        fused_states.append(out.probability[cell] > 0.5)
    raw_flips = int(np.sum(np.diff(raw_states) != 0))
    fused_flips = int(np.sum(np.diff(fused_states[5:]) != 0))
    assert raw_flips >= 8 and fused_flips <= raw_flips // 4, (raw_flips, fused_flips)


def test_first_frame_reproduces_the_input_within_the_logodds_bound():
    fusion = GridFusion(CFG)
    pose = Pose2D(12.0, 7.0, 0.0)  # axis aligned: resampling is exact
    prob, known = _frame(pose, [(30.0, 7.0, 2.0)])
    out = fusion.update(5.0, prob, known, pose)
    assert out.status is FusionStatus.FIRST and out.frame_id == "base_link"
    assert np.array_equal(out.known, known)
    assert np.array_equal(out.probability[known] > 0.5, prob[known] > 0.5)
    assert (out.probability[~known] == 0).all()


def test_non_finite_pose_gives_single_frame_output_and_resets():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    fusion.update(0.0, *_frame(pose, [(20.0, 0.0, 1.0)]), pose)
    prob, known = _frame(pose, [])
    for bad in (Pose2D(math.nan, 0.0, 0.0), Pose2D(0.0, math.inf, 0.0), Pose2D(0, 0, math.nan)):
        out = fusion.update(0.1, prob, known, bad)
        assert out.status is FusionStatus.BAD_POSE and out.status.single_frame
        assert np.array_equal(out.probability, np.where(known, prob, 0.0))
        assert not fusion.has_history
    assert fusion.stats.bad_pose == 3 and fusion.stats.resets == 1
    out = fusion.update(0.2, prob, known, pose)
    assert out.status is FusionStatus.FIRST


def test_pose_100_m_away_resets_the_history():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    fusion.update(0.0, *_frame(pose, [(20.0, 0.0, 1.0)]), pose)
    far = Pose2D(100.0, 0.0, 0.0)
    blind = np.zeros((GRID.nx, GRID.ny), bool)
    out = fusion.update(0.1, np.zeros((GRID.nx, GRID.ny), np.float32), blind, far)
    assert out.status is FusionStatus.RESET_POSE_JUMP
    assert fusion.stats.pose_jumps == 1 and fusion.stats.resets == 1
    # the obstacle seen before the jump is not carried into the new history (nothing known)
    assert not out.known.any()


def test_yaw_jump_beyond_max_jump_rad_resets():
    fusion = GridFusion(CFG)
    fusion.update(0.0, *_frame(Pose2D(0, 0, 0), []), Pose2D(0, 0, 0))
    out = fusion.update(0.1, *_frame(Pose2D(0, 0, 2.0), []), Pose2D(0, 0, 2.0))
    assert out.status is FusionStatus.RESET_POSE_JUMP


def test_out_of_order_stamp_is_skipped_and_counted():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    fusion.update(1.0, *_frame(pose, [(20.0, 0.0, 1.0)]), pose)
    assert fusion.update(0.9, *_frame(pose, []), pose) is None
    assert fusion.update(1.0, *_frame(pose, []), pose) is None  # duplicate stamp
    assert fusion.stats.out_of_order == 2 and fusion.stats.resets == 0
    out = fusion.update(1.1, *_frame(pose, [(20.0, 0.0, 1.0)]), pose)
    assert out.status is FusionStatus.FUSED


def test_looped_bag_time_jump_backwards_resets():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    fusion.update(50.0, *_frame(pose, [(20.0, 0.0, 1.0)]), pose)
    out = fusion.update(10.0, *_frame(pose, []), pose)
    assert out.status is FusionStatus.RESET_TIME and fusion.stats.time_resets == 1
    assert len(_occupied_map_points(out, pose)) == 0


def test_long_gap_forward_resets():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    fusion.update(0.0, *_frame(pose, []), pose)
    out = fusion.update(CFG.max_gap_s + 0.5, *_frame(pose, []), pose)
    assert out.status is FusionStatus.RESET_TIME


def test_missing_pose_falls_back_to_single_frame_and_keeps_history():
    obstacle = (40.0, 0.0, 1.5)
    fusion = GridFusion(CFG)
    seq = _turning_drive(4)
    for t, pose in seq[:2]:
        fusion.update(t, *_frame(pose, [obstacle]), pose)
    t, pose = seq[2]
    prob, known = _frame(pose, [])
    out = fusion.update(t, prob, known, None)
    assert out.status is FusionStatus.NO_POSE and fusion.stats.no_pose == 1
    assert np.array_equal(out.probability, np.where(known, prob, 0.0))
    t, pose = seq[3]
    blind = np.zeros((GRID.nx, GRID.ny), bool)
    out = fusion.update(t, np.zeros_like(prob), blind, pose)
    assert out.status is FusionStatus.FUSED
    assert len(_occupied_map_points(out, pose)) >= 30  # history re-aligned with the new pose


def test_wrong_shape_or_stamp_raises_without_changing_state():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        fusion.update(0.0, np.zeros((10, 10)), np.zeros((10, 10), bool), pose)
    with pytest.raises(ValueError, match="stamp"):
        fusion.update(math.nan, *_frame(pose, []), pose)
    assert not fusion.has_history and fusion.stats.frames == 0


@pytest.mark.parametrize(("field", "value"), [
    ("max_logodds", 0.0), ("decay_time_s", -1.0), ("unknown_after_s", math.nan),
    ("max_reorder_s", -0.1), ("prob_eps", 0.5), ("max_jump_rad", 4.0), ("max_jump_m", math.inf),
])
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field):
        FusionConfig(**{field: value})


def test_warp_grid_moves_a_map_fixed_block_with_the_ego_motion():
    from lss_bev_ros.fusion import warp_grid

    a, b = Pose2D(3.0, 4.0, 0.4), Pose2D(8.0, 6.0, 1.1)
    block = [(25.0, 10.0, 1.5)]
    src, _ = _frame(a, block)
    dst, _ = _frame(b, block)
    warped = warp_grid(src > 0.5, a, b, GRID, order=0)
    inter = np.sum((warped > 0.5) & (dst > 0.5))
    union = np.sum((warped > 0.5) | (dst > 0.5))
    assert inter / union > 0.8, (inter, union)


def test_confident_frame_overrules_the_history_in_one_frame():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    for k in range(10):  # a long free history
        fusion.update(0.1 * k, *_frame(pose, []), pose)
    prob, known = _frame(pose, [(20.0, 0.0, 1.0)])
    prob[prob == P_OCC] = 0.8  # a car arrives, seen with a moderate 0.8
    assert CFG.frames_to_flip(0.8) == 1
    out = fusion.update(1.0, prob, known, pose)
    assert len(_occupied_map_points(out, pose)) >= 9


def _world_cells(win) -> set[tuple[int, int]]:
    """Map cell indices (floor(x / res), floor(y / res)) of a MapWindow's occupied cells."""
    i, j = np.nonzero(win.known & (win.probability > 0.5))
    oi, oj = (round(v / win.resolution) for v in win.origin_xy)
    return set(zip((oi + i).tolist(), (oj + j).tolist(), strict=True))


def test_map_window_keeps_a_static_block_on_the_same_world_cells():
    # a 3 m x 3 m block whose edges lie on map cell edges: x 40..43 m, y -1.5..1.5 m
    obstacle = (41.5, 0.0, 1.5)
    block = {(i, j) for i in range(80, 86) for j in range(-3, 3)}
    fusion = GridFusion(CFG)
    assert fusion.map_window() is None
    for t, pose in _turning_drive(30):  # turning and driving: fractional cell moves
        fusion.update(t, *_frame(pose, [obstacle]), pose)
        win = fusion.map_window()
        assert win is not None and win.stamp == t
        assert win.probability.shape == (fusion.window_cells,) * 2
        # the window moves with the ego by whole cells and keeps it near its centre
        for o, p in zip(win.origin_xy, (pose.x, pose.y), strict=True):
            assert abs(o / win.resolution - round(o / win.resolution)) < 1e-9
            assert abs(p - o - fusion.window_cells * win.resolution / 2) <= win.resolution
        cells = _world_cells(win)
        assert len(cells ^ block) <= 1, (t, sorted(cells ^ block))
    spec = win.grid_spec("odom")
    assert (spec.nx, spec.ny, spec.frame_id) == (fusion.window_cells,) * 2 + ("odom",)
    assert (spec.xmin, spec.ymin) == win.origin_xy


def test_map_window_is_none_after_a_reset_and_unknown_where_never_seen():
    fusion = GridFusion(CFG)
    pose = Pose2D(0.0, 0.0, 0.0)
    fusion.update(1.0, *_frame(pose, []), pose)
    win = fusion.map_window()
    assert win is not None
    # cells beyond the 40 m camera radius were never seen: unknown, probability 0
    assert win.known.any() and not win.known.all()
    assert np.all(win.probability[~win.known] == 0.0)
    fusion.update(2.0, *_frame(pose, []), Pose2D(math.nan, 0.0, 0.0))  # bad pose: reset
    assert fusion.map_window() is None


def _hysteresis_cell(cfg: FusionConfig, probs: list[float]) -> list[bool]:
    """Occupied state of a 4 m x 4 m block of cells at (20, 0) fed ``probs`` frame by frame at
    10 Hz by a still ego (the rest of the grid confidently free)."""
    fusion = GridFusion(cfg)
    pose = Pose2D(0.0, 0.0, 0.0)
    block = (np.abs(BX - 20.0) <= 2.0) & (np.abs(BY) <= 2.0)
    centre = (np.abs(BX - 20.0) <= 1.0) & (np.abs(BY) <= 1.0)
    states = []
    for k, p in enumerate(probs):
        prob, known = _frame(pose, [])
        prob[block] = p
        out = fusion.update(0.1 * k, prob, known, pose)
        occ = out.probability[centre] > 0.5
        assert occ.all() or not occ.any()  # the block's interior is one state
        states.append(bool(occ.all()))
    return states


def test_hysteresis_keeps_the_state_of_a_cell_whose_evidence_hovers_around_one_half():
    probs = [0.9] * 5 + [0.3, 0.65] * 5  # occupied, then a model that cannot decide
    plain = _hysteresis_cell(replace(CFG, flip_margin_logodds=0.0), probs)
    held = _hysteresis_cell(FusionConfig(grid=GRID, flip_margin_logodds=0.8), probs)
    assert plain[:5] == [True] * 5 and held[:5] == [True] * 5
    # without hysteresis the band (0.7) lets most frames flip it (0.3: log-odds -0.85)
    assert sum(a != b for a, b in itertools.pairwise(plain[4:])) >= 6, plain
    assert all(held), held  # with a 0.8 margin the decision holds


def test_hysteresis_lets_a_confident_frame_flip_the_cell_at_once():
    cfg = FusionConfig(grid=GRID, flip_margin_logodds=0.8)
    assert cfg.frames_to_flip(P_FREE) == 1 and cfg.frames_to_flip(0.8) == 2
    states = _hysteresis_cell(cfg, [0.9] * 5 + [P_FREE] + [0.9] * 3 + [0.2, 0.2])
    # 0.05 (log-odds -2.9) flips it in one frame, 0.9 back; 0.2 (-1.4) only reaches -0.69
    # through the band, inside the margin: held one frame, flipped by the second
    assert states == [True] * 5 + [False] + [True] * 3 + [True, False], states
    with pytest.raises(ValueError, match="never flips"):
        cfg.frames_to_flip(0.6)  # log-odds 0.41: inside the margin, never flips a free cell
    with pytest.raises(ValueError, match="flip_margin_logodds"):
        FusionConfig(grid=GRID, flip_margin_logodds=CFG.max_logodds + 0.1)
